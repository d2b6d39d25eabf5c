package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

func newSecretShowCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	var force bool
	cmd := &cobra.Command{
		Use:   "show NAME [-p NAME] [--force]",
		Short: "Print a secret invdeploy generated (e.g. grafana_admin), to a terminal only",
		Long: `show prints the value of a secret that invdeploy generated and keeps (mode 0600,
under $XDG_CONFIG_HOME/invdeploy/<project>/), such as the bundled stack's
grafana_admin (Grafana's admin password, user admin) or db_password.

It prints only to a terminal, so the value does not land in a file, a pipe or CI
logs by accident; --force prints it anyway (e.g. into a password manager's stdin).
Values you supply yourself (a secret file, or the variable set) are refused: they
are yours already.`,
		Example: `  invdeploy secret show grafana_admin
  invdeploy secret show grafana_admin -p shop --force | pass insert -e shop/grafana`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, ok := g.stdout.(*os.File)
			if !force && (!ok || !isTerminal(out)) {
				return usagef("secret show prints only to a terminal, and stdout is not one: add --force to print %s anyway", args[0])
			}
			if len(stack.Profiles) == 0 {
				// Every profile: a secret of a service that is off by
				// default (grafana_admin, profile dashboards) is still the
				// stack's.
				stack.Profiles = []string{"*"}
			}
			st, err := stack.load(cmd.Context(), g)
			if err != nil {
				return err
			}
			v, err := deployer.GeneratedSecret(st, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\n", v)
			return nil
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().BoolVar(&force, "force", false, "print even when stdout is not a terminal")
	return cmd
}
