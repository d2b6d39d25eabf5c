package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

func newStatusCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "status [-f FILE] [-p NAME] [--output text|json]",
		Short: "Show the stack's containers: name, service, state, health, ports, image, created",
		Example: `  invdeploy status
  invdeploy status -p shop --output json | jq '.[] | select(.health != "healthy")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, name, err := stack.resolve(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			sts, err := d.Status(cmd.Context(), name)
			if err != nil {
				return err
			}
			if st != nil && !g.Quiet {
				if orphans := st.Orphans(sts); len(orphans) > 0 {
					fmt.Fprintf(g.stderr, "warning: %s\n", deployer.OrphanWarning(orphans))
				}
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, sts)
			}
			if len(sts) == 0 {
				fmt.Fprintf(g.stdout, "No containers in project %s (run %s)\n", name, localHint(g, &stack, "up"))
				return nil
			}
			return printStatus(g.stdout, sts)
		},
	}
	stack.bind(cmd, true)
	return cmd
}

func printStatus(w io.Writer, sts []deployer.ContainerStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERVICE\tSTATE\tHEALTH\tPORTS\tIMAGE\tCREATED")
	for _, s := range sts {
		health := s.Health
		if health == "" {
			health = "-"
		}
		ports := strings.Join(s.Ports, ",")
		if ports == "" {
			ports = "-"
		}
		service := s.Service
		if s.Role != "" {
			service += " (" + s.Role + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, service, s.State, health, ports, s.Image, s.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.Name(), args)
	}
	return nil
}
