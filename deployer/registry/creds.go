// Package registry resolves registry credentials the way the docker CLI
// does and pushes images through the Engine API. A password lives only in
// memory and in the X-Registry-Auth header of the one request that needs it:
// it is never printed, logged or written to disk.
package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/docker/docker/api/types/registry"
)

// DockerHub is the registry host used when a reference names none.
const DockerHub = "docker.io"

// hubConfigKey is the key Docker Hub credentials have in config.json and in
// credential stores.
const hubConfigKey = "https://index.docker.io/v1/"

// Env names of the last-resort credentials.
const (
	EnvUser     = "INVDEPLOY_REGISTRY_USER"
	EnvPassword = "INVDEPLOY_REGISTRY_PASSWORD"
)

// Credentials are a login for one registry. Format them freely: String
// and GoString never show the secret.
type Credentials struct {
	// Registry is the registry host (docker.io for Docker Hub).
	Registry string
	Username string
	// Password or IdentityToken is the secret; at most one is set.
	Password      string
	IdentityToken string
	// Source says where they came from, for messages: "--username/--password-stdin",
	// "credential helper docker-credential-X", "~/.docker/config.json", or the env names.
	Source string
}

// Anonymous reports whether there is no login at all.
func (c Credentials) Anonymous() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == ""
}

// String describes the login without its secret.
func (c Credentials) String() string {
	if c.Anonymous() {
		return "anonymous access to " + c.Registry
	}
	return fmt.Sprintf("user %q on %s (from %s)", c.Username, c.Registry, c.Source)
}

// GoString is String: %#v must not print the secret either.
func (c Credentials) GoString() string { return "registry.Credentials{" + c.String() + "}" }

// EncodedAuth is the X-Registry-Auth header value for these credentials
// (empty for anonymous access).
func (c Credentials) EncodedAuth() (string, error) {
	if c.Anonymous() {
		return "", nil
	}
	return registry.EncodeAuthConfig(c.authConfig())
}

func (c Credentials) authConfig() registry.AuthConfig {
	server := c.Registry
	if server == DockerHub {
		server = hubConfigKey
	}
	return registry.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, ServerAddress: server}
}

// ResolveOptions are the inputs of Resolve, read once at the edge.
type ResolveOptions struct {
	// Registry is the registry host, e.g. docker.io or 127.0.0.1:5000.
	Registry string
	// Username and Password come from --username and --password-stdin.
	Username, Password string
	// ConfigDir holds config.json: $DOCKER_CONFIG, else ~/.docker.
	ConfigDir string
	// Getenv reads the environment (INVDEPLOY_REGISTRY_*); nil: none.
	Getenv func(string) string
	// Helper runs a credential helper program (docker-credential-<name>);
	// nil runs it from PATH. A test seam.
	Helper func(name string) client.ProgramFunc
}

// Resolve finds the login for a registry: the flags, then the docker config
// file (a credHelpers entry for the registry, then credsStore, then auths),
// then INVDEPLOY_REGISTRY_USER / INVDEPLOY_REGISTRY_PASSWORD. No login at
// all gives anonymous Credentials, not an error.
func Resolve(o ResolveOptions) (Credentials, error) {
	host := NormalizeHost(o.Registry)
	c := Credentials{Registry: host}
	if o.Username != "" || o.Password != "" {
		if o.Username == "" || o.Password == "" {
			return c, errors.New("--username and --password-stdin go together: give both or neither")
		}
		c.Username, c.Password, c.Source = o.Username, o.Password, "--username/--password-stdin"
		return c, nil
	}
	found, err := fromConfig(o, host)
	if err != nil || !found.Anonymous() {
		return found, err
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	u, p := getenv(EnvUser), getenv(EnvPassword)
	if u != "" || p != "" {
		if u == "" || p == "" {
			return c, fmt.Errorf("%s and %s go together: set both or neither", EnvUser, EnvPassword)
		}
		c.Username, c.Password, c.Source = u, p, EnvUser+"/"+EnvPassword
	}
	return c, nil
}

// dockerConfig is the part of ~/.docker/config.json that holds logins.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredsStore  string            `json:"credsStore"`
	CredHelpers map[string]string `json:"credHelpers"`
}

