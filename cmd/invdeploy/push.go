package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
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

// appImage is the image push and remote deploys move: the one service with
// a build section (or the one named).
type appImage struct {
	service string
	ref     string // the image the service runs, e.g. invoicing-api:latest
	name    string // its repository's last component, e.g. invoicing-api
	sha     string // git revision of its build context, "" outside git
}

func findAppImage(p *types.Project, service string) (appImage, error) {
	names := p.ServicesWithBuild()
	sort.Strings(names)
	if service != "" {
		s, err := p.GetService(service)
		if err != nil {
			return appImage{}, usagef("--service %s: %v", service, err)
		}
		if s.Build == nil {
			return appImage{}, usagef("--service %s has no build section: nothing of ours to push", service)
		}
		names = []string{service}
	}
	if len(names) != 1 {
		return appImage{}, usagef("the stack has %d services with a build section (%s): choose one with --service", len(names), strings.Join(names, ", "))
	}
	s := p.Services[names[0]]
	ref := deployer.ImageRef(p.Name, s)
	name := ref
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	dir := s.Build.Context
	if dir == "" {
		dir = "."
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(p.WorkingDir, dir)
	}
	return appImage{service: s.Name, ref: ref, name: name, sha: gitSHA(dir)}, nil
}

// gitSHA is the 12-digit revision of the checkout holding dir, the tag
// invdeploy build gives; "" outside a git checkout.
func gitSHA(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// ensureBuilt builds the app image when the revision's tag (or, outside
// git, the service's image) is missing locally, and returns the local
// image to push.
func ensureBuilt(ctx context.Context, d *deployer.Deployer, st *deployer.Stack, app appImage, rebuild bool) (string, error) {
	source := app.ref
	if app.sha != "" {
		source = app.name + ":" + app.sha
		if i := strings.LastIndex(app.ref, "/"); i >= 0 {
			source = app.ref[:i+1] + source
		}
	}
	_, err := d.Engine().ImageInspect(ctx, source)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect local image %s: %w", source, err)
	}
	if err == nil && !rebuild {
		return source, nil
	}
	if _, err := d.Build(ctx, st, deployer.BuildOptions{Services: []string{app.service}}); err != nil {
		return "", err
	}
	if _, err := d.Engine().ImageInspect(ctx, source); err != nil {
		return app.ref, nil // built without the revision tag (e.g. a dirty checkout): push what the service runs
	}
	return source, nil
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
			app, err := findAppImage(st.Project, service)
			if err != nil {
				return err
			}
			repo, err := registry.Repository(login.registry, creds.Username, app.name)
			if err != nil {
				return usageError{err}
			}
			c, err := deployer.NewClient(g.Host)
			if err != nil {
				return err
			}
			defer c.Close()
			d := deployer.New(deployer.WithCallTimeout(c, g.EngineTimeout, g.Host), g.progress())
			source, err := ensureBuilt(ctx, d, st, app, rebuild)
			if err != nil {
				return err
			}
			tags := pushTags(tag, app.sha)
			res, err := registry.Push(ctx, c, registry.PushOptions{
				Source: source, Repository: repo, Tags: tags, Credentials: creds, Progress: g.progress(),
			})
			if err != nil {
				return err
			}
			dir, err := deployer.ConfigDir(st.Project.Name)
			if err == nil {
				err = registry.SaveRecord(dir, res, time.Now())
			}
			if err != nil {
				fmt.Fprintf(g.stderr, "warning: the digest was not recorded: %v\n", err)
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

// pushTags are the version tag (--tag, else the git revision) and latest.
func pushTags(tag, sha string) []string {
	v := tag
	if v == "" {
		v = sha
	}
	if v == "" || v == "latest" {
		return []string{"latest"}
	}
	return []string{v, "latest"}
}
