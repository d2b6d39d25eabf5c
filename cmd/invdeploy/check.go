package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

func newCheckCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "check [-f FILE] [-p NAME] [--profile P]",
		Short: "Run preflight only: ports, secrets, files, images, engine (exit 3 when refused)",
		Long: `check runs the preflight of up and changes nothing, pulls nothing (whether a missing
image exists is asked of its registry through the engine). It exits 3 and names each
problem and its fix when:
a published host port is held by a process or container; a secret is missing, empty,
group- or world-readable or a known weak default, or a config cannot be read; a .env or secret file is tracked by git or
would enter a build context, or the context holds secret-looking files that are not
dockerignored; an image is neither present nor buildable nor pullable; the engine
does not answer or is older than API 1.41. Weak literal passwords in environment:
are a warning on a local engine and a refusal on a remote one.`,
		Example: `  invdeploy check
  invdeploy check -f docker-compose.yml && invdeploy up -f docker-compose.yml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := stack.load(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			rep, err := d.Check(cmd.Context(), st, deployer.CheckOptions{})
			if g.Output == "json" && rep != nil {
				if jerr := writeJSON(g.stdout, map[string]any{"project": st.Name(), "warnings": nonNil(rep.Warnings), "problems": nonNil(rep.Problems)}); jerr != nil {
					return jerr
				}
			} else if rep != nil {
				for _, w := range rep.Warnings {
					fmt.Fprintf(g.stderr, "warning: %s\n", w)
				}
			}
			if err != nil {
				return err
			}
			if g.Output != "json" {
				fmt.Fprintf(g.stdout, "Preflight passed for %s (%s)\n", st.Name(), st.Source)
			}
			return nil
		},
	}
	stack.bind(cmd, true)
	return cmd
}

// nonNil is s, or an empty slice for nil, so that JSON shows [] rather
// than null for a list with nothing in it.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
