package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// StepSSHConfig is reading ~/.ssh/config (or --ssh-config) for the host.
const StepSSHConfig Step = "ssh config"

// sshHostConfig is what an OpenSSH client config file says about one host
// alias: the settings invdeploy honours.
type sshHostConfig struct {
	HostName      string
	User          string
	Port          int
	IdentityFiles []string
	// ProxyJump is the jump host list ("none" dropped).
	ProxyJump string
	// ProxyCommand is not run by invdeploy (so it refuses rather than
	// connect another way).
	ProxyCommand string
}

// readSSHConfig reads the settings of file for alias (first match wins, as
// in ssh_config(5)). A missing file means no settings.
func readSSHConfig(file, alias string) (sshHostConfig, error) {
	var hc sshHostConfig
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return hc, nil
	}
	if err != nil {
		return hc, fmt.Errorf("read %s: %w", file, err)
	}
	cfg, err := ssh_config.Decode(bytes.NewReader(b))
	if err != nil {
		return hc, fmt.Errorf("parse %s: %w", file, err)
	}
	get := func(key string) (string, error) {
		v, err := cfg.Get(alias, key)
		if err != nil {
			return "", fmt.Errorf("%s: %s for %s: %w", file, key, alias, err)
		}
		return strings.TrimSpace(v), nil
	}
	if hc.HostName, err = get("HostName"); err != nil {
		return hc, err
	}
	if hc.User, err = get("User"); err != nil {
		return hc, err
	}
	port, err := get("Port")
	if err != nil {
		return hc, err
	}
	if port != "" {
		if hc.Port, err = strconv.Atoi(port); err != nil || hc.Port < 1 || hc.Port > 65535 {
			return hc, fmt.Errorf("%s: Port %q for %s is not in 1..65535", file, port, alias)
		}
	}
	if hc.IdentityFiles, err = cfg.GetAll(alias, "IdentityFile"); err != nil {
		return hc, fmt.Errorf("%s: IdentityFile for %s: %w", file, alias, err)
	}
	for key, dst := range map[string]*string{"ProxyJump": &hc.ProxyJump, "ProxyCommand": &hc.ProxyCommand} {
		v, err := get(key)
		if err != nil {
			return hc, err
		}
		if !strings.EqualFold(v, "none") {
			*dst = v
		}
	}
	return hc, nil
}

// applySSHConfig resolves the ssh:// endpoint ep (parsed from rawURL)
// through opts.ConfigFile as ssh(1) would: HostName replaces the alias, and
// User and Port apply when the URL gives none; IdentityFile entries that
// exist are offered after --identity (a missing one is a notice, as with
// ssh); a ProxyJump of one hop becomes opts.ProxyJump. A ProxyCommand or a
// chain of jump hosts refuses: connecting directly instead could reach
// another machine or be blocked.
func applySSHConfig(rawURL string, ep Endpoint, opts SSHOptions) (Endpoint, SSHOptions, error) {
	opts = withSSHDefaults(opts)
	if opts.ConfigFile == "" || opts.ConfigFile == "none" {
		return ep, opts, nil
	}
	alias := ep.Host
	fail := func(err error, hint string) error {
		return &ConnectError{Step: StepSSHConfig, Host: ep.String(), Err: err, Hint: hint}
	}
	hc, err := readSSHConfig(opts.ConfigFile, alias)
	if err != nil {
		return ep, opts, fail(err, "fix the file, or pass --ssh-config none to ignore it")
	}
	tunnel := "open a tunnel first (ssh -N -L 2222:HOST:22 JUMPHOST) and use --host ssh://USER@127.0.0.1:2222, or reach the host directly"
	if hc.ProxyCommand != "" {
		return ep, opts, fail(fmt.Errorf("%s sets ProxyCommand %s for %s, and invdeploy does not run proxy commands", opts.ConfigFile, hc.ProxyCommand, alias), tunnel)
	}
	if strings.Contains(hc.ProxyJump, ",") {
		return ep, opts, fail(fmt.Errorf("%s sets ProxyJump %s for %s: invdeploy goes through one jump host, not a chain", opts.ConfigFile, hc.ProxyJump, alias), tunnel)
	}
	if hc.ProxyJump != "" && opts.ProxyJump == "" {
		opts.ProxyJump = hc.ProxyJump
	}
	if hc.HostName != "" {
		ep.Host = strings.ReplaceAll(strings.ReplaceAll(hc.HostName, "%h", alias), "%%", "%")
	}
	if ep.User == "" {
		ep.User = hc.User
	}
	if hc.Port != 0 && !urlHasPort(rawURL) {
		ep.Port = hc.Port
	}
	user := ep.User
	if user == "" {
		user = currentUser()
	}
	ids := append([]string{}, opts.IdentityFiles...)
	for _, f := range hc.IdentityFiles {
		f = expandSSHTokens(f, opts.HomeDir, alias, ep.Host, user)
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(opts.Notices, "ssh: identity %s from %s not used: %v\n", f, opts.ConfigFile, err)
			continue
		}
		ids = append(ids, f)
	}
	if len(ids) > len(opts.IdentityFiles) {
		opts.IdentityFiles = ids
	}
	return ep, opts, nil
}

// urlHasPort reports whether the host URL names a port itself (a URL's port
// wins over the config file's, as ssh -p does).
func urlHasPort(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Port() != ""
}

// expandSSHTokens expands ~ and the ssh_config(5) tokens of an IdentityFile
// that make sense here: %d home, %h host name, %n alias, %r remote user,
// %u local user, %%.
func expandSSHTokens(f, home, alias, host, remoteUser string) string {
	if f == "~" || strings.HasPrefix(f, "~/") {
		f = filepath.Join(home, strings.TrimPrefix(f, "~"))
	}
	r := strings.NewReplacer("%d", home, "%h", host, "%n", alias, "%r", remoteUser, "%u", currentUser(), "%%", "%")
	return r.Replace(f)
}
