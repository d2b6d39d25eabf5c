package main

import (
	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/backup"
)

// newSwarmBackupCommand is swarm backup: the backup streamed from the
// database's task container, over an SSH connection to the node that runs
// it, into a directory on this machine.
func newSwarmBackupCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	o := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backup --host URL [-f FILE] [-p NAME] [--dir DIR]",
		Short: "Back up the swarm's PostgreSQL into a directory on this machine",
		Long: `swarm backup asks the --host manager which node runs the database's task (a
service with a named volume runs one, pinned to its node), connects to that node
with the manager's login and flags, runs pg_basebackup in the task's container
and streams the backup here, where it is encrypted, checksummed and written as
invdeploy backup does (nothing is written on the nodes).

Restoring on Swarm is not a command yet: restore the backup into a stack on one
host (invdeploy restore --backup ID, or remote restore --host), or see "On Swarm"
in docs/guides/backups.md.`,
		Example: `  invdeploy swarm backup --host ssh://admin@10.0.1.10
  invdeploy backups -p invoicing`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := o.stack.load(ctx, g)
			if err != nil {
				return err
			}
			pg, store, err := o.locate(st)
			if err != nil {
				return err
			}
			c, err := ro.cluster(ctx, g)
			if err != nil {
				return err
			}
			defer c.Close()
			node, addr, err := c.TaskEngine(ctx, pg.Project, pg.Service)
			if err != nil {
				return err
			}
			// Swarm's deploy lock is held on the manager; a backup on a node takes none.
			b := &backup.Backups{Engine: deployer.WithCallTimeout(node, g.EngineTimeout, addr), Out: g.progress()}
			return takeBackup(cmd, g, o, pg, b, store)
		},
	}
	o.bind(cmd)
	return cmd
}
