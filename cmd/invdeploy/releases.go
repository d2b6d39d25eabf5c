package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

func newReleasesCommand(g *globalOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "releases [-p NAME]",
		Short: "List the project's recorded releases, newest first",
		Long: `Every successful up records a release on the engine: its number, the git
revision ("(uncommitted changes)" after it when the images were built from a
tree with uncommitted changes, then not something the commit names), the exact
image of every service, who deployed it, when and from which machine. The images of the last 5 releases are kept on the engine (protected from
docker image prune) so that rollback needs no build and no registry.`,
		Example: `  invdeploy releases
  invdeploy releases -p shop -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := stack.projectName(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			return listReleases(cmd.Context(), g, d, name, "")
		},
	}
	stack.bind(cmd, true)
	return cmd
}

// releaseLister is what listReleases needs: a local or a remote deployer.
type releaseLister interface {
	Releases(ctx context.Context, project string) ([]deployer.Release, error)
}

// listReleases prints project name's releases on d's engine; where names a
// remote engine in the messages (" on HOST"), "" for the local one.
func listReleases(ctx context.Context, g *globalOptions, d releaseLister, name, where string) error {
	rels, err := d.Releases(ctx, name)
	if err != nil {
		return err
	}
	if g.Output == "json" {
		return writeJSON(g.stdout, map[string]any{"project": name, "releases": rels})
	}
	if len(rels) == 0 {
		fmt.Fprintf(g.stdout, "Project %s has no recorded release yet%s\n", name, where)
		return nil
	}
	printReleases(g, rels)
	return nil
}

func printReleases(g *globalOptions, rels []deployer.Release) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tCREATED\tBY\tREVISION\tCOMMAND\tIMAGES")
	for i, r := range rels {
		num := fmt.Sprint(r.Number)
		if i == 0 {
			num += " (current)"
		}
		names := make([]string, 0, len(r.Services))
		for n := range r.Services {
			names = append(names, n)
		}
		sort.Strings(names)
		imgs := make([]string, len(names))
		for j, n := range names {
			id := strings.TrimPrefix(r.Services[n].ImageID, "sha256:")
			if len(id) > 12 {
				id = id[:12]
			}
			imgs[j] = n + "=" + id
		}
		rev := r.Revision
		if rev == "" {
			rev = "-"
		}
		if r.FromDirtyTree() {
			rev += " (uncommitted changes)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s@%s\t%s\t%s\t%s\n", num, r.Created.Local().Format(time.DateTime), r.User, r.Machine, rev, r.Command, strings.Join(imgs, " "))
	}
	tw.Flush()
}

type rollbackOptions struct {
	stack       stackOptions
	to          int
	waitTimeout time.Duration
}

func newRollbackCommand(g *globalOptions) *cobra.Command {
	o := &rollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback [-f FILE] [-p NAME] [--to N]",
		Short: "Redeploy an earlier release's images (default: the one before the current)",
		Long: `rollback runs the exact images of an earlier release again, without building or
pulling: it is an up of the same compose file with each service's image replaced by
the one the release recorded, so it is checked, locked, waited on and recorded as a
new release like any up (exit codes as up). Services keep the rest of their
definition from the compose file. Changed services are applied as up applies them:
a stateless HTTP service is rolled through the rollout proxy with zero downtime,
others (a named volume, several ports) are recreated in place. A --to that names
no release is a usage error (exit 2).`,
		Example: `  invdeploy rollback            # back to the previous release
  invdeploy rollback --to 3
  invdeploy releases`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.to < 0 {
				return usagef("--to must be a release number")
			}
			st, err := o.stack.load(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			rel, res, err := d.Rollback(cmd.Context(), st, deployer.RollbackOptions{To: o.to, Up: deployer.UpOptions{WaitTimeout: o.waitTimeout, Lock: true, ProxyBinary: proxyBinary()}})
			if err != nil {
				return err
			}
			return printRollback(g, st, rel, res, "")
		},
	}
	o.stack.bind(cmd, true)
	cmd.Flags().IntVar(&o.to, "to", 0, "release number to return to (default: the one before the current)")
	durationFlag(cmd, &o.waitTimeout, "wait-timeout", 3*time.Minute, "how long to wait for health")
	return cmd
}

// printRollback reports a successful rollback; where names a remote engine
// (" on HOST"), "" for the local one.
func printRollback(g *globalOptions, st *deployer.Stack, rel *deployer.Release, res *deployer.UpResult, where string) error {
	if g.Output == "json" {
		return writeJSON(g.stdout, map[string]any{"project": st.Name(), "rolled_back_to": rel, "release": res.Release, "steps": res.Steps, "elapsed_seconds": res.Elapsed.Seconds()})
	}
	n := 0
	if res.Release != nil {
		n = res.Release.Number
	}
	fmt.Fprintf(g.stdout, "Stack %s is back on the images of release %d (recorded as release %d)%s in %.1fs\n", st.Name(), rel.Number, n, where, res.Elapsed.Seconds())
	return nil
}
