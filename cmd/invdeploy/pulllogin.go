package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer/registry"
)

// pullLoginOptions are remote up's login for the host's pull (--via
// registry), kept apart from the push login so the host can be given a
// read-only token.
type pullLoginOptions struct {
	username      string
	passwordStdin bool
}

func (o *pullLoginOptions) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.username, "pull-username", "", "with --via registry: user name the host pulls with (a read-only token; with --pull-password-stdin)")
	cmd.Flags().BoolVar(&o.passwordStdin, "pull-password-stdin", false, "read the host's pull password (read-only token) from standard input")
}

// given reports whether any pull login flag was used.
func (o *pullLoginOptions) given() bool { return o.username != "" || o.passwordStdin }

// credentials resolves the login the host pulls with: the --pull-* flags,
// else, when --pull-registry names another registry host than the push,
// that host's entry in ~/.docker/config.json (credHelpers, credsStore,
// auths). nil means none was found: the host would pull with the push login.
func (o *pullLoginOptions) credentials(g *globalOptions, push *loginOptions, pushCreds registry.Credentials, pullRegistry string) (*registry.Credentials, error) {
	host := pushCreds.Registry
	if pullRegistry != "" {
		host = registryHost(pullRegistry)
	}
	if o.given() {
		if o.passwordStdin && push.passwordStdin {
			return nil, usagef("--password-stdin and --pull-password-stdin both read standard input: give the push login with docker login (~/.docker/config.json) or %s/%s instead", registry.EnvUser, registry.EnvPassword)
		}
		if o.username == "" || !o.passwordStdin {
			return nil, usagef("--pull-username and --pull-password-stdin go together (a password is never taken as an argument)")
		}
		password, err := readPasswordStdin(g, "--pull-password-stdin")
		if err != nil {
			return nil, err
		}
		return &registry.Credentials{Registry: host, Username: o.username, Password: password, Source: "--pull-username/--pull-password-stdin"}, nil
	}
	if host == pushCreds.Registry {
		return nil, nil
	}
	// No environment fallback: INVDEPLOY_REGISTRY_* are the push login.
	c, err := registry.Resolve(registry.ResolveOptions{Registry: host, ConfigDir: dockerConfigDir()})
	if err != nil {
		return nil, fmt.Errorf("pull login for %s: %w", host, err)
	}
	if c.Anonymous() {
		return nil, nil
	}
	return &c, nil
}

// registryHost is the registry host of a --registry or --pull-registry
// value (HOST[:PORT][/NAMESPACE], or a Docker Hub name).
func registryHost(reg string) string {
	return registry.RegistryOf(strings.TrimPrefix(strings.TrimPrefix(reg, "https://"), "http://") + "/x")
}

// readPasswordStdin reads a password (one line, at most 64 KiB) from
// standard input for flag.
func readPasswordStdin(g *globalOptions, flag string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(g.stdin, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	password := strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return "", usagef("%s: standard input is empty", flag)
	}
	return password, nil
}
