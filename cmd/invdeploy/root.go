package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/backup"
	"github.com/invdeploy/invdeploy/internal/version"
)

// globalOptions are the flags every command shares, and the process's I/O.
type globalOptions struct {
	// Host is the engine address (-H): "" means $DOCKER_HOST, then the local socket.
	Host string
	// Output is text or json.
	Output string
	// Quiet prints only results and errors, no progress.
	Quiet bool
	// EngineTimeout bounds each quick engine call (ping, version, inspect,
	// list): an engine that accepts connections but never answers fails
	// the command instead of hanging it.
	EngineTimeout time.Duration

	stdin          io.Reader
	stdout, stderr io.Writer
	// argv0 is how the user invoked invdeploy (os.Args[0]), for hints.
	argv0 string
	// cmd is the command being run, for hints that carry its flags.
	cmd *cobra.Command
}

// commands are invdeploy's subcommands, one constructor per file.
var commands = []func(*globalOptions) *cobra.Command{
	newUpCommand,
	newDownCommand,
	newStatusCommand,
	newLogsCommand,
	newCheckCommand,
	newBuildCommand,
	newLockCommand,
	newReleasesCommand,
	newRollbackCommand,
	newCompletionCommand,
	newSwarmCommand,
	newBackupCommand,
	newBackupsCommand,
	newRestoreCommand,
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "invdeploy",
		Short: "Build, check and run the Invoicing API stack through the Docker Engine API",
		Long: `invdeploy deploys a stack - the bundled Invoicing API and its PostgreSQL, or any
compose file - through the Docker Engine API: it checks ports and secrets first
and refuses with a clear message, builds images, starts services in dependency
order and returns when everything is healthy.

Exit codes: 0 ok; 1 failure; 2 usage; 3 preflight refused (nothing changed);
4 deployed but unhealthy; 5 another deploy holds the project's lock.`,
		Example: `  invdeploy up                 # the bundled stack, from the repository root
  invdeploy status --output json
  invdeploy remote status --host ssh://admin@203.0.113.7`,
		Version:           version.String(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			g.cmd = cmd
			if g.Output == "yaml" && cmd.Annotations[outputYAML] == "" {
				return usagef("--output \"yaml\": want text or json (only k8s up --dry-run renders yaml)")
			}
			if g.Output != "text" && g.Output != "json" && g.Output != "yaml" {
				return usagef("--output %q: want text or json", g.Output)
			}
			return nil
		},
	}
	root.SetIn(g.stdin)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.Host, "host", "H", "", "Docker engine address (default $DOCKER_HOST, then the local socket)")
	pf.StringVarP(&g.Output, "output", "o", "text", "output format: text or json")
	pf.BoolVarP(&g.Quiet, "quiet", "q", false, "print results and errors only, no progress")
	pf.DurationVar(&g.EngineTimeout, "engine-timeout", deployer.DefaultCallTimeout, "bound on each quick engine call (ping, version, inspect, list, the deploy lock); 0 means none")
	for _, newCmd := range commands {
		root.AddCommand(newCmd(g))
	}
	registerCompletions(root, g)
	return root
}

// deployer connects to the engine and returns a Deployer reporting progress
// on stderr.
func (g *globalOptions) deployer() (*deployer.Deployer, func(), error) {
	if g.remote() {
		// The local commands have neither the SSH transport (one connection,
		// host-key checks) nor the remote preflight (world-published ports,
		// processes holding ports, weak passwords refused): refuse rather
		// than deploy to another machine with the weaker local rules.
		h := g.Host
		if h == "" {
			h = os.Getenv("DOCKER_HOST")
		}
		return nil, nil, usagef("engine %s is on another machine: use the remote commands, e.g. %s", redactHost(h), remoteRefusalHint(g, g.cmd, h))
	}
	return g.engineDeployer()
}

// engineDeployer is a Deployer over the -H engine, wherever it is.
func (g *globalOptions) engineDeployer() (*deployer.Deployer, func(), error) {
	c, err := deployer.NewClient(g.Host)
	if err != nil {
		return nil, nil, err
	}
	return deployer.New(deployer.WithCallTimeout(c, g.EngineTimeout, g.Host), g.progress()), func() { c.Close() }, nil
}

// proxyBinary is the rollout proxy's executable: $INVDEPLOY_PROXY_BINARY,
// else invdeploy-proxy beside this executable (make build puts both in
// bin/), else this executable itself; "" when the variable is "none"
// (changed services are then recreated in place, and up says why).
func proxyBinary() string {
	if p := os.Getenv("INVDEPLOY_PROXY_BINARY"); p == "none" {
		return "" // no proxy: changed services are recreated in place
	} else if p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	p := filepath.Join(filepath.Dir(exe), proxyName)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return p
	}
	// One binary is enough (go install ./cmd/invdeploy): invdeploy is the
	// proxy too when started under the proxy's name (see main), so its
	// own executable makes the proxy image.
	return exe
}

