package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer/swarm"
)

func newSwarmCommand(g *globalOptions) *cobra.Command {
	o := &remoteOptions{}
	cmd := &cobra.Command{
		Use:   "swarm init|up|down|status|logs|scale|rollback --host URL",
		Short: "Run the stack on a Docker Swarm of hosts reached over SSH",
		Long: `swarm turns plain Docker hosts into a swarm (init) and runs the stack on it as
swarm services (up, down, status, logs, scale, rollback), through the Engine API
over one SSH connection per host, with the connection flags of remote.

A stateless service that publishes TCP ports gets an edge: a small service of
invdeploy's own on every node (global, host-mode ports) that balances over the
service's healthy tasks (endpoint_mode dnsrr) and retries a request elsewhere only
when that is safe, so every node answers on the port and the service updates
start-first. x-invdeploy-edge: false publishes the ports on the service itself
(host mode, only on nodes running a task); endpoint_mode: vip asks for Swarm's
ingress routing mesh and VIPs, which need IPVS in the hosts' kernel.`,
		Example: `  invdeploy swarm init --manager ssh://admin@10.0.1.10 --worker ssh://admin@10.0.1.11 --worker ssh://admin@10.0.1.12 --cluster-cidr 10.0.1.0/24
  invdeploy swarm up --host ssh://admin@10.0.1.10 --scale api=3
  invdeploy swarm status --host ssh://admin@10.0.1.10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("swarm needs a subcommand: init, up, down, status, logs, scale, releases or rollback")
		},
	}
	o.bind(cmd)
	cmd.AddCommand(newSwarmInitCommand(g, o), newSwarmUpCommand(g, o), newSwarmDownCommand(g, o), newSwarmStatusCommand(g, o), newSwarmRollbackCommand(g, o),
		newSwarmScaleCommand(g, o), newSwarmLogsCommand(g, o), newSwarmReleasesCommand(g, o), newSwarmEdgeCommand(g))
	cmd.AddCommand(newSwarmBackupCommand(g, o))
	return cmd
}

func newSwarmInitCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var managers, workers []string
	var opts swarm.InitOptions
	cmd := &cobra.Command{
		Use:   "init --manager URL [--manager URL ...] [--worker URL ...]",
		Short: "Make the hosts one swarm (idempotent: joins only hosts not yet in it)",
		Long: `swarm init makes the given hosts one Docker Swarm. When no --manager is in a
swarm yet, the first one initialises it; every host not yet a member joins with the
join token of its role, read from a manager and sent only in the join request (it
is never printed). Hosts already in the swarm are left alone, so running it again
with one more --worker joins only that one. Managers must be odd in number.

Each node advertises the address of its URL (use the hosts' private addresses, e.g.
through a ProxyJump bastion in ~/.ssh/config).

It prints the EC2 security-group ingress rules the swarm needs: 2377/tcp,
7946/tcp+udp and 4789/udp from --cluster-cidr (default: each host's /32), the
--app-port ports from --allow-from. A --cluster-cidr of 0.0.0.0/0 is refused: it
would open the management port, root on every node, to the world.`,
		Example: `  invdeploy swarm init --manager ssh://admin@10.0.1.10 --worker ssh://admin@10.0.1.11 --worker ssh://admin@10.0.1.12
  invdeploy swarm init --manager ssh://admin@10.0.1.10 --cluster-cidr 10.0.1.0/24 --app-port 8000 --allow-from 0.0.0.0/0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if len(managers) == 0 {
				return usagef("swarm init needs at least one --manager ssh://user@host")
			}
			open, closer := ro.opener(g)
			rep, err := swarm.InitHosts(ctx, managers, workers, open, closer, opts, g.progress())
			if rep != nil && err == nil {
				if g.Output == "json" {
					return writeJSON(g.stdout, rep)
				}
				printInitReport(g, rep)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&managers, "manager", nil, "a host that becomes a manager (repeatable; an odd number)")
	f.StringArrayVar(&workers, "worker", nil, "a host that becomes a worker (repeatable)")
	f.StringVar(&opts.ClusterCIDR, "cluster-cidr", "", "source of the swarm ports in the printed security-group rules: the hosts' private subnet (default: each host's /32)")
	f.IntSliceVar(&opts.AppPorts, "app-port", nil, "a port the stack publishes, for the printed security-group rules (repeatable)")
	f.StringVar(&opts.AllowFrom, "allow-from", "", "who may reach the --app-port ports (default 0.0.0.0/0)")
	f.DurationVar(&opts.JoinTimeout, "join-timeout", 60*time.Second, "bound on waiting for joined nodes to be ready")
	return cmd
}

func printInitReport(g *globalOptions, rep *swarm.InitReport) {
	w := g.stdout
	fmt.Fprintf(w, "Swarm %s:\n", rep.ClusterID)
	for _, n := range rep.Nodes {
		fmt.Fprintf(w, "  %-8s %-30s %-16s %s\n", n.Role, n.Host, n.Addr, n.Action)
	}
	if !rep.Changed() {
		fmt.Fprintln(w, "Nothing to do: every host is already in the swarm.")
	}
	for _, warning := range rep.Warnings {
		fmt.Fprintf(g.stderr, "warning: %s\n", warning)
	}
	fmt.Fprintln(w, "EC2 security group: the swarm needs these ingress rules (and no others; 2377 never from 0.0.0.0/0):")
	for _, r := range rep.Rules {
		fmt.Fprintf(w, "  %s %-5d from %-18s %s\n", r.Protocol, r.Port, r.Source, r.Purpose)
	}
}
