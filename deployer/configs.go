package deployer

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Kinds of delivered files.
const (
	kindSecret = "secret"
	kindConfig = "config"
)

// deliveredFile is one secret or config of a service as the container sees
// it: where it lands, with which owner and mode.
type deliveredFile struct {
	Kind   string // kindSecret or kindConfig
	Name   string // key under top-level secrets: or configs:
	Target string // absolute, clean path in the container
	Mode   int64
	// UID and GID are the reference's uid:/gid:; "" means the container's
	// user (the service's user:, else the image's USER).
	UID, GID string
	// Stored is the file's path inside the delivery volume.
	Stored string
}

// valueKey is the key of a delivered file's value in the values map Up
// passes around: kind/name, so a secret and a config of one name differ.
func valueKey(kind, name string) string {
	return kind + "/" + name
}

// deliveryFiles lists a service's secrets and configs with their targets,
// as compose resolves them: a secret's target defaults to
// /run/secrets/<source> and a relative one stays under /run/secrets/; a
// config's defaults to /<source> and a relative one is taken from /. Any
// other absolute path is allowed. Secrets default to mode 0400, configs to
// 0444.
func deliveryFiles(s types.ServiceConfig) ([]deliveredFile, error) {
	var out []deliveredFile
	seen := map[string]string{}
	add := func(kind string, i int, ref types.FileReferenceConfig, base string, mode int64) error {
		where := fmt.Sprintf("services.%s.%ss[%d]", s.Name, kind, i)
		t := ref.Target
		if t == "" {
			t = ref.Source
		}
		if !strings.HasPrefix(t, "/") {
			t = base + "/" + t
		}
		if t != path.Clean(t) || strings.Contains(t, "/../") || t == "/" || t == secretsDir {
			return fmt.Errorf("%s.target %q: give a clean absolute path of a file (or a relative name)", where, ref.Target)
		}
		if prev, dup := seen[t]; dup {
			return fmt.Errorf("%s.target %q: %s already lands there; give each a distinct target", where, t, prev)
		}
		seen[t] = fmt.Sprintf("%s %s", kind, ref.Source)
		for _, id := range []struct{ key, v string }{{"uid", ref.UID}, {"gid", ref.GID}} {
			if id.v == "" {
				continue
			}
			if n, err := strconv.Atoi(id.v); err != nil || n < 0 {
				return fmt.Errorf("%s.%s %q: give a number", where, id.key, id.v)
			}
		}
		if ref.Mode != nil {
			mode = int64(*ref.Mode)
		}
		if mode&^0o777 != 0 || mode < 0 {
			// setuid, setgid or sticky on a delivered file would hand the
			// compose file's author a privileged binary outside /run/secrets
			// (mounted nosuid); nobody needs them on a secret or config.
			return fmt.Errorf("%s.mode %#o: give permission bits only (at most 0777)", where, mode)
		}
		f := deliveredFile{Kind: kind, Name: ref.Source, Target: t, Mode: mode, UID: ref.UID, GID: ref.GID}
		if rel, ok := strings.CutPrefix(t, secretsDir+"/"); ok {
			f.Stored = "run-secrets/" + rel
		} else {
			f.Stored = "files/" + strconv.Itoa(len(out))
		}
		out = append(out, f)
		return nil
	}
	for i, ref := range s.Secrets {
		if err := add(kindSecret, i, types.FileReferenceConfig(ref), secretsDir, 0o400); err != nil {
			return nil, err
		}
	}
	for i, ref := range s.Configs {
		if err := add(kindConfig, i, types.FileReferenceConfig(ref), "", 0o444); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkDelivery is the load-time rule for secret and config references:
// targets are valid and every reference names a defined config. External
// (swarm) configs are refused, as external secrets are.
func checkDelivery(p *types.Project) error {
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if _, err := deliveryFiles(s); err != nil {
			return err
		}
		for i, ref := range s.Configs {
			if _, ok := p.Configs[ref.Source]; !ok {
				return fmt.Errorf("services.%s.configs[%d]: config %s is not defined under top-level configs", name, i, ref.Source)
			}
		}
	}
	for name, c := range p.Configs {
		if c.External {
			return fmt.Errorf("configs.%s.external: external (swarm) configs are not supported by invdeploy; use file:, environment: or content:", name)
		}
	}
	return nil
}

// usedConfigs are the top-level config names some service references.
func usedConfigs(p *types.Project) []string {
	seen := map[string]bool{}
	var names []string
	for _, name := range p.ServiceNames() {
		for _, c := range p.Services[name].Configs {
			if !seen[c.Source] {
				seen[c.Source] = true
				names = append(names, c.Source)
			}
		}
	}
	sort.Strings(names)
	return names
}

// readConfig returns a config's content: inline content:, else the
// environment variable, else the file (relative to the project directory).
func readConfig(p *types.Project, name string) ([]byte, error) {
	c, ok := p.Configs[name]
	if !ok {
		return nil, fmt.Errorf("config %s is not defined under top-level configs", name)
	}
	switch {
	case c.Content != "":
		return []byte(c.Content), nil
	case c.Environment != "":
		v, ok := p.Environment[c.Environment]
		if !ok {
			return nil, fmt.Errorf("config %s: environment variable %s is not set; export it or put it in .env", name, c.Environment)
		}
		return []byte(v), nil
	case c.File != "":
		f := c.File
		if !filepath.IsAbs(f) {
			f = filepath.Join(p.WorkingDir, f)
		}
		b, err := readSourceFile(f, MaxConfigSize)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("config %s has none of file:, environment: or content:", name)
}

// deliveryValues reads every used secret (generating one on first use) and
// config, keyed by valueKey. Values are never printed.
func deliveryValues(p *types.Project, configDir string) (map[string][]byte, error) {
	return readValues(p, configDir, true)
}

// readValues reads every used secret and config, keyed by valueKey. With
// generate, a generated secret missing here is created; without, it is
// left out (a dry run creates nothing; its containers count as new).
func readValues(p *types.Project, configDir string, generate bool) (map[string][]byte, error) {
	secrets, err := readSecrets(p, configDir, generate)
	if err != nil {
		return nil, err
	}
	values := map[string][]byte{}
	for name, v := range secrets {
		values[valueKey(kindSecret, name)] = v
	}
	for _, name := range usedConfigs(p) {
		v, err := readConfig(p, name)
		if err != nil {
			return nil, err
		}
		values[valueKey(kindConfig, name)] = v
	}
	return values, nil
}

// readSecrets reads every used secret by name (see readValues).
func readSecrets(p *types.Project, configDir string, generate bool) (map[string][]byte, error) {
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return nil, err
	}
	values := map[string][]byte{}
	for _, name := range usedSecrets(p) {
		v, err := readSecret(p, srcs[name], generate)
		if err != nil {
			if !generate && srcs[name].Generate {
				continue
			}
			return nil, err
		}
		values[name] = v
	}
	return values, nil
}

// checkConfigs is the preflight rule for configs: each used config can be
// read. Its content is not secret, so there is no file-mode rule.
func checkConfigs(p *types.Project, add func(rule, subject, format string, args ...any)) {
	for _, name := range usedConfigs(p) {
		if _, err := readConfig(p, name); err != nil {
			add("config", name, "%v", err)
		}
	}
}

// systemDirs are host directories a secret or env_file path should not point
// into: compose allows it, but a stack that reads /etc/shadow or a host key
// is more likely a mistake (or a hostile file) than a design.
// (/root is left out: a root user's projects live there.)
var systemDirs = []string{"/etc", "/boot", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/lib", "/var/lib", "/var/run", "/run"}

// inSystemDir reports whether an absolute host path lies in one of
// systemDirs or in a user's ~/.ssh.
func inSystemDir(p string) bool {
	p = filepath.Clean(p)
	for _, d := range systemDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return strings.Contains(p, "/.ssh/")
}

// systemDirWarnings name env_file and secret file paths that point into
// system directories.
func systemDirWarnings(p *types.Project, srcs map[string]secretSource) []string {
	var warns []string
	for _, name := range usedSecrets(p) {
		if f := srcs[name].File; f != "" && inSystemDir(f) && kernelDir(filepath.Clean(f)) == "" { // those refuse
			warns = append(warns, fmt.Sprintf("secrets.%s.file %s is in a system directory; make sure the stack should read it", name, f))
		}
	}
	for _, name := range p.ServiceNames() {
		for i, ef := range p.Services[name].EnvFiles {
			f := ef.Path
			if !filepath.IsAbs(f) {
				f = filepath.Join(p.WorkingDir, f)
			}
			if inSystemDir(f) {
				warns = append(warns, fmt.Sprintf("services.%s.env_file[%d] %s is in a system directory; make sure the stack should read it", name, i, f))
			}
		}
	}
	return warns
}
