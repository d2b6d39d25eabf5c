package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

func newBuildCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	var tags []string
	var noCache bool
	cmd := &cobra.Command{
		Use:   "build [SERVICE...] [--tag T] [--no-cache]",
		Short: "Build the stack's images through the Engine API, tagged as the file names them and <name>:<git-sha>",
		Long: `build sends each build context (honouring .dockerignore) to the engine's builder
and tags the image with the service's image name, <name>:<git-sha> of the checkout
(<git-sha>-dirty-<hash> when it has uncommitted changes, so the commit's tag never
names an image of edits) and every --tag; :latest only when the file or --tag names it. Build args VERSION, REVISION and GOPROXY are passed
when the Dockerfile declares them (VERSION and GOPROXY from the environment).
Credentials in a URL (user:token@) are removed from every build arg, with a
warning: build args are recorded in the image history.`,
		Example: `  invdeploy build                       # invoicing-api:<git-sha> (the bundled stack names that tag)
  invdeploy build api --tag v1.2.0 --no-cache`,
		RunE: func(cmd *cobra.Command, args []string) error {
			stack.Services = args
			st, err := stack.load(cmd.Context(), g)
			if err != nil {
				return err
			}
			warn(g, st)
			announce(g, "Building", st)
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			built, err := d.Build(cmd.Context(), st, deployer.BuildOptions{Services: args, Tags: tags, NoCache: noCache})
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"tags": built})
			}
			for _, t := range built {
				fmt.Fprintln(g.stdout, t)
			}
			return nil
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().StringArrayVarP(&tags, "tag", "t", nil, "extra tag (NAME:TAG, or TAG for the service's image name)")
	cmd.Flags().BoolVar(&noCache, "no-cache", false, "build without the engine's layer cache")
	return cmd
}
