package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/backup"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// remoteOptions are the connection flags of every remote subcommand.
type remoteOptions struct {
	identities     []string
	knownHosts     string
	sshConfig      string
	acceptNew      bool
	tlsCA, tlsCert string
	tlsKey         string
	connectTimeout time.Duration
}

func (o *remoteOptions) bind(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringArrayVarP(&o.identities, "identity", "i", nil, "SSH private key to log in with (default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
	pf.StringVar(&o.knownHosts, "known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
	pf.StringVar(&o.sshConfig, "ssh-config", "", "OpenSSH client config read for the host's HostName, User, Port, IdentityFile, ProxyJump (default ~/.ssh/config; none: read none)")
	pf.BoolVar(&o.acceptNew, "accept-new-host-key", false, "add an unknown host's key to known_hosts (a changed key is always refused)")
	pf.StringVar(&o.tlsCA, "tlscacert", "", "tcp:// only: CA certificate of the engine (default $DOCKER_CERT_PATH/ca.pem)")
	pf.StringVar(&o.tlsCert, "tlscert", "", "tcp:// only: client certificate (default $DOCKER_CERT_PATH/cert.pem)")
	pf.StringVar(&o.tlsKey, "tlskey", "", "tcp:// only: client key (default $DOCKER_CERT_PATH/key.pem)")
	pf.DurationVar(&o.connectTimeout, "connect-timeout", defaultConnectTimeout, "bound on resolving, connecting and logging in")
}

// open connects to the --host engine (one SSH connection for ssh://) and
// returns the remote deployer for the run; close it with closeRemote.
func (o *remoteOptions) open(ctx context.Context, g *globalOptions) (*remote.Deployer, error) {
	host := g.Host
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		return nil, usagef("remote needs --host ssh://user@host[:port] (or tcp://host:2376 with TLS)")
	}
	return remote.Open(ctx, host, remote.OpenOptions{
		Connection: remote.Options{
			SSH: remote.SSHOptions{
				KnownHostsFile:   o.knownHosts,
				ConfigFile:       o.sshConfig,
				AcceptNewHostKey: o.acceptNew,
				IdentityFiles:    o.identities,
				AgentSocket:      os.Getenv("SSH_AUTH_SOCK"),
				ConnectTimeout:   o.connectTimeout,
				Notices:          g.stderr,
			},
			TLS: remote.TLSOptions{CACert: o.tlsCA, Cert: o.tlsCert, Key: o.tlsKey, CertPath: os.Getenv("DOCKER_CERT_PATH")},
		},
		EngineTimeout: g.EngineTimeout,
		Progress:      g.progress(),
	})
}

// closeRemote ends the run's connection and reports its traffic.
func closeRemote(g *globalOptions, d *remote.Deployer) {
	st := d.Stats()
	d.Close()
	if g.Quiet {
		return
	}
	ep := d.Endpoint()
	kind := "tcp"
	if ep.Scheme == "ssh" {
		kind = "1 SSH connection"
	}
	fmt.Fprintf(g.stderr, "remote: %s to %s, %d API streams, sent %d bytes, received %d bytes\n",
		kind, ep.Host, st.Dials, st.BytesSent, st.BytesReceived)
}

func newRemoteCommand(g *globalOptions) *cobra.Command {
	o := &remoteOptions{}
	cmd := &cobra.Command{
		Use:   "remote up|down|status|logs|releases|rollback|lock|backup|backups|restore --host URL",
		Short: "Deploy to a Docker host over one SSH connection (or TLS)",
		Long: `remote runs up, down, status, logs, releases, rollback, lock, backup, backups
and restore against the Docker engine of another host, such as an EC2
instance, given by --host (or DOCKER_HOST):

  ssh://user@host[:port][/path/to/docker.sock]   one SSH connection for the whole
      run; every Engine API request is a stream-local channel to the engine's socket,
      so the host needs only sshd and Docker. Host keys are checked against
      known_hosts: an unknown key refuses (showing its SHA256 fingerprint) unless
      --accept-new-host-key, a changed key always refuses. Keys come from ssh-agent
      and ~/.ssh/id_* or --identity.
  tcp://host:2376   mutual TLS with --tlscacert/--tlscert/--tlskey or DOCKER_CERT_PATH;
      plain tcp is refused unless the address is loopback.

Connection errors name the step that failed: name resolution, TCP connect, host
key, SSH authentication, or the Docker socket.`,
		Example: `  invdeploy remote up --host ssh://admin@203.0.113.7 --allow-from 0.0.0.0/0
  invdeploy remote status --host ssh://admin@203.0.113.7
  invdeploy remote down --host ssh://admin@203.0.113.7 --volumes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("remote needs a subcommand: up, down, status, logs, releases, rollback, lock, tunnel, backup, backups or restore")
		},
	}
	o.bind(cmd)
	cmd.AddCommand(newRemoteUpCommand(g, o), newRemoteDownCommand(g, o), newRemoteStatusCommand(g, o), newRemoteLogsCommand(g, o))
	cmd.AddCommand(newRemoteTunnelCommand(g, o))
	cmd.AddCommand(newRemoteReleasesCommand(g, o), newRemoteRollbackCommand(g, o), newRemoteLockCommand(g, o))
	cmd.AddCommand(newRemoteBackupCommand(g, o), newRemoteBackupsCommand(g, o), newRemoteRestoreCommand(g, o))
	return cmd
}

func newRemoteUpCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var login loginOptions
	var pull pullLoginOptions
	var via, allowFrom, adminCIDR, service, pullRegistry string
	var edgeOpts edgeFlags
	var port int
	var waitTimeout time.Duration
	var rebuild, allowDirty, dryRun bool
	cmd := &cobra.Command{
		Use:   "up --host URL [--via ssh|registry] [--port N] [--allow-from CIDR] [--dry-run]",
		Short: "Move images to the host, preflight there, start the stack and wait until healthy",
		Long: `remote up deploys the stack to the --host engine with the semantics of up:
preflight, dependency order, health gating, secrets and configs copied through the
Engine API (read-only files, /run/secrets noexec and nosuid; never env, never a bind
of a file on this machine), idempotency, labels, exit codes.

Images are built locally when missing, then reach the host either --via ssh (the
default: streamed over the same connection, skipping images the host already has)
or --via registry (pushed, then pulled by digest by the host's engine, with the
login sent only in that request: give the host a read-only token with
--pull-username/--pull-password-stdin, else it gets the push login, with a
warning). The host needs nothing but Docker and sshd.

Before anything of the stack is created it checks, besides what up checks: the
engine version; that no port 2375, 2376 or 5432 (or Postgres at all) would be
published to the world; that no process on the host holds a published port (probed
from a short-lived container in the host's network namespace); secrets present and
strong (a weak literal password refuses). It prints the EC2 security-group ingress
rules the stack needs: the app port from --allow-from, SSH from --admin-cidr. With
services that name x-invdeploy hosts, the rules are the HTTPS edge's instead of their
ports: 443 from --allow-from and 80 from anywhere (the CA validates certificates
over it); ports 80 and 443 held by a process on the host refuse.

On the bundled stack the API is published on all interfaces of the host, port 8000
unless --port; Postgres is never published.

--dry-run runs the checks that need no image on the host and prints the plan remote
up applies: the images it builds here and moves, then the host's operations, each
with its reason (what depends on a build not yet made is shown as a condition). It
builds, sends and changes nothing.`,
		Example: `  invdeploy remote up --host ssh://admin@203.0.113.7 --allow-from 0.0.0.0/0 --admin-cidr 198.51.100.4/32
  invdeploy remote up --host ssh://admin@ec2.example.com --via registry --registry alice
  invdeploy remote up --host ssh://admin@203.0.113.7 --dry-run     # the plan, nothing changed`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			// A registry given means images go through it, unless --via
			// says otherwise, which is then a contradiction.
			registryGiven := cmd.Flags().Changed("registry") || cmd.Flags().Changed("pull-registry") || pull.given()
			if registryGiven && !cmd.Flags().Changed("via") {
				via = remote.ViaRegistry
			}
			if via != remote.ViaSSH && via != remote.ViaRegistry {
				return usagef("--via %q: want ssh or registry", via)
			}
			if registryGiven && via == remote.ViaSSH {
				return usagef("--registry, --pull-registry and --pull-username/--pull-password-stdin apply to --via registry, not --via ssh")
			}
			if err := edgeOpts.check(); err != nil {
				return err
			}
			for flag, v := range map[string]string{"--allow-from": allowFrom, "--admin-cidr": adminCIDR} {
				if err := remote.CheckCIDR(v, flag); err != nil {
					return usageError{err}
				}
			}
			st, err := loadRemoteStack(cmd, &stack, port)
			if err != nil {
				return err
			}
			if !allowDirty {
				if err := deployer.CheckClean(st); err != nil {
					return err
				}
			}
			if !dryRun {
				announce(g, "Deploying", st)
			}
			uo := remote.UpOptions{
				Via:         via,
				Rebuild:     rebuild,
				Preflight:   remote.PreflightOptions{AppCIDR: allowFrom, AdminCIDR: adminCIDR, Edge: edgeOpts.o},
				Deploy:      deployer.UpOptions{WaitTimeout: waitTimeout, Lock: true, RecordCommand: "remote up", ProxyBinary: proxyBinary(), Edge: edgeOpts.o},
				LocalEngine: localEngineHost(),
			}
			if via == remote.ViaRegistry {
				creds, err := login.credentials(g)
				if err != nil {
					return err
				}
				uo.Registry, err = remote.NewRegistryRoute(st, remote.RegistryOptions{Registry: login.registry, PullRegistry: pullRegistry, Service: service, Credentials: creds})
				if err != nil {
					return err
				}
				if uo.Registry.PullCredentials, err = pull.credentials(g, &login, creds, pullRegistry); err != nil {
					return err
				}
				if uo.Registry.PullCredentials == nil && !creds.Anonymous() && !g.Quiet {
					fmt.Fprintf(g.stderr, "warning: the host pulls with the push login (%s); give it a read-only token instead with --pull-username/--pull-password-stdin\n", creds)
				}
			}
			d, err := ro.open(ctx, g)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			if dryRun {
				plan, f, err := d.Plan(ctx, st, uo)
				if f != nil {
					printFindings(g, f)
				}
				if err != nil {
					return err
				}
				return printPlan(g, plan)
			}
			res, err := d.Up(ctx, st, uo)
			if res != nil && res.Findings != nil {
				printFindings(g, res.Findings)
			}
			if err != nil {
				return err
			}
			return printRemoteUp(g, ro, &stack, d, st, res)
		},
	}
	stack.bind(cmd, true)
	login.bind(cmd)
	pull.bind(cmd)
	cmd.Flags().StringVar(&via, "via", remote.ViaSSH, "how images reach the host: ssh (streamed over the connection) or registry (push, then pull by digest)")
	cmd.Flags().IntVar(&port, "port", 8000, "host port the API is published on (bundled stack)")
	cmd.Flags().StringVar(&allowFrom, "allow-from", "", "CIDR allowed to reach the app port, for the printed security-group rule")
	cmd.Flags().StringVar(&adminCIDR, "admin-cidr", "", "CIDR of the admin machine, for the printed SSH rule")
	cmd.Flags().StringVar(&pullRegistry, "pull-registry", "", "with --via registry: the same registry as the host reaches it, when its address differs there (e.g. a VPC endpoint)")
	cmd.Flags().StringVar(&service, "service", "", "with --via registry: the service whose image is pushed (default: the one with a build section)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan (images built here and moved, then the host's operations, each with its reason) and change nothing")
	cmd.Flags().BoolVar(&rebuild, "build", false, "rebuild images with a build section locally even when present")
	cmd.Flags().BoolVar(&allowDirty, "allow-dirty", false, "deploy images built from build contexts with uncommitted changes (refused by default: what runs on a host should be something a commit names)")
	durationFlag(cmd, &waitTimeout, "wait-timeout", 3*time.Minute, "how long to wait for dependencies and health")
	edgeOpts.bind(cmd)
	return cmd
}

// loadRemoteStack loads the stack as remote up deploys it: the bundled API
// published on all interfaces of the host (INVOICING_API_BIND, unless set)
// at --port (INVOICING_API_PORT when set and --port not given). Every
// command that runs up on a host (remote up, remote rollback) loads it so,
// so that they publish the same ports.
func loadRemoteStack(cmd *cobra.Command, stack *stackOptions, port int, extraEnv ...string) (*deployer.Stack, error) {
	if port < 1 || port > 65535 {
		return nil, usagef("--port %d: want 1..65535", port)
	}
	env := append([]string{}, extraEnv...)
	if os.Getenv("INVOICING_API_BIND") == "" {
		env = append(env, "INVOICING_API_BIND=0.0.0.0")
	}
	if cmd.Flags().Changed("port") || os.Getenv("INVOICING_API_PORT") == "" {
		env = append(env, fmt.Sprintf("INVOICING_API_PORT=%d", port))
	}
	st, err := deployer.Load(cmd.Context(), deployer.LoadOptions{Files: stack.Files, ProjectName: stack.Project, Profiles: stack.Profiles, Env: env})
	if err != nil {
		return nil, err
	}
	if err := backup.AddSidecar(st.Project); err != nil {
		return nil, &deployer.InvalidError{Err: err}
	}
	return st, nil
}

// localEngineHost is the engine images are built in and sent from: the
// unix socket of DOCKER_HOST, else the default socket (DOCKER_HOST may name
// the remote host itself).
func localEngineHost() string {
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		return h
	}
	return remote.DefaultLocalEngine
}