func fromConfig(o ResolveOptions, host string) (Credentials, error) {
	c := Credentials{Registry: host}
	if o.ConfigDir == "" {
		return c, nil
	}
	file := filepath.Join(o.ConfigDir, "config.json")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read docker config: %w", err)
	}
	cfg, err := parseConfig(b)
	if err != nil {
		return c, fmt.Errorf("read docker config %s: %w", file, err)
	}
	helper := o.Helper
	if helper == nil {
		helper = pathHelper
	}
	// A credHelpers entry for this registry wins; then the general store.
	for key, name := range cfg.CredHelpers {
		if NormalizeHost(key) == host && name != "" {
			return fromHelper(helper, name, host)
		}
	}
	if cfg.CredsStore != "" {
		got, err := fromHelper(helper, cfg.CredsStore, host)
		if err != nil || !got.Anonymous() {
			return got, err
		}
	}
	for key, a := range cfg.Auths {
		if NormalizeHost(key) != host {
			continue
		}
		c.Source = file
		c.Username, c.Password, c.IdentityToken = a.Username, a.Password, a.IdentityToken
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return Credentials{Registry: host}, fmt.Errorf("docker config %s: the auth entry for %s is not base64", file, key)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok || user == "" {
				return Credentials{Registry: host}, fmt.Errorf("docker config %s: the auth entry for %s is not user:password", file, key)
			}
			c.Username, c.Password = user, pass
		}
		if c.Anonymous() {
			continue
		}
		return c, nil
	}
	return Credentials{Registry: host}, nil
}

// parseConfig decodes config.json; errors never quote the file's content.
func parseConfig(b []byte) (dockerConfig, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return cfg, fmt.Errorf("invalid JSON at byte %d", se.Offset)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return cfg, fmt.Errorf("field %s has the wrong type", te.Field)
		}
		return cfg, errors.New("invalid JSON")
	}
	return cfg, nil
}

func fromHelper(helper func(string) client.ProgramFunc, name, host string) (Credentials, error) {
	c := Credentials{Registry: host}
	prog := "docker-credential-" + name
	key := host
	if host == DockerHub {
		key = hubConfigKey
	}
	program := helper(name)
	if program == nil {
		return c, fmt.Errorf("the docker config names the credential helper %s, which is not on PATH: install it, or pass --username and --password-stdin", prog)
	}
	got, err := client.Get(program, key)
	if credentials.IsErrCredentialsNotFound(err) {
		return c, nil
	}
	if err != nil {
		// The helper's own message may be long; it never holds the secret it failed to return.
		return c, fmt.Errorf("credential helper %s for %s: %w", prog, host, err)
	}
	c.Source = "credential helper " + prog
	c.Username = got.Username
	if got.Username == "<token>" {
		c.Username, c.IdentityToken = "", got.Secret
	} else {
		c.Password = got.Secret
	}
	return c, nil
}

// pathHelper runs docker-credential-<name> from PATH; nil when it is not there.
func pathHelper(name string) client.ProgramFunc {
	prog := "docker-credential-" + name
	if _, err := exec.LookPath(prog); err != nil {
		return nil
	}
	return client.NewShellProgramFunc(prog)
}

// NormalizeHost maps the spellings of a registry in config files and flags
// (https://host:port/v2/, index.docker.io, ...) to host[:port], and every
// spelling of Docker Hub to docker.io.
func NormalizeHost(s string) string {
	s = strings.TrimSpace(strings.ToLower(s))
	s = strings.TrimPrefix(s, "https://")
	s = strings.TrimPrefix(s, "http://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	switch s {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return DockerHub
	}
	return s
}
