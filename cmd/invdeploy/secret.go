package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

// Registration kept out of root.go's list so the files change independently.
func init() {
	commands = append(commands, newSecretCommand)
}

func newSecretCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Manage a stack's secrets (rotate, show)",
		Args:  noArgs,
	}
	cmd.AddCommand(newSecretRotateCommand(g), newSecretShowCommand(g))
	return cmd
}

func newSecretRotateCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	var waitTimeout time.Duration
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rotate NAME [-f FILE] [-p NAME] [--dry-run]",
		Short: "Give a generated database password a new value, rolling the services that use it",
		Long: `rotate gives a generated PostgreSQL password secret (the bundled stack's
db_password) a new value: it generates one, sets it in the database with ALTER ROLE
(psql in the database container, as its own user; the password travels as a SCRAM
verifier on stdin, never in an argument or the environment), stores it (mode 0600)
where up keeps it, rewrites the database container's own copy in place (PostgreSQL
keeps the password in its data directory: the database is not restarted), and runs
up, which rolls the services that use the secret onto it (zero downtime behind the
rollout proxy; others are recreated in place). Secrets taken from a variable you set (INVOICING_DB_PASSWORD)
are yours to change: rotate refuses them. --dry-run prints those operations (the
rotation's own, then up's plan computed with the new value) and changes nothing.`,
		Example: `  invdeploy secret rotate db_password
  invdeploy secret rotate db_password --dry-run
  invdeploy secret rotate db_password -p shop --wait-timeout 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if waitTimeout <= 0 {
				return usagef("--wait-timeout must be positive")
			}
			st, err := stack.load(cmd.Context(), g)
			if err != nil {
				return err
			}
			if err := deployer.CheckRotate(st, args[0]); err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			if dryRun {
				pl, err := d.PlanRotate(cmd.Context(), st, args[0], deployer.RotateOptions{ProxyBinary: proxyBinary()})
				if err != nil {
					return err
				}
				return printPlan(g, pl)
			}
			res, err := d.RotateSecret(cmd.Context(), st, args[0], deployer.RotateOptions{WaitTimeout: waitTimeout, Lock: true, ProxyBinary: proxyBinary()})
			if err != nil {
				return err
			}
			return printUp(g, &stack, st, d, cmd, res)
		},
	}
	stack.bind(cmd, true)
	durationFlag(cmd, &waitTimeout, "wait-timeout", 3*time.Minute, "how long to wait for health after the services are rolled or recreated")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the operations the rotation would perform, change nothing")
	return cmd
}
