package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
)

// ExtGenerate is the secret extension that lets invdeploy generate the value
// on first use when its environment variable is unset (the bundled stack's
// database password).
const ExtGenerate = "x-invdeploy-generate"

// ConfigDir is where invdeploy keeps generated secrets of a project:
// $XDG_CONFIG_HOME/invdeploy/<project> (or ~/.config/invdeploy/<project>),
// outside any git checkout and any build context.
func ConfigDir(project string) (string, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locate the user config directory (set XDG_CONFIG_HOME or HOME): %w", err)
	}
	return filepath.Join(base, "invdeploy", project), nil
}

// secretSource says where a secret's value comes from, without the value.
type secretSource struct {
	Name     string // key under top-level secrets
	File     string // file: source, absolute
	Env      string // environment: source variable
	Generate bool   // generated and stored under ConfigDir when Env is unset
	Stored   string // path of the generated value
}

func secretSources(p *types.Project, configDir string) (map[string]secretSource, error) {
	out := map[string]secretSource{}
	for name, sec := range p.Secrets {
		src := secretSource{Name: name, File: sec.File, Env: sec.Environment}
		if src.File != "" && !filepath.IsAbs(src.File) {
			src.File = filepath.Join(p.WorkingDir, src.File)
		}
		if v, ok := sec.Extensions[ExtGenerate]; ok {
			if b, ok := v.(bool); ok && b {
				if src.Env == "" {
					return nil, fmt.Errorf("secrets.%s.%s: only secrets with an environment: source can be generated", name, ExtGenerate)
				}
				src.Generate = true
				dir := configDir
				if dir == "" {
					var err error
					if dir, err = ConfigDir(p.Name); err != nil {
						return nil, err
					}
				}
				src.Stored = filepath.Join(dir, name)
			}
		}
		out[name] = src
	}
	return out, nil
}

// usedSecrets are the top-level secret names some service references.
func usedSecrets(p *types.Project) []string {
	seen := map[string]bool{}
	var names []string
	for _, name := range p.ServiceNames() {
		for _, s := range p.Services[name].Secrets {
			if !seen[s.Source] {
				seen[s.Source] = true
				names = append(names, s.Source)
			}
		}
	}
	return names
}

// readSecret returns the value of a secret. When generate is true a missing
// generated secret is created (32 random bytes, base64url, mode 0600 in a
// 0700 directory). Errors never hold the value.
func readSecret(p *types.Project, src secretSource, generate bool) ([]byte, error) {
	switch {
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("read secret %s from %s: %w", src.Name, src.File, err)
		}
		return b, nil
	case src.Env != "":
		if v, ok := p.Environment[src.Env]; ok && v != "" {
			return []byte(v), nil
		}
		if !src.Generate {
			return nil, fmt.Errorf("secret %s: environment variable %s is not set", src.Name, src.Env)
		}
		b, err := os.ReadFile(src.Stored)
		if err == nil {
			return bytes.TrimRight(b, "\r\n"), nil
		}
		if !errors.Is(err, fs.ErrNotExist) || !generate {
			return nil, fmt.Errorf("read generated secret %s from %s: %w", src.Name, src.Stored, err)
		}
		return generateSecret(src.Stored)
	}
	return nil, fmt.Errorf("secret %s has neither file: nor environment:", src.Name)
}

func generateSecret(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate secret: %w", err)
	}
	v := []byte(base64.RawURLEncoding.EncodeToString(raw))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store generated secret at %s: %w", path, err)
	}
	if _, err := f.Write(v); err != nil {
		f.Close()
		return nil, fmt.Errorf("store generated secret at %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store generated secret at %s: %w", path, err)
	}
	return v, nil
}