func printFindings(g *globalOptions, f *remote.Findings) {
	if g.Quiet || len(f.Rules) == 0 {
		return
	}
	fmt.Fprintln(g.stderr, "EC2 security group: the stack needs these ingress rules (and no others):")
	for _, r := range f.Rules {
		fmt.Fprintf(g.stderr, "  tcp %-5d from %-18s %s\n", r.Port, r.CIDR, r.Purpose)
	}
	for _, r := range f.Rules {
		fmt.Fprintf(g.stderr, "  %s\n", r.AWSCommand())
	}
	for _, n := range f.Notes {
		fmt.Fprintf(g.stderr, "  note: %s\n", n)
	}
}

func printRemoteUp(g *globalOptions, ro *remoteOptions, so *stackOptions, d *remote.Deployer, st *deployer.Stack, res *remote.UpReport) error {
	stats := d.Stats()
	host := d.Endpoint().Host
	if g.Output == "json" {
		out := map[string]any{
			"project": st.Name(), "host": host, "steps": nonNil(res.Up.Steps),
			"operations":      append(append([]deployer.Op{}, res.Moves...), res.Up.Ops...),
			"elapsed_seconds": res.Up.Elapsed.Seconds(),
			"transfer":        map[string]any{"present": res.Transfer.Present, "tagged": res.Transfer.Tagged, "sent": res.Transfer.Sent, "bytes": res.Transfer.Bytes},
			"connection":      map[string]any{"bytes_sent": stats.BytesSent, "bytes_received": stats.BytesReceived, "streams": stats.Dials},
		}
		if res.Pushed != nil {
			out["pushed"] = res.Pushed.Reference()
		}
		return writeJSON(g.stdout, out)
	}
	verb := "is up"
	if !res.Up.Changed() {
		verb = "is up, nothing changed"
	}
	fmt.Fprintf(g.stdout, "Stack %s %s on %s (%.1fs)\n", st.Name(), verb, host, res.Up.Elapsed.Seconds())
	for _, u := range st.URLs(host) {
		fmt.Fprintf(g.stdout, "  %s: %s\n", u.Service, u.URL)
	}
	fmt.Fprintf(g.stdout, "Status: %s\nStop:   %s (keeps the data)\n", remoteHint(g, ro, so, "status"), remoteHint(g, ro, so, "down"))
	return nil
}

