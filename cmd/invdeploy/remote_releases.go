package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

func newRemoteReleasesCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "releases --host URL [-p NAME]",
		Short: "List the project's recorded releases on the host, newest first",
		Long: `remote releases lists the releases recorded on the --host engine, as releases
does locally: the history lives on the engine, so any machine that reaches the
host sees the same list.`,
		Example: `  invdeploy remote releases --host ssh://admin@203.0.113.7
  invdeploy remote releases --host ssh://admin@203.0.113.7 -p shop -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, d, err := ro.openProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			return listReleases(cmd.Context(), g, d, name, " on "+d.Endpoint().Host)
		},
	}
	stack.bind(cmd, true)
	return cmd
}

func newRemoteRollbackCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var to, port int
	var waitTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback --host URL [-f FILE] [-p NAME] [--to N] [--port N]",
		Short: "Redeploy an earlier release's images on the host (default: the one before the current)",
		Long: `remote rollback runs the exact images of an earlier release again on the --host
engine, as rollback does locally. The images are already on the host (the release
records keep them from docker image prune), so nothing is built or sent. The stack
is loaded and published as remote up does (the bundled API on all interfaces of
the host, port 8000 unless --port; give the same --port as the up), checked with
the remote preflight (engine version, ports never to be published to the world,
weak secrets), locked and recorded as a new release (exit codes as remote up).`,
		Example: `  invdeploy remote rollback --host ssh://admin@203.0.113.7
  invdeploy remote rollback --host ssh://admin@203.0.113.7 --to 3
  invdeploy remote releases --host ssh://admin@203.0.113.7`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if to < 0 {
				return usagef("--to must be a release number")
			}
			st, err := loadRemoteStack(cmd, &stack, port)
			if err != nil {
				return err
			}
			d, err := ro.open(ctx, g)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			rel, res, err := d.Rollback(ctx, st, deployer.RollbackOptions{To: to, Up: deployer.UpOptions{WaitTimeout: waitTimeout, Lock: true, ProxyBinary: proxyBinary()}})
			if err != nil {
				return err
			}
			return printRollback(g, st, rel, res, " on "+d.Endpoint().Host)
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().IntVar(&to, "to", 0, "release number to return to (default: the one before the current)")
	cmd.Flags().IntVar(&port, "port", 8000, "host port the API is published on (bundled stack; as given to remote up)")
	durationFlag(cmd, &waitTimeout, "wait-timeout", 3*time.Minute, "how long to wait for dependencies and health")
	return cmd
}

func newRemoteLockCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var brk lockBreak
	cmd := &cobra.Command{
		Use:   "lock --host URL [-p NAME] [--break]",
		Short: "Show who holds the project's deploy lock on the host, or break it",
		Long: `remote lock shows the deploy lock on the --host engine, as lock does locally:
remote up, remote down and remote rollback hold it, so two machines deploying to
one host never run at once (the second exits 5 and names the holder).

` + lockHelp,
		Example: `  invdeploy remote lock --host ssh://admin@203.0.113.7
  invdeploy remote lock --host ssh://admin@203.0.113.7 -p shop --break`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, d, err := ro.openProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			return showOrBreakLock(cmd.Context(), g, d, name, brk, " on "+d.Endpoint().Host)
		},
	}
	stack.bind(cmd, true)
	brk.bind(cmd)
	return cmd
}

// openProject names the project (-p, else the stack's name) and then
// opens the run's connection; the caller closes it with closeRemote.
func (o *remoteOptions) openProject(ctx context.Context, g *globalOptions, stack *stackOptions) (string, *remote.Deployer, error) {
	name, err := remoteProject(ctx, g, stack)
	if err != nil {
		return "", nil, err
	}
	d, err := o.open(ctx, g)
	if err != nil {
		return "", nil, err
	}
	return name, d, nil
}
