package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/invdeploy/invdeploy/deployer/kube"
)

func init() { commands = append(commands, newK8sCommand) }

// k8sOptions select the cluster and namespace, as kubectl's flags do.
type k8sOptions struct {
	kubeconfig, context, namespace string
}

func (o *k8sOptions) bind(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	pf.StringVar(&o.context, "context", "", "kubeconfig context (default its current context)")
	pf.StringVarP(&o.namespace, "namespace", "n", "", "namespace (default the context's, else default)")
}

func (o *k8sOptions) connect(g *globalOptions) (*kube.Cluster, error) {
	return kube.Connect(kube.ConnectOptions{Kubeconfig: o.kubeconfig, Context: o.context, Namespace: o.namespace, Timeout: g.EngineTimeout})
}

func newK8sCommand(g *globalOptions) *cobra.Command {
	o := &k8sOptions{}
	cmd := &cobra.Command{
		Use:   "k8s up|down|status|logs|releases|rollback|tunnel",
		Short: "Run the stack on a Kubernetes cluster (the kubeconfig's, as kubectl)",
		Long: `k8s runs the stack on a Kubernetes cluster through its API, with the cluster and
namespace chosen as kubectl chooses them (--kubeconfig, --context, -n; exec
credential plugins such as EKS's work). It is the same model as up: check, plan,
apply, wait, through the same compose-field table (see docs/guides/fields.md).

Stateless services become Deployments (rolling update, maxUnavailable 0, readiness
probes, a preStop delay), services with named volumes StatefulSets with a
PersistentVolumeClaim per volume, ports and expose Services, secrets Secrets
mounted as files (never env), configs ConfigMaps; everything is applied with
server-side apply under the field manager invdeploy, labelled with the project.`,
		Example: `  invdeploy k8s up --registry registry.example.com/team --context prod -n shop
  invdeploy k8s tunnel api
  invdeploy k8s rollback --to 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("k8s needs a subcommand: up, down, status, logs, releases, rollback or tunnel")
		},
	}
	o.bind(cmd)
	cmd.AddCommand(newK8sUpCommand(g, o), newK8sDownCommand(g, o), newK8sStatusCommand(g, o), newK8sLogsCommand(g, o),
		newK8sReleasesCommand(g, o), newK8sRollbackCommand(g, o), newK8sTunnelCommand(g, o))
	return cmd
}

func newK8sUpCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	var login loginOptions
	var scale []string
	var waitTimeout time.Duration
	var rebuild, dryRun bool
	cmd := &cobra.Command{
		Use:   "up [-f FILE] [-p NAME] [--registry R] [--scale SERVICE=N] [--dry-run [-o yaml]]",
		Short: "Build, push and deploy the stack to the cluster; wait until it is rolled out",
		Long: `k8s up deploys the stack to the namespace in four stages:

- check (exit 3, nothing changed): the cluster answers, every compose field is
  honoured on Kubernetes, this identity may do what up does (SelfSubjectAccessReview),
  services with a build section have a --registry, secrets are readable;
- plan: the objects from the compose file, each compared with what the namespace
  has; --dry-run prints the plan and has the API server validate every object
  (server-side dry run); with -o yaml it prints the manifests instead (Secrets'
  values are never printed);
- apply: images with a build section are built here, pushed to --registry and run
  by digest; objects are applied in depends_on order, a service only once what it
  depends on is ready;
- wait: every workload rolled out (observed generation, updated and available
  replicas). A rollout that fails (readiness, crash, image pull, --wait-timeout) is
  rolled back to the release before and up exits 4 with the failing pods' events and
  last log lines.

A second up while one runs exits 5 (the deploy lock is a Lease in the namespace).
Each successful up is recorded as a release (invdeploy k8s releases).`,
		Example: `  invdeploy k8s up --registry 127.0.0.1:5000 -n shop
  invdeploy k8s up --dry-run -o yaml > manifests.yaml
  echo "$TOKEN" | invdeploy k8s up --registry ghcr.io/acme -u bot --password-stdin --scale api=3`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if g.Output == "yaml" && !dryRun {
				return usagef("-o yaml renders the manifests: it needs --dry-run")
			}
			sc, err := parseScale(scale)
			if err != nil {
				return err
			}
			creds, err := login.credentials(g)
			if err != nil {
				return err
			}
			st, err := stack.load(ctx, g)
			if err != nil {
				return err
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			scaled := map[string]int{}
			for k, v := range sc {
				scaled[k] = int(v)
			}
			uo := kube.UpOptions{Registry: login.registry, Credentials: creds, Build: rebuild, Scale: scaled,
				WaitTimeout: waitTimeout, Progress: g.progress(), Command: "up"}
			if login.registry != "" {
				uo.Images = &kube.LocalImages{D: d, Stack: st, Registry: login.registry, Credentials: creds}
			} else {
				uo.Images = &kube.LocalImages{D: d, Stack: st}
			}
			if dryRun {
				pl, err := kube.DryRun(ctx, c, st, uo, true)
				if err != nil {
					return err
				}
				return printK8sPlan(g, pl)
			}
			announce(g, "Deploying to "+c.Where()+":", st)
			res, err := kube.Up(ctx, c, st, uo)
			if res != nil && g.Output == "json" {
				return firstErr(err, writeJSON(g.stdout, res))
			}
			if err == nil && res != nil {
				if res.Release != nil {
					fmt.Fprintf(g.stdout, "Release %d of %s deployed to %s in %s\n", res.Release.Number, st.Project.Name, c.Where(), res.Elapsed.Round(100*time.Millisecond))
				} else {
					fmt.Fprintf(g.stdout, "Nothing to change: %s is up to date in %s\n", st.Project.Name, c.Where())
				}
			}
			return err
		},
	}
	cmd.Annotations = map[string]string{outputYAML: "true"}
	stack.bind(cmd, true)
	login.bind(cmd)
	cmd.Flags().StringArrayVar(&scale, "scale", nil, "SERVICE=N: run N replicas of SERVICE (repeatable; overrides deploy.replicas)")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 3*time.Minute, "bound on waiting for each service to roll out")
	cmd.Flags().BoolVar(&rebuild, "build", false, "rebuild images with a build section even when present")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan (validated by the API server), change nothing; -o yaml prints the manifests")
	return cmd
}

// outputYAML marks a command that takes -o yaml.
const outputYAML = "invdeploy/output-yaml"

func printK8sPlan(g *globalOptions, pl *kube.Plan) error {
	switch g.Output {
	case "json":
		return writeJSON(g.stdout, pl)
	case "yaml":
		var skipped []string
		for _, m := range pl.Manifests() {
			if m.Kind == "Secret" {
				skipped = append(skipped, m.Name)
				continue
			}
			b, err := yaml.Marshal(m.Object)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "---\n%s", b)
		}
		if len(skipped) > 0 {
			fmt.Fprintf(g.stdout, "# Secrets not rendered (their values are never printed; k8s up applies them): %s\n", strings.Join(skipped, ", "))
		}
		return nil
	}
	for _, w := range pl.Warnings {
		fmt.Fprintf(g.stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(g.stdout, "Plan for %s on %s:\n", pl.Project, pl.Cluster)
	if !pl.Changes() {
		fmt.Fprintln(g.stdout, "  nothing to change")
	}
	for _, op := range pl.Ops {
		line := fmt.Sprintf("  %-16s %s", op.Kind, op.Target)
		if op.Reason != "" {
			line += ": " + op.Reason
		}
		if op.If != "" {
			line += fmt.Sprintf(" (if %s, else %s)", op.If, op.Else)
		}
		fmt.Fprintln(g.stdout, line)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tWORKLOAD\tREPLICAS\tACTION\tIMAGE")
	for _, s := range pl.Services {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Service, s.Workload, s.Replicas, s.Action, s.Image)
	}
	return tw.Flush()
}

// k8sProject is the project a k8s command acts on: -p, else the stack's name.
func k8sProject(cmd *cobra.Command, g *globalOptions, stack *stackOptions) (string, error) {
	return stack.projectName(cmd.Context(), g)
}

func newK8sDownCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	var volumes bool
	cmd := &cobra.Command{
		Use:   "down [-p NAME] [--volumes]",
		Short: "Delete what k8s up applied (claims and generated secrets stay unless --volumes)",
		Long: `k8s down deletes exactly what up applied in the namespace: the objects labelled
invdeploy.io/project=<project> (Deployments, StatefulSets, Services, ConfigMaps,
Secrets, the release history). The PersistentVolumeClaims (the data) stay, and so do
the generated Secrets the data was set up with; --volumes deletes both, and returns
once the claims are gone (their pods terminated).`,
		Example: `  invdeploy k8s down -n shop
  invdeploy k8s down --volumes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := k8sProject(cmd, g, &stack)
			if err != nil {
				return err
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			res, err := kube.Down(cmd.Context(), c, name, kube.DownOptions{Volumes: volumes})
			if res != nil && g.Output == "json" {
				return firstErr(err, writeJSON(g.stdout, res))
			}
			if res != nil {
				for _, d := range res.Deleted {
					fmt.Fprintf(g.stdout, "Deleted %s\n", d)
				}
				for _, k := range res.Kept {
					fmt.Fprintf(g.stdout, "Kept %s\n", k)
				}
			}
			return err
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also delete the claims (the data) and the generated secrets")
	return cmd
}

func newK8sStatusCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:     "status [-p NAME]",
		Short:   "Show the project's workloads: ready and desired replicas, image",
		Example: `  invdeploy k8s status -n shop -o json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := k8sProject(cmd, g, &stack)
			if err != nil {
				return err
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			sts, err := kube.Status(cmd.Context(), c, name)
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"project": name, "namespace": c.Namespace, "services": sts})
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tWORKLOAD\tREADY\tUPDATED\tIMAGE")
			for _, s := range sts {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\n", s.Service, s.Workload, s.Ready, s.Desired, s.Updated, s.Image)
			}
			return tw.Flush()
		},
	}
	stack.bind(cmd, true)
	return cmd
}

func newK8sLogsCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	var follow bool
	var tail int64
	cmd := &cobra.Command{
		Use:     "logs [SERVICE] [-f] [--tail N]",
		Short:   "Print the logs of the project's pods (one service's with SERVICE)",
		Example: `  invdeploy k8s logs api -f`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := k8sProject(cmd, g, &stack)
			if err != nil {
				return err
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			lo := kube.LogsOptions{Follow: follow, Tail: tail}
			if len(args) == 1 {
				lo.Service = args[0]
			}
			return kube.Logs(cmd.Context(), c, name, lo, g.stdout)
		},
	}
	stack.bind(cmd, false)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming")
	cmd.Flags().Int64Var(&tail, "tail", 100, "lines of each pod to start with")
	return cmd
}

func newK8sReleasesCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:   "releases [-p NAME]",
		Short: "List the project's releases kept in the namespace, newest first",
		Long: `Every k8s up that changed something is recorded as a release in the namespace (a
ConfigMap per release, as Helm keeps its releases): its number, time, command,
status (deployed, superseded, failed) and the image of every service. The objects
it applied are kept with it (never Secrets' values), so k8s rollback --to N needs
no build and no compose file.`,
		Example: `  invdeploy k8s releases -n shop`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := k8sProject(cmd, g, &stack)
			if err != nil {
				return err
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			rels, err := kube.Releases(cmd.Context(), c, name)
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"project": name, "namespace": c.Namespace, "releases": rels})
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RELEASE\tTIME\tSTATUS\tCOMMAND\tIMAGES")
			for _, r := range rels {
				var imgs []string
				for s, i := range r.Images {
					imgs = append(imgs, s+"="+i)
				}
				status := r.Status
				if r.Note != "" {
					status += " (" + r.Note + ")"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Number, r.Time.Format(time.RFC3339), status, r.Command, strings.Join(imgs, " "))
			}
			return tw.Flush()
		},
	}
	stack.bind(cmd, true)
	return cmd
}

func newK8sRollbackCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	var to int
	var waitTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback [-p NAME] [--to N]",
		Short: "Apply an earlier release again (default: the one before the current)",
		Long: `k8s rollback applies the objects of release N (default: the deployed release before
the current one) again, rolls them out like up (maxUnavailable 0, readiness), waits
and records the rollback as a new release. Secrets keep their current values.`,
		Example: `  invdeploy k8s rollback
  invdeploy k8s rollback --to 3 -n shop`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := k8sProject(cmd, g, &stack)
			if err != nil {
				return err
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			rel, err := kube.Rollback(cmd.Context(), c, name, to, waitTimeout, g.progress())
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, rel)
			}
			fmt.Fprintf(g.stdout, "Release %d: %s\n", rel.Number, rel.Command)
			return nil
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().IntVar(&to, "to", 0, "the release to return to (see k8s releases)")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 3*time.Minute, "bound on waiting for each service to roll out")
	return cmd
}

func newK8sTunnelCommand(g *globalOptions, ko *k8sOptions) *cobra.Command {
	var stack stackOptions
	var port, remotePort int
	cmd := &cobra.Command{
		Use:   "tunnel [SERVICE] [--port LOCAL] [--remote-port PORT]",
		Short: "Forward a local port to a ready pod of a service through the API server",
		Long: `k8s tunnel forwards 127.0.0.1:LOCAL to a ready pod of SERVICE (default: the
stack's first service with published ports) through the API server, as kubectl
port-forward does, until interrupted. LOCAL defaults to the service's published
port, the pod's port to its target port.`,
		Example: `  invdeploy k8s tunnel api
  invdeploy k8s tunnel db --port 15432 --remote-port 5432`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, name, err := stack.resolve(cmd.Context(), g)
			if err != nil {
				return err
			}
			service := ""
			if len(args) == 1 {
				service = args[0]
			}
			lp, rp := port, remotePort
			if st != nil {
				for _, n := range st.Project.ServiceNames() {
					s := st.Project.Services[n]
					if (service == "" || service == n) && len(s.Ports) > 0 {
						if service == "" {
							service = n
						}
						if rp == 0 {
							rp = int(s.Ports[0].Target)
						}
						if lp == 0 && s.Ports[0].Published != "" {
							fmt.Sscanf(s.Ports[0].Published, "%d", &lp)
						}
						break
					}
				}
			}
			if service == "" || rp == 0 {
				return usagef("name the service and its port: k8s tunnel SERVICE --remote-port PORT")
			}
			c, err := ko.connect(g)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return kube.Tunnel(ctx, c, name, kube.TunnelOptions{Service: service, LocalPort: lp, RemotePort: rp, Ready: func(addr string) {
				fmt.Fprintf(g.stdout, "Forwarding http://%s -> %s port %d in %s (Ctrl-C to stop)\n", addr, service, rp, c.Where())
			}}, g.stderr)
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().IntVar(&port, "port", 0, "local port on 127.0.0.1 (default the published port; 0 with no published port: any)")
	cmd.Flags().IntVar(&remotePort, "remote-port", 0, "the pod's port (default the service's first target port)")
	return cmd
}
