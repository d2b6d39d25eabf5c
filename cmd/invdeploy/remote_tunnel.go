package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer/remote"
)

func newRemoteTunnelCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var localPort int
	cmd := &cobra.Command{
		Use:   "tunnel SERVICE[:PORT] --host ssh://user@host [-p NAME] [--local-port N]",
		Short: "Forward a local port to a service on the host over the SSH connection",
		Long: `tunnel forwards 127.0.0.1:LOCAL on this machine to a service of the stack on the
remote host, over the one SSH connection (a direct-tcpip channel, as ssh -L does):
Prometheus and Grafana stay bound to the host's 127.0.0.1 and need no security-group
rule. PORT is the service's container port (default: its published port, else its
only exposed one); the host reaches it on its 127.0.0.1-published port, else on the
container's address. LOCAL defaults to the published host port (else PORT); use
--local-port 0 for any free port. Runs until Ctrl-C; needs an ssh:// host and an
sshd that allows TCP forwarding (the default).`,
		Example: `  invdeploy remote tunnel grafana --host ssh://admin@203.0.113.7        # http://127.0.0.1:3000
  invdeploy remote tunnel prometheus --host ssh://admin@203.0.113.7     # http://127.0.0.1:9090
  invdeploy remote tunnel postgres-exporter:9187 --local-port 0 --host ssh://admin@203.0.113.7`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service, port, err := parseTunnelArg(args[0])
			if err != nil {
				return err
			}
			if localPort < -1 || localPort > 65535 {
				return usagef("--local-port %d: want 0..65535", localPort)
			}
			name, err := remoteProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			d, err := ro.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			host := d.Endpoint().Host
			err = d.Tunnel(cmd.Context(), name, remote.TunnelOptions{
				Service: service, Port: port, LocalPort: localPort,
				Ready: func(t remote.Tunnel) {
					fmt.Fprintf(g.stdout, "Forwarding http://%s -> %s:%d on %s (%s as the host sees it); Ctrl-C to stop\n",
						t.Local, t.Target.Container, t.Target.Port, host, t.Target.Addr)
				},
				OnError: func(err error) { fmt.Fprintf(g.stderr, "tunnel: %v\n", err) },
			})
			if err == nil && cmd.Context().Err() != nil {
				return nil // Ctrl-C is how a tunnel ends
			}
			return err
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().IntVar(&localPort, "local-port", -1, "local port on 127.0.0.1 (default: the service's published host port, else PORT; 0: any free port)")
	return cmd
}

// parseTunnelArg splits SERVICE[:PORT].
func parseTunnelArg(arg string) (string, int, error) {
	service, p, hasPort := strings.Cut(arg, ":")
	if service == "" {
		return "", 0, usagef("tunnel %q: want SERVICE[:PORT], e.g. grafana or prometheus:9090", arg)
	}
	if !hasPort {
		return service, 0, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, usagef("tunnel %q: PORT must be a number 1..65535, e.g. prometheus:9090", arg)
	}
	return service, port, nil
}