// proxyName is the rollout proxy's program name: the binary beside
// invdeploy, and the name under which invdeploy itself acts as the proxy.
const proxyName = "invdeploy-proxy"

func (g *globalOptions) progress() *deployer.Progress {
	return deployer.NewProgress(g.stderr, g.Quiet)
}

// remote reports whether the engine is on another host: the local commands
// refuse it (remote engines go through invdeploy remote).
func (g *globalOptions) remote() bool {
	h := g.Host
	if h == "" {
		h = os.Getenv("DOCKER_HOST")
	}
	return deployer.IsRemoteHost(h)
}

// stackOptions are the flags that select a stack.
type stackOptions struct {
	Files   []string
	Project string
	// Profiles are the --profile flags (empty: COMPOSE_PROFILES).
	Profiles []string
	// Services named on the command line; they are enabled even when their
	// profiles are not.
	Services []string
}

func (s *stackOptions) bind(cmd *cobra.Command, fileShorthand bool) {
	if fileShorthand {
		cmd.Flags().StringArrayVarP(&s.Files, "file", "f", nil, "compose file (default: compose.yaml etc. in the working directory, else the bundled stack)")
	} else {
		cmd.Flags().StringArrayVar(&s.Files, "file", nil, "compose file (default: compose.yaml etc. in the working directory, else the bundled stack)")
	}
	cmd.Flags().VarP((*projectNameFlag)(&s.Project), "project-name", "p", "project name: lowercase letters, digits, '-' and '_', starting with a letter or digit (default: the compose file's name:, else its directory)")
	cmd.Flags().StringArrayVar(&s.Profiles, "profile", nil, "enable services of this compose profile (repeatable; default $COMPOSE_PROFILES)")
}

func (s *stackOptions) load(ctx context.Context, g *globalOptions) (*deployer.Stack, error) {
	st, err := deployer.Load(ctx, deployer.LoadOptions{Files: s.Files, ProjectName: s.Project, Profiles: s.Profiles, Services: s.Services})
	if err != nil {
		return nil, err
	}
	// x-invdeploy backup: continuous protection's sidecar is part of the model.
	if err := backup.AddSidecar(st.Project); err != nil {
		return nil, &deployer.InvalidError{Err: err}
	}
	return st, nil
}

// projectName is -p, else the name of the stack that would be loaded.
func (s *stackOptions) projectName(ctx context.Context, g *globalOptions) (string, error) {
	if s.Project != "" {
		return s.Project, nil
	}
	st, err := s.load(ctx, g)
	if err != nil {
		return "", fmt.Errorf("find the project name (or give -p): %w", err)
	}
	if !g.Quiet {
		for _, w := range st.LoaderWarnings {
			fmt.Fprintf(g.stderr, "warning: %s\n", w)
		}
	}
	return st.Project.Name, nil
}

// resolve is the project a command acts on and, when it comes from a
// compose file or the bundled stack, the stack (nil for -p NAME alone: a
// project known by name only, whatever its containers).
func (s *stackOptions) resolve(ctx context.Context, g *globalOptions) (*deployer.Stack, string, error) {
	named := s.Project != "" && len(s.Files) == 0
	st, err := s.load(ctx, g)
	if err != nil {
		if named {
			// -p NAME alone names the project; an unreadable compose file
			// in the working directory does not stop acting on it.
			return nil, s.Project, nil
		}
		return nil, "", fmt.Errorf("find the project (or give -p): %w", err)
	}
	if !g.Quiet {
		for _, w := range st.LoaderWarnings {
			fmt.Fprintf(g.stderr, "warning: %s\n", w)
		}
	}
	if named && !st.FromFile {
		return nil, s.Project, nil
	}
	return st, st.Project.Name, nil
}

// announce says which project a mutating command changes and why it was
// chosen, e.g. "project invoicing (bundled stack; no compose file here)".
func announce(g *globalOptions, verb string, st *deployer.Stack) {
	if !g.Quiet {
		fmt.Fprintf(g.stderr, "%s %s\n", verb, st.Describe())
	}
}

func warn(g *globalOptions, st *deployer.Stack) {
	if g.Quiet {
		return
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(g.stderr, "warning: %s\n", w)
	}
}

func durationFlag(cmd *cobra.Command, p *time.Duration, name string, value time.Duration, usage string) {
	cmd.Flags().DurationVar(p, name, value, usage)
}

// projectNameFlag is -p: a name outside compose's rule is refused when the
// flag is parsed (a usage error, exit 2), so every command that takes -p
// acts on the same project for the same argument.
type projectNameFlag string

func (p *projectNameFlag) String() string { return string(*p) }

// Set checks the name (deployer.CheckProjectName).
func (p *projectNameFlag) Set(v string) error {
	if err := deployer.CheckProjectName(v); err != nil {
		return err
	}
	*p = projectNameFlag(v)
	return nil
}

// Type names the value in --help.
func (p *projectNameFlag) Type() string { return "string" }
