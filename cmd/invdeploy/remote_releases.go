package main

import (
	"context"
	"strconv"
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
			name, s, err := ro.connectProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			defer s.close(g)
			return listReleases(cmd.Context(), g, deployer.New(s.engine, g.progress()), name, " on "+s.conn.Endpoint.Host)
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
			s, err := ro.connect(ctx, g)
			if err != nil {
				return err
			}
			defer s.close(g)
			po := remote.PreflightOptions{}
			if s.conn.Endpoint.Scheme == "ssh" {
				po.SSHPort = s.conn.Endpoint.Port
			}
			// The same remote-only checks as remote up: a compose file
			// changed since the release must not publish Postgres or the
			// engine's ports to the world. The security-group rules are
			// remote up's to print. Ports no container holds are not probed
			// for host processes: the probe runs from a transferred image,
			// and a rollback transfers none.
			f, err := remote.Preflight(ctx, s.engine, st, po)
			if err != nil {
				return err
			}
			if err := f.Err(); err != nil {
				return err
			}
			prog := g.progress()
			prog.Event("Remote engine: %s", f.Engine)
			if len(f.ToProbe) > 0 {
				prog.Event("note: ports %v not probed for host processes (a rollback sends no image to run the probe from)", f.ToProbe)
			}
			d := deployer.New(s.engine, prog)
			// Name the target in the record ("remote rollback to N"): resolve
			// the default (the release before the current) here.
			if to == 0 {
				rels, err := d.Releases(ctx, st.Project.Name)
				if err != nil {
					return err
				}
				if len(rels) >= 2 {
					to = rels[1].Number
				}
			}
			uo := deployer.UpOptions{WaitTimeout: waitTimeout, Remote: true, Lock: true, RecordCommand: "remote rollback", ProxyBinary: proxyBinary()}
			if to > 0 {
				uo.RecordCommand = "remote rollback to " + strconv.Itoa(to)
			}
			rel, res, err := d.Rollback(ctx, st, deployer.RollbackOptions{To: to, Up: uo})
			if err != nil {
				return err
			}
			return printRollback(g, st, rel, res, " on "+s.conn.Endpoint.Host)
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
	var brk bool
	cmd := &cobra.Command{
		Use:   "lock --host URL [-p NAME] [--break]",
		Short: "Show who holds the project's deploy lock on the host, or break it",
		Long: `remote lock shows the deploy lock on the --host engine, as lock does locally:
remote up, remote down and remote rollback hold it, so two machines deploying to
one host never run at once (the second exits 5 and names the holder). --break
removes it at once: use it only when you know the holder is dead.`,
		Example: `  invdeploy remote lock --host ssh://admin@203.0.113.7
  invdeploy remote lock --host ssh://admin@203.0.113.7 -p shop --break`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, s, err := ro.connectProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			defer s.close(g)
			return showOrBreakLock(cmd.Context(), g, deployer.New(s.engine, g.progress()), name, brk, " on "+s.conn.Endpoint.Host)
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().BoolVar(&brk, "break", false, "remove the lock whoever holds it (only when its holder is dead)")
	return cmd
}

// connectProject names the project (-p, else the stack's name) and then
// opens the run's connection; the caller closes the session.
func (o *remoteOptions) connectProject(ctx context.Context, g *globalOptions, stack *stackOptions) (string, *session, error) {
	name, err := remoteProject(ctx, g, stack)
	if err != nil {
		return "", nil, err
	}
	s, err := o.connect(ctx, g)
	if err != nil {
		return "", nil, err
	}
	return name, s, nil
}
