package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

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
			if err := fileAsService(g, args, follow, true); err != nil {
				return err
			}
			stack.Services = args
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
			if errors.Is(err, deployer.ErrNotFound) {
				if ferr := fileAsService(g, args, follow, false); ferr != nil {
					return ferr
				}
			}
			return err
		},
	}
	stack.bind(cmd, false)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "lines from the end of each container's log (-1: all)")
	return cmd
}

// fileAsService catches `logs -f FILE`, where -f means --follow and FILE
// became a service name: for an argument that is an existing file it says
// so and shows the order that works. Before asking the engine (early) it
// only catches names no service can have (a compose file extension or a
// path); after "no container of service" any existing file.
func fileAsService(g *globalOptions, args []string, follow, early bool) error {
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil || fi.IsDir() {
			continue
		}
		ext := strings.ToLower(filepath.Ext(a))
		if early && ext != ".yaml" && ext != ".yml" && ext != ".json" && !strings.ContainsRune(a, os.PathSeparator) {
			continue
		}
		line := []string{"logs", "--file", a}
		if follow {
			line = append(line, "-f")
		}
		for _, o := range args {
			if o != a {
				line = append(line, o)
			}
		}
		return usagef("%q is a file, not a service: for logs, -f means --follow; to read the stack from that file run: %s", a, g.commandLine(line...))
	}
	return nil
}
