package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

// Registration of the commands of issue 5, kept out of root.go's list so the
// two files can change independently.
func init() {
	commands = append(commands, newPushCommand, newRemoteCommand)
}

// loginOptions are the registry login flags shared by push and remote up.
type loginOptions struct {
	registry      string
	username      string
	passwordStdin bool
}

func (o *loginOptions) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.registry, "registry", "", "registry HOST[:PORT][/NAMESPACE], or a Docker Hub name (default: Docker Hub under your login)")
	cmd.Flags().StringVarP(&o.username, "username", "u", "", "registry user name (with --password-stdin)")
	cmd.Flags().BoolVar(&o.passwordStdin, "password-stdin", false, "read the registry password from standard input")
}

// credentials resolves the login for the registry the flags name: the flags,
// then ~/.docker/config.json, then INVDEPLOY_REGISTRY_USER/PASSWORD.
func (o *loginOptions) credentials(g *globalOptions) (registry.Credentials, error) {
	var password string
	if o.passwordStdin {
		if o.username == "" {
			return registry.Credentials{}, usagef("--password-stdin needs --username")
		}
		var err error
		if password, err = readPasswordStdin(g, "--password-stdin"); err != nil {
			return registry.Credentials{}, err
		}
	} else if o.username != "" {
		return registry.Credentials{}, usagef("--username needs --password-stdin (a password is never taken as an argument)")
	}
	host := registry.DockerHub
	if o.registry != "" {
		host = registryHost(o.registry)
	}
	return registry.Resolve(registry.ResolveOptions{
		Registry:  host,
		Username:  o.username,
		Password:  password,
		ConfigDir: dockerConfigDir(),
		Getenv:    os.Getenv,
	})
}

// dockerConfigDir is $DOCKER_CONFIG, else ~/.docker.
func dockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker")
}

func newPushCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	var login loginOptions
	var tag, service string
	var rebuild bool
	cmd := &cobra.Command{
		Use:   "push [--registry R] [--tag T] [--username U --password-stdin]",
		Short: "Build if needed, then push the app image to a registry and print its digest",
		Long: `push tags the stack's app image (the service with a build section) as
<registry>/<name>:<git-sha> (or --tag) and <registry>/<name>:latest and pushes both
through the Engine API, building it first when the revision's image is missing.

The login comes from --username with --password-stdin, else ~/.docker/config.json
(credHelpers, credsStore, auths; $DOCKER_CONFIG moves it), else
INVDEPLOY_REGISTRY_USER and INVDEPLOY_REGISTRY_PASSWORD. The password goes only
into the push request: it is never printed or written to disk. Without --registry
the image goes to Docker Hub under the login's name.

The pushed digest (repo@sha256:...) is printed and recorded in
$XDG_CONFIG_HOME/invdeploy/<project>/pushed.json, where
'invdeploy remote up --via registry' finds it to pin the image.`,
		Example: `  echo "$TOKEN" | invdeploy push --username alice --password-stdin   # docker.io/alice/invoicing-api
  invdeploy push --registry 127.0.0.1:5000 --tag v1.2.0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			creds, err := login.credentials(g)
			if err != nil {
				return err
			}
			st, err := stack.load(ctx, g)
			if err != nil {
				return err
			}
			warn(g, st)
			announce(g, "Pushing", st)
			// push runs on the engine -H names, local or not: it builds
			// there and pushes from there.
			d, closeFn, err := g.engineDeployer()
			if err != nil {
				return err
			}
			defer closeFn()
			res, err := d.Push(ctx, st, deployer.PushOptions{Service: service, Registry: login.registry, Tag: tag, Credentials: creds, Rebuild: rebuild})
			if err != nil {
				return err
			}
			if res.RecordErr != nil {
				fmt.Fprintf(g.stderr, "warning: the digest was not recorded: %v\n", res.RecordErr)
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"repository": res.Repository, "tags": res.Tags, "digest": res.Digest, "reference": res.Reference(), "image_id": res.ImageID})
			}
			for _, t := range res.Tags {
				fmt.Fprintf(g.stdout, "Pushed %s:%s\n", res.Repository, t)
			}
			fmt.Fprintln(g.stdout, res.Reference())
			return nil
		},
	}
	stack.bind(cmd, true)
	login.bind(cmd)
	cmd.Flags().StringVarP(&tag, "tag", "t", "", "version tag to push besides latest (default: the git revision)")
	cmd.Flags().StringVar(&service, "service", "", "the service whose image to push (default: the one with a build section)")
	cmd.Flags().BoolVar(&rebuild, "build", false, "rebuild the image even when present")
	return cmd
}
