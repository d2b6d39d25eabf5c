package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

type downOptions struct {
	stack   stackOptions
	volumes bool
	timeout time.Duration
}

func newDownCommand(g *globalOptions) *cobra.Command {
	o := &downOptions{}
	cmd := &cobra.Command{
		Use:   "down [-f FILE] [-p NAME] [--volumes]",
		Short: "Stop and remove the stack's containers and networks (volumes only with --volumes)",
		Long: `down stops and removes every container and network of the project. Named volumes
- the data - are kept unless --volumes is given, so data is never deleted by accident.`,
		Example: `  invdeploy down                 # keeps the database volume
  invdeploy down -p shop --volumes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := o.stack.projectName(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			res, err := d.Down(cmd.Context(), name, deployer.DownOptions{Volumes: o.volumes, Timeout: o.timeout, Lock: true})
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"project": name, "containers": res.Containers, "networks": res.Networks, "volumes": res.Volumes})
			}
			kept := ""
			if !o.volumes {
				kept = " (volumes kept; --volumes removes them)"
			}
			fmt.Fprintf(g.stdout, "Stack %s is down: removed %d containers, %d networks, %d volumes%s\n", name, res.Containers, res.Networks, res.Volumes, kept)
			return nil
		},
	}
	o.stack.bind(cmd, true)
	cmd.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "also remove the project's named volumes (deletes its data)")
	durationFlag(cmd, &o.timeout, "timeout", 0, "stop grace period per container (default: each service's stop_grace_period)")
	return cmd
}
