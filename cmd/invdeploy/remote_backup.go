package main

import (
	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

// newRemoteBackupCommand is remote backup: the backup streamed from the
// host's database container over the run's one SSH connection into a
// directory on this machine.
func newRemoteBackupCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	o := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backup --host URL [-f FILE] [-p NAME] [--dir DIR]",
		Short: "Back up the host's PostgreSQL over the SSH connection into a directory on this machine",
		Long: `remote backup runs pg_basebackup in the host's database container and streams the
backup over the run's one SSH connection to this machine, where it is encrypted,
checksummed and written like invdeploy backup does (nothing is written on the
host). invdeploy remote restore --backup ID restores it on the host (sent back over
the connection), invdeploy restore --backup ID into a local stack.`,
		Example: `  invdeploy remote backup --host ssh://admin@203.0.113.7
  invdeploy remote restore --host ssh://admin@203.0.113.7 --backup 20261207T104200Z`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, pg, b, store, d, err := o.openRemote(cmd, g, ro, func() (*deployer.Stack, error) { return o.stack.load(cmd.Context(), g) })
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			return takeBackup(cmd, g, o, pg, b, store)
		},
	}
	o.bind(cmd)
	return cmd
}

func newRemoteBackupsCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	o := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backups --host URL [-f FILE] [-p NAME] [--dir DIR]",
		Short: "List the encrypted backups on this machine and continuous protection's archive on the host",
		Example: `  invdeploy remote backups --host ssh://admin@203.0.113.7
  invdeploy remote backups --host ssh://admin@203.0.113.7 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, pg, b, store, d, err := o.openRemote(cmd, g, ro, func() (*deployer.Stack, error) { return o.stack.load(cmd.Context(), g) })
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			return listBackups(cmd, g, o, pg, b, store)
		},
	}
	o.bind(cmd)
	return cmd
}

func newRemoteRestoreCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	o := &restoreOptions{}
	var port int
	cmd := &cobra.Command{
		Use:   "restore --host URL [-f FILE] [-p NAME] [--to latest|TIME] [--backup ID] [--port N]",
		Short: "Restore the host's PostgreSQL to the latest state or a point in time, verified before the switch",
		Long: `remote restore does what restore does, on the --host engine over the run's one
SSH connection: from continuous protection's archive on the host (a base backup
plus WAL, to any second it covers), or from an encrypted backup in --dir on this
machine (remote backup took it), checked here (SHA-256, size, key; a damaged one
is refused with exit 3 and nothing changes), decrypted here and sent over the
connection into a fresh volume on the host. PostgreSQL recovers there to --to
until it reaches consistency; a recovery that fails leaves the host as it was
(exit 1). Only then the database is stopped, its data kept in the volume
<volume>-before-restore-<time> on the host, the restored data takes its place
and the stack is brought up and waited for, the API's readiness included; if it
does not turn healthy the data from before is put back (exit 4).

The stack is loaded and checked as remote rollback does (the bundled API on all
interfaces of the host, port 8000 unless --port: give the same --port as the up).`,
		Example: `  invdeploy remote restore --host ssh://admin@203.0.113.7 --to latest
  invdeploy remote restore --host ssh://admin@203.0.113.7 --to 2026-12-07T10:42:00Z
  invdeploy remote restore --host ssh://admin@203.0.113.7 --backup 20261207T090000Z`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := o.target(cmd)
			if err != nil {
				return err
			}
			st, pg, b, store, d, err := o.openRemote(cmd, g, ro, func() (*deployer.Stack, error) { return loadRemoteStack(cmd, &o.stack, port) })
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			announce(g, "Restoring", st)
			if err := o.fetch(cmd, g, store); err != nil {
				return err
			}
			// A database Swarm runs is refused before the host's checks.
			if err := b.RefuseSwarm(cmd.Context(), pg); err != nil {
				return err
			}
			up, err := d.HostUp(cmd.Context(), st, deployer.UpOptions{}, "a restore")
			if err != nil {
				return err
			}
			res, err := b.Restore(cmd.Context(), st, pg, o.options(t, store, up))
			if err != nil {
				return err
			}
			return printRestored(g, pg, res, " on "+d.Endpoint().Host)
		},
	}
	o.bind(cmd)
	o.bindRestore(cmd)
	cmd.Flags().IntVar(&port, "port", 8000, "host port the API is published on (bundled stack; as given to remote up)")
	return cmd
}