// remoteProject loads the stack only for its project name (-p wins).
func remoteProject(ctx context.Context, g *globalOptions, stack *stackOptions) (string, error) {
	return stack.projectName(ctx, g)
}

func newRemoteDownCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var volumes bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "down --host URL [--volumes]",
		Short:   "Remove the stack's containers and networks on the host (volumes kept unless --volumes)",
		Example: `  invdeploy remote down --host ssh://admin@203.0.113.7`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := remoteProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			d, err := ro.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			res, err := d.Down(cmd.Context(), name, deployer.DownOptions{Volumes: volumes, Timeout: timeout, Lock: true, Edge: deployer.EdgeOptions{Name: edgeName()}})
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, map[string]any{"project": name, "host": d.Endpoint().Host, "containers": res.Containers, "networks": res.Networks, "volumes": res.Volumes})
			}
			kept := ""
			if !volumes {
				kept = " (volumes kept; --volumes removes them)"
			}
			fmt.Fprintf(g.stdout, "Stack %s is down on %s: %s%s\n", name, d.Endpoint().Host, removedSummary(res), kept)
			return nil
		},
	}
	stack.bind(cmd, true)
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "also remove the project's named volumes (deletes its data)")
	durationFlag(cmd, &timeout, "timeout", 0, "stop grace period per container (default: each service's stop_grace_period)")
	return cmd
}

func newRemoteStatusCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	cmd := &cobra.Command{
		Use:     "status --host URL",
		Short:   "Show the stack's containers on the host: state, health, ports, image",
		Example: `  invdeploy remote status --host ssh://admin@203.0.113.7 --output json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := remoteProject(cmd.Context(), g, &stack)
			if err != nil {
				return err
			}
			d, err := ro.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer closeRemote(g, d)
			sts, err := d.Status(cmd.Context(), name)
			if err != nil {
				return err
			}
			if g.Output == "json" {
				return writeJSON(g.stdout, sts)
			}
			if len(sts) == 0 {
				fmt.Fprintf(g.stdout, "No containers in project %s on %s (run %s)\n", name, d.Endpoint().Host, remoteHint(g, ro, &stack, "up"))
				return nil
			}
			return printStatus(g.stdout, sts)
		},
	}
	stack.bind(cmd, true)
	return cmd
}

func newRemoteLogsCommand(g *globalOptions, ro *remoteOptions) *cobra.Command {
	var stack stackOptions
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:     "logs --host URL [SERVICE...] [-f] [--tail N]",
		Short:   "Print the stack's logs from the host",
		Example: `  invdeploy remote logs --host ssh://admin@203.0.113.7 api -f --tail 50`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < -1 {
				return usagef("--tail %d: want a number of lines, or -1 for all", tail)
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
			err = d.Logs(cmd.Context(), name, deployer.LogsOptions{Services: args, Follow: follow, Tail: tail, Out: g.stdout})
			if follow && cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	stack.bind(cmd, false)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "lines from the end of each container's log (-1: all)")
	return cmd
}