// secretTar is a tar stream of a service's secrets as files for
// /run/secrets, owned by uid:gid (the container's user unless the stack says
// otherwise) with mode 0400 unless the stack says otherwise. The engine keeps
// the owner from the tar header.
func secretTar(s types.ServiceConfig, values map[string][]byte, uid, gid int) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, ref := range s.Secrets {
		v, ok := values[ref.Source]
		if !ok {
			return nil, fmt.Errorf("services.%s.secrets: secret %s has no value", s.Name, ref.Source)
		}
		name := ref.Target
		if name == "" {
			name = ref.Source
		}
		name = strings.TrimPrefix(name, secretsDir+"/")
		mode := int64(0o400)
		if ref.Mode != nil {
			mode = int64(*ref.Mode)
		}
		u, g := uid, gid
		if ref.UID != "" {
			n, err := strconv.Atoi(ref.UID)
			if err != nil {
				return nil, fmt.Errorf("services.%s.secrets: uid %q is not a number", s.Name, ref.UID)
			}
			u = n
		}
		if ref.GID != "" {
			n, err := strconv.Atoi(ref.GID)
			if err != nil {
				return nil, fmt.Errorf("services.%s.secrets: gid %q is not a number", s.Name, ref.GID)
			}
			g = n
		}
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(v)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Uid: u, Gid: g}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("pack secret %s: %w", ref.Source, err)
		}
		if _, err := tw.Write(v); err != nil {
			return nil, fmt.Errorf("pack secret %s: %w", ref.Source, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("pack secrets of %s: %w", s.Name, err)
	}
	return &buf, nil
}

// deliverSecrets copies the secrets into a created, not yet started container
// through the Engine API, so it works on a remote engine too.
func (d *Deployer) deliverSecrets(ctx context.Context, id string, s types.ServiceConfig, values map[string][]byte) error {
	if len(s.Secrets) == 0 {
		return nil
	}
	ins, err := d.engine.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("deliver secrets to %s: %w", s.Name, err)
	}
	user := ""
	if ins.Config != nil {
		user = ins.Config.User // the service's user:, else the image's USER
	}
	uid, gid, err := d.resolveUser(ctx, id, user)
	if err != nil {
		return fmt.Errorf("deliver secrets to %s: %w", s.Name, err)
	}
	buf, err := secretTar(s, values, uid, gid)
	if err != nil {
		return err
	}
	// Not CopyUIDGID: engines before 25 resolve the user in the host's
	// passwd database, not the container's; the tar header's owner is kept.
	if err := d.engine.CopyToContainer(ctx, id, secretsDir, buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("deliver secrets to %s: %w", s.Name, err)
	}
	return nil
}

// resolveUser turns a container user spec (name or uid, optionally :group)
// into numeric ids, reading /etc/passwd and /etc/group from the created
// container when names need resolving. A numeric uid without a group gets the
// passwd entry's group, else 0, as the runtime does.
func (d *Deployer) resolveUser(ctx context.Context, id, spec string) (uid, gid int, err error) {
	if spec == "" {
		return 0, 0, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	var passwd, group []byte
	readFile := func(path string) []byte {
		rc, _, err := d.engine.CopyFromContainer(ctx, id, path)
		if err != nil {
			return nil
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err != nil {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(tr, 4<<20))
		return b
	}
	uid, uidErr := strconv.Atoi(userPart)
	passwd = readFile("/etc/passwd")
	gid = 0
	found := false
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 {
			continue
		}
		if (uidErr != nil && f[0] == userPart) || (uidErr == nil && f[2] == userPart) {
			u, err1 := strconv.Atoi(f[2])
			g, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				uid, gid, found = u, g, true
				break
			}
		}
	}
	if uidErr != nil && !found {
		return 0, 0, fmt.Errorf("user %q is not in the container's /etc/passwd", userPart)
	}
	if !hasGroup {
		return uid, gid, nil
	}
	if g, err := strconv.Atoi(groupPart); err == nil {
		return uid, g, nil
	}
	group = readFile("/etc/group")
	for _, line := range strings.Split(string(group), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == groupPart {
			if g, err := strconv.Atoi(f[2]); err == nil {
				return uid, g, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("group %q is not in the container's /etc/group", groupPart)
}
