package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/swarm"
)

func newSwarmUpCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var port int
	var scale []string
	var waitTimeout time.Duration
	var rebuild, dryRun bool
	cmd := &cobra.Command{
		Use:   "up --host URL [-f FILE] [-p NAME] [--scale SERVICE=N] [--dry-run]",
		Short: "Run the stack as swarm services, send images to the nodes, wait until it converges",
		Long: `swarm up deploys the stack to the swarm whose manager is --host, as swarm services
through the Engine API:

- images are built here (the same build as up) and streamed over each node's own SSH
  connection to every node that lacks them (no registry); services name the image
  ID, so every node runs the same bytes;
- networks become attachable overlay networks; secrets become swarm secrets named
  <project>_<secret>_<hash of the value>, so a changed value rolls the services that
  use it; old versions are removed once no service uses them;
- services are created or updated in depends_on order, each only once what it
  depends on has all replicas running (and healthy, where it has a healthcheck);
- deploy: replicas, resources, restart_policy, update_config, rollback_config,
  placement and endpoint_mode are honoured; --scale SERVICE=N overrides replicas;
- stateless services update start-first with failure_action rollback by default
  (stop-first when they publish a host-mode port: two tasks cannot bind it on one
  node); a service with a named volume runs as 1 replica pinned by the node label
  io.invdeploy.pin.<project>.<service> to the node that holds its volume (the
  manager, the first time);
- published ports are host-mode and endpoint_mode defaults to dnsrr (the ingress
  mesh and VIPs need IPVS in the nodes' kernel).

up is check -> plan -> apply(plan) -> wait, as locally. Preflight refuses (exit 3,
nothing changed) a compose field Swarm does not honour (docs/guides/fields.md names
each), an unreadable secret, an image neither here nor buildable. The deploy lock is
taken on the manager's engine (exit 5 while another deploy holds it). The plan is a
list of operations (node label, images send, network create, secret create, service
create/update, secret remove), each with its reason; --dry-run prints it (text, or
JSON with --output json) and changes nothing; up performs exactly it. A successful up
is recorded as a release in the swarm itself (a swarm config per release).

It waits until every service converged. When Swarm rolled an update back, or a
service does not converge within --wait-timeout, it exits 4 and prints the failed
tasks' errors and last log lines.

On the bundled stack, swarm up sets INVOICING_NO_NEW_PRIVILEGES=false (when unset):
Swarm services take no-new-privileges only from engine API 1.46 (Docker 27).`,
		Example: `  invdeploy swarm up --host ssh://admin@10.0.1.10 --scale api=3
  invdeploy swarm up --host ssh://admin@10.0.1.10 -f compose.yaml -p shop --wait-timeout 10m
  invdeploy swarm up --host ssh://admin@10.0.1.10 --dry-run --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			sc, err := parseScale(scale)
			if err != nil {
				return err
			}
			var env []string
			if os.Getenv("INVOICING_NO_NEW_PRIVILEGES") == "" {
				env = append(env, "INVOICING_NO_NEW_PRIVILEGES=false")
			}
			st, err := loadRemoteStack(cmd, &stack, port, env...)
			if err != nil {
				return err
			}
			if !dryRun {
				announce(g, "Deploying", st)
			}
			warn(g, st)
			local, err := deployer.NewLocalClient(localEngineHost())
			if err != nil {
				return err
			}
			defer local.Close()
			cl, err := ro.cluster(ctx, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			builder := deployer.New(local, g.progress())
			opts := swarm.UpOptions{
				Local: local,
				Build: func(ctx context.Context, svc string) error {
					_, err := builder.Build(ctx, st, deployer.BuildOptions{Services: []string{svc}})
					return err
				},
				Rebuild:     rebuild,
				Scale:       sc,
				WaitTimeout: waitTimeout,
			}
			if dryRun {
				pl, err := cl.DryRun(ctx, st, opts)
				if err != nil {
					return err
				}
				return printSwarmPlan(g, pl)
			}
			rep, err := cl.Up(ctx, st, opts)
			if rep != nil {
				if !g.Quiet {
					for _, w := range rep.Warnings {
						fmt.Fprintf(g.stderr, "warning: %s\n", w)
					}
				}
				if g.Output == "json" {
					if jerr := writeJSON(g.stdout, rep); jerr != nil && err == nil {
						err = jerr
					}
				} else {
					printSwarmUp(g, rep)
				}
			}
			return err
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().IntVar(&port, "port", 8000, "on the bundled stack: the API's published port on every node")
	cmd.Flags().StringArrayVar(&scale, "scale", nil, "SERVICE=N: run N replicas of SERVICE (repeatable; overrides deploy.replicas)")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute, "bound on waiting for each service to converge")
	cmd.Flags().BoolVar(&rebuild, "build", false, "rebuild images with a build section even when present")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan (each operation and why) and change nothing")
	return cmd
}

// printSwarmPlan prints swarm up's plan: its operations in order, each with
// its reason, then the services kept.
func printSwarmPlan(g *globalOptions, p *swarm.Plan) error {
	if g.Output == "json" {
		return writeJSON(g.stdout, p)
	}
	verdict := "nothing to change"
	if p.Changes() {
		verdict = "changes below"
	}
	fmt.Fprintf(g.stdout, "Plan for project %s on the swarm (--dry-run: nothing was changed; %s)\n", p.Project, verdict)
	for _, w := range p.Warnings {
		fmt.Fprintf(g.stdout, "  warning: %s\n", w)
	}
	for _, op := range p.Ops {
		line := fmt.Sprintf("  %-15s %s: %s", op.Kind, op.Target, op.Reason)
		if op.MayChange {
			line += " [may change]"
		}
		fmt.Fprintln(g.stdout, line)
	}
	for _, k := range p.Keep {
		fmt.Fprintf(g.stdout, "  %-15s %s: spec unchanged\n", "keep", k)
	}
	return nil
}

func parseScale(flags []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, f := range flags {
		name, n, ok := strings.Cut(f, "=")
		v, err := strconv.ParseUint(n, 10, 32)
		if !ok || name == "" || err != nil {
			return nil, usagef("--scale %q: want SERVICE=N, e.g. api=3", f)
		}
		out[name] = v
	}
	return out, nil
}

func printSwarmUp(g *globalOptions, rep *swarm.UpReport) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tACTION\tREPLICAS\tNODES\tIMAGE")
	for _, s := range rep.Services {
		nodes := strings.Join(s.Nodes, ",")
		if s.PinnedTo != "" {
			nodes += " (pinned)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Service, s.Action, s.Replicas, nodes, s.Image)
	}
	tw.Flush()
	if rep.Release != nil {
		fmt.Fprintf(g.stdout, "Release %d recorded in the swarm\n", rep.Release.Number)
	}
	if len(rep.SecretsRemoved) > 0 {
		fmt.Fprintf(g.stdout, "Removed old secret versions: %s\n", strings.Join(rep.SecretsRemoved, ", "))
	}
}

func newSwarmDownCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var volumes bool
	cmd := &cobra.Command{
		Use:   "down --host URL [-f FILE] [-p NAME] [--volumes]",
		Short: "Remove the stack's services, networks and secrets from the swarm (volumes stay)",
		Long: `swarm down removes the stack's services, then its overlay networks and swarm
secrets. Volumes stay on their nodes, and so do the node labels that pin stateful
services, so the next swarm up runs them where their data is. --volumes also removes
the stack's volumes on every node (over each node's own SSH connection) and the pin
labels: the data is gone.`,
		Example: `  invdeploy swarm down --host ssh://admin@10.0.1.10`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return onManager(cmd, g, ro, &stack, func(ctx context.Context, cl *swarm.Cluster, name string) error {
				rep, err := cl.Down(ctx, name, swarm.DownOptions{Volumes: volumes})
				if rep != nil && g.Output == "json" {
					return firstErr(err, writeJSON(g.stdout, rep))
				}
				if rep != nil {
					fmt.Fprintf(g.stdout, "Removed from project %s: services %v, networks %v, secrets %v\n", name, rep.Services, rep.Networks, rep.Secrets)
					if volumes {
						fmt.Fprintf(g.stdout, "Removed volumes (the data): %v\n", rep.Volumes)
					}
					if rep.KeptVolumes != "" {
						fmt.Fprintln(g.stdout, rep.KeptVolumes)
					}
				}
				return err
			})
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also remove the stack's volumes on every node (deletes the data) and the pin labels")
	return cmd
}

func newSwarmStatusCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "status --host URL [-f FILE] [-p NAME]",
		Short: "Show the stack's swarm services, their tasks per node, and where pinned data lives",
		Example: `  invdeploy swarm status --host ssh://admin@10.0.1.10
  invdeploy swarm status --host ssh://admin@10.0.1.10 --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return onManager(cmd, g, ro, &stack, func(ctx context.Context, cl *swarm.Cluster, name string) error {
				sts, err := cl.Status(ctx, name)
				if err != nil {
					return err
				}
				if g.Output == "json" {
					return writeJSON(g.stdout, sts)
				}
				if len(sts) == 0 {
					fmt.Fprintf(g.stdout, "No swarm services in project %s\n", name)
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERVICE\tREPLICAS\tUPDATE\tPORTS\tTASKS\tIMAGE")
				for _, st := range sts {
					var tasks []string
					for _, t := range st.Tasks {
						e := t.Node + ":" + t.State
						if t.Error != "" {
							e += " (" + t.Error + ")"
						}
						tasks = append(tasks, e)
					}
					fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\n", st.Service, st.Running, st.Desired, st.Update, strings.Join(st.Ports, ","), strings.Join(tasks, " "), st.Image)
				}
				tw.Flush()
				for _, st := range sts {
					if st.PinnedTo != "" {
						fmt.Fprintf(g.stdout, "%s is pinned to %s: %s\n", st.Service, st.PinnedTo, st.Note)
					}
				}
				return nil
			})
		},
	}
	stack.bind(cmd, true)
	return cmd
}

func newSwarmRollbackCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var waitTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback --host URL [-f FILE] [-p NAME]",
		Short: "Return every service to its previous spec (Swarm's one-step rollback) and wait until it converges",
		Long: `swarm rollback returns each service of the stack that has a previous spec to it:
