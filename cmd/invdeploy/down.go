package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/stacks"
)

type downOptions struct {
	stack   stackOptions
	volumes bool
	timeout time.Duration
	// removeOrphans also removes containers of services the file no longer has.
	removeOrphans bool
	// yes confirms down of the bundled stack from outside the repository.
	yes bool
}

func newDownCommand(g *globalOptions) *cobra.Command {
	o := &downOptions{}
	cmd := &cobra.Command{
		Use:   "down [-f FILE] [-p NAME] [--volumes] [--remove-orphans] [--yes]",
		Short: "Stop and remove the stack's containers and networks (volumes only with --volumes)",
		Long: `down stops and removes every container and network of the project. Named volumes
- the data - are kept unless --volumes is given, so data is never deleted by accident.

With a compose file (-f, or one in the working directory), containers of services the
file no longer has (orphans) are kept and named; --remove-orphans removes them too.
-p NAME alone removes every container of that project. With neither, down targets the
bundled stack; from a directory that is not the invdeploy repository it asks first on
a terminal, and needs --yes otherwise. --volumes on a project with backups says where
the last one is and asks for the project name to be typed (or --yes).`,
		Example: `  invdeploy down                 # keeps the database volume
  invdeploy down -p shop --volumes
  invdeploy down -f compose.yaml --remove-orphans`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, services, err := o.target(cmd, g)
			if err != nil {
				return err
			}
			if o.volumes {
				if err := confirmVolumesDown(cmd, g, &o.stack, name, o.yes); err != nil {
					return err
				}
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			res, err := d.Down(cmd.Context(), name, deployer.DownOptions{Volumes: o.volumes, Timeout: o.timeout, Services: services, RemoveOrphans: o.removeOrphans, Lock: true, Edge: deployer.EdgeOptions{Name: edgeName()}})
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"project": name, "containers": res.Containers, "networks": res.Networks, "volumes": res.Volumes, "orphans_kept": nonNil(res.Orphans)})
			}
			kept := ""
			switch {
			case len(res.Orphans) > 0:
				kept = fmt.Sprintf(" (orphan containers %s kept, and with them the networks and volumes; --remove-orphans removes them)", strings.Join(res.Orphans, ", "))
			case !o.volumes:
				kept = " (volumes kept; --volumes removes them)"
			}
			fmt.Fprintf(g.stdout, "Stack %s is down: %s%s\n", name, removedSummary(res), kept)
			return nil
		},
	}
	o.stack.bind(cmd, true)
	cmd.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "also remove the project's named volumes (deletes its data)")
	durationFlag(cmd, &o.timeout, "timeout", 0, "stop grace period per container (default: each service's stop_grace_period)")
	cmd.Flags().BoolVar(&o.removeOrphans, "remove-orphans", false, "also remove containers of services the compose file no longer has")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not ask before stopping the bundled stack from outside the repository, or before --volumes deletes a project with backups")
	return cmd
}

// target is the project down removes, the services of its stack (nil: the
// whole project), after saying which project and why, and confirming a
// down of the bundled stack from outside the repository.
func (o *downOptions) target(cmd *cobra.Command, g *globalOptions) (string, []string, error) {
	st, name, err := o.stack.resolve(cmd.Context(), g)
	if err != nil {
		return "", nil, err
	}
	if st == nil {
		announceName(g, name, "-p")
		return name, nil, nil
	}
	announce(g, "Stopping", st)
	if st.Bundled && !o.yes {
		if err := confirmBundledDown(g, st); err != nil {
			return "", nil, err
		}
	}
	return st.Name(), st.AllServices(), nil
}

func announceName(g *globalOptions, name, why string) {
	if !g.Quiet {
		fmt.Fprintf(g.stderr, "Stopping project %s (%s)\n", name, why)
	}
}

// confirmBundledDown lets down of the bundled stack go ahead from the
// repository; elsewhere it asks on a terminal and refuses otherwise: from
// an unrelated directory "invdeploy down" may stop a stack the user did not
// mean.
func confirmBundledDown(g *globalOptions, st *deployer.Stack) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	if fileExists(filepath.Join(wd, filepath.FromSlash(stacks.InvoicingPath))) {
		return nil
	}
	why := fmt.Sprintf("%s is not the invdeploy repository and has no compose file, so down would stop the bundled stack", wd)
	if in, ok := g.stdin.(*os.File); ok && isTerminal(in) && isTerminal(os.Stderr) {
		fmt.Fprintf(g.stderr, "%s. Stop and remove %s? [y/N] ", why, st.Describe())
		line, _ := bufio.NewReader(in).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
			return nil
		}
		return fmt.Errorf("down cancelled: nothing was stopped")
	}
	return &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "project", Subject: st.Name(),
		Message: why + "; run it from the repository, name the project with -p " + st.Name() + ", or add --yes"}}}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
