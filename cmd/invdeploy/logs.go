package main

import (
	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

func newLogsCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs [SERVICE...] [-f] [--tail N]",
		Short: "Print the logs of the stack's containers, each line prefixed with its container",
		Long: `logs prints the output of the project's containers, or of the named services, each
line prefixed with the container's name. -f follows until interrupted. The file flag
is --file here (no -f shorthand: -f means --follow).`,
		Example: `  invdeploy logs --tail 50
  invdeploy logs api -f`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < -1 {
				return usagef("--tail %d: want a number of lines, or -1 for all", tail)
			}
			name, err := stack.projectName(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			err = d.Logs(cmd.Context(), name, deployer.LogsOptions{Services: args, Follow: follow, Tail: tail, Out: g.stdout})
			if follow && cmd.Context().Err() != nil {
				return nil // interrupted while following: the normal way to stop
			}
			return err
		},
	}
	stack.bind(cmd, false)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "lines from the end of each container's log (-1: all)")
	return cmd
}