the previous image, secrets and settings, as Swarm keeps them (one step back). A
service whose last update was rolled back (by Swarm or by swarm rollback) is left
alone: its previous spec is the one rolled away from. Services others depend on go
first, edges last; each is waited for as in swarm up (exit 4 when it does not
converge). The next swarm up deploys the compose file again.`,
		Example: `  invdeploy swarm rollback --host ssh://admin@10.0.1.10`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return onManager(cmd, g, ro, &stack, func(ctx context.Context, cl *swarm.Cluster, name string) error {
				res, err := cl.Rollback(ctx, name, waitTimeout)
				return printResults(g, res, err)
			})
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute, "bound on waiting for each service to converge")
	return cmd
}

func newSwarmScaleCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var waitTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "scale --host URL SERVICE=N [SERVICE=N ...]",
		Short: "Set the replicas of services and wait until they converge",
		Long: `swarm scale sets the number of replicas of running services (the next swarm up
applies the compose file's, or its own --scale, again). A service with a named volume
runs as exactly 1 replica.`,
		Example: `  invdeploy swarm scale --host ssh://admin@10.0.1.10 api=5`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := parseScale(args)
			if err != nil {
				return err
			}
			return onManager(cmd, g, ro, &stack, func(ctx context.Context, cl *swarm.Cluster, name string) error {
				res, err := cl.Scale(ctx, name, sc, waitTimeout)
				return printResults(g, res, err)
			})
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute, "bound on waiting for each service to converge")
	return cmd
}

func newSwarmLogsCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var o swarm.LogsOptions
	cmd := &cobra.Command{
		Use:     "logs --host URL [SERVICE...] [-f] [--tail N]",
		Short:   "Show the services' logs from every task on every node",
		Example: `  invdeploy swarm logs --host ssh://admin@10.0.1.10 api --tail 50 -f`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Services = args
			return onManager(cmd, g, ro, &stack, func(ctx context.Context, cl *swarm.Cluster, name string) error {
				return cl.Logs(ctx, name, o, g.stdout, g.stderr)
			})
		},
	}
	stack.bind(cmd, false)
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().StringVar(&o.Tail, "tail", "all", "lines per task from the end")
	cmd.Flags().BoolVarP(&o.Timestamps, "timestamps", "t", false, "show timestamps")
	return cmd
}

// onManager resolves the project and runs fn with the swarm whose manager
// is --host, closed afterwards.
func onManager(cmd *cobra.Command, g *globalOptions, ro *remoteOptions, stack *stackOptions, fn func(ctx context.Context, cl *swarm.Cluster, project string) error) error {
	ctx := cmd.Context()
	_, name, err := stack.resolve(ctx, g)
	if err != nil {
		return err
	}
	cl, err := ro.cluster(ctx, g)
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(ctx, cl, name)
}

// printResults prints what rollback or scale did to each service.
func printResults(g *globalOptions, res []swarm.ServiceResult, err error) error {
	if len(res) == 0 {
		return err
	}
	if g.Output == "json" {
		return firstErr(err, writeJSON(g.stdout, res))
	}
	printSwarmUp(g, &swarm.UpReport{Services: res})
	return err
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func newSwarmReleasesCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "releases --host URL [-p NAME]",
		Short: "List the project's releases recorded in the swarm, newest first",
		Long: `swarm releases lists the releases swarm up recorded in the swarm itself (one swarm
config per release, on every manager), so any machine that reaches a manager sees
the same list. The last 5 are kept.`,
		Example: `  invdeploy swarm releases --host ssh://admin@10.0.1.10 -o json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return onManager(cmd, g, ro, &stack, func(ctx context.Context, cl *swarm.Cluster, name string) error {
				return listReleases(ctx, g, cl, name, " on the swarm")
			})
		},
	}
	stack.bind(cmd, true)
	return cmd
}
