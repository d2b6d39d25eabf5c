package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

// DefaultLocalEngine is the engine images are built in and sent from when
// UpOptions.LocalEngine is empty.
const DefaultLocalEngine = "unix:///var/run/docker.sock"

// Deployer runs the verbs of invdeploy against the engine of another host
// over one connection (one SSH connection for ssh://, mutual TLS for
// tcp://): the deployer.Deployer verbs plus what only a remote host needs
// (remote preflight, moving images, tunnels). Open it, call one verb, Close.
type Deployer struct {
	conn *Conn
	// client is the Docker client over conn, unbounded (tunnels, long calls).
	client *client.Client
	// engine is client with the quick calls bounded by the call timeout.
	engine      Engine
	d           *deployer.Deployer
	out         *deployer.Progress
	callTimeout time.Duration
}

// OpenOptions say how to reach a host's engine.
type OpenOptions struct {
	// Connection holds the SSH and TLS settings.
	Connection Options
	// EngineTimeout bounds each quick engine call (ping, version, inspect,
	// list, tag) on the host and on the local engine; 0 means none.
	EngineTimeout time.Duration
	// Progress receives progress and events; nil: none.
	Progress *deployer.Progress
}

// Open connects to the engine at host (ssh://user@host[:port][/socket] or
// tcp://host:2376). A host that does not parse is an invalid request
// (deployer.ErrInvalid); other failures name the step that failed.
func Open(ctx context.Context, host string, o OpenOptions) (*Deployer, error) {
	conn, err := Connect(ctx, host, o.Connection)
	if err != nil {
		if FailedStep(err) == StepParse {
			return nil, &deployer.InvalidError{Err: err}
		}
		return nil, err
	}
	c, err := deployer.NewClient("", conn.ClientOpts()...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	out := o.Progress
	if out == nil {
		out = deployer.Discard()
	}
	eng := WithCallTimeout(c, o.EngineTimeout, Redact(host))
	return &Deployer{conn: conn, client: c, engine: eng, d: deployer.New(eng, out), out: out, callTimeout: o.EngineTimeout}, nil
}

// Close ends the connection.
func (d *Deployer) Close() error {
	d.client.Close()
	return d.conn.Close()
}

// Ping asks the host's engine whether it answers, within the engine
// timeout: the swarm commands, which drive the client itself, ask it first
// so an engine that accepts and never answers fails them in time.
func (d *Deployer) Ping(ctx context.Context) error {
	_, err := d.engine.Ping(ctx)
	return err
}

// Client is the host's engine client, for the swarm commands, whose
// library (deployer/swarm) drives the Swarm API of each node it is given.
func (d *Deployer) Client() *client.Client { return d.client }

// Endpoint is the host as connected to.
func (d *Deployer) Endpoint() Endpoint { return d.conn.Endpoint }

// Stats reports the traffic to the host's engine so far.
func (d *Deployer) Stats() Stats { return d.conn.Stats() }

// Up deploys st to the host: remote-only preflight, local build of missing
// images (in o.LocalEngine), moving images (streamed over the connection,
// or pushed and pulled by digest), the port probe on the host, then
// deployer.Up with the host's engine (its own preflight, order, health
// gating, secrets through the API, idempotency). A refusal wraps
// deployer.ErrPreflight; the stack on the host is then unchanged. Only the
// image rules (and a port a host process holds, found by running the
// transferred image) refuse after images were added.
func (d *Deployer) Up(ctx context.Context, st *deployer.Stack, o UpOptions) (*UpReport, error) {
	if d.conn.Endpoint.Scheme == "ssh" && o.Preflight.SSHPort == 0 {
		o.Preflight.SSHPort = d.conn.Endpoint.Port
	}
	host := o.LocalEngine
	if host == "" {
		host = DefaultLocalEngine
	}
	local, err := deployer.NewLocalClient(host)
	if err != nil {
		return nil, err
	}
	defer local.Close()
	return d.up(ctx, deployer.New(deployer.WithCallTimeout(local, d.callTimeout, ""), d.out), local, st, o)
}

// Rollback runs an earlier release's images again on the host, as
// deployer.Rollback does, after the checks of HostUp. An empty
// o.Up.RecordCommand records "remote rollback to N".
func (d *Deployer) Rollback(ctx context.Context, st *deployer.Stack, o deployer.RollbackOptions) (*deployer.Release, *deployer.UpResult, error) {
	up, err := d.HostUp(ctx, st, o.Up, "a rollback")
	if err != nil {
		return nil, nil, err
	}
	o.Up = up
	// Name the target in the record ("remote rollback to N"): resolve the
	// default (the release before the current) here.
	if o.To == 0 {
		rels, err := d.d.Releases(ctx, st.Project.Name)
		if err != nil {
			return nil, nil, err
		}
		if len(rels) >= 2 {
			o.To = rels[1].Number
		}
	}
	if o.Up.RecordCommand == "" {
		o.Up.RecordCommand = "remote rollback"
		if o.To > 0 {
			o.Up.RecordCommand += " to " + strconv.Itoa(o.To)
		}
	}
	return d.d.Rollback(ctx, st, o)
}

// HostUp readies o for an up of st on the host outside remote up, with the
// images already there (rollback, restore; verb names it in a note): the
// remote-only checks that need no image (a compose file changed since the
// last remote up must not publish Postgres or the engine's ports to the
// world), o.Remote on and o.ConfigDir this host's mirror of the generated
// secrets. A refusal wraps deployer.ErrPreflight.
func (d *Deployer) HostUp(ctx context.Context, st *deployer.Stack, o deployer.UpOptions, verb string) (deployer.UpOptions, error) {
	po := PreflightOptions{}
	if d.conn.Endpoint.Scheme == "ssh" {
		po.SSHPort = d.conn.Endpoint.Port
	}
	// The security-group rules are remote up's to print. Ports no
	// container holds are not probed for host processes: the probe runs
	// from a transferred image, and these verbs transfer none.
	f, err := Preflight(ctx, d.engine, st, po)
	if err != nil {
		return o, err
	}
	if err := f.Err(); err != nil {
		return o, err
	}
	d.out.Event("Remote engine: %s", f.Engine)
	if len(f.ToProbe) > 0 {
		d.out.Event("note: ports %v not probed for host processes (%s sends no image to run the probe from)", f.ToProbe, verb)
	}
	o.Remote = true
	err = d.targetConfigDir(st.Project.Name, &o.ConfigDir)
	return o, err
}

// Engine is the host's engine with its quick calls bounded by the engine
// timeout, and Local the deployer.Deployer over it: for the verbs that act
// on the host's engine as on a local one (backup, restore).
func (d *Deployer) Engine() Engine { return d.engine }

// Local is the deployer.Deployer of the host's engine (see Engine).
func (d *Deployer) Local() *deployer.Deployer { return d.d }

// Down removes project's containers and networks on the host (volumes
// with o.Volumes), as deployer.Down does.
func (d *Deployer) Down(ctx context.Context, project string, o deployer.DownOptions) (*deployer.DownResult, error) {
	if err := d.targetConfigDir(project, &o.ConfigDir); err != nil {
		return nil, err
	}
	return d.d.Down(ctx, project, o)
}

// targetConfigDir sets *dir, when empty, to where this machine mirrors the
// generated secrets of project on this host (deployer.TargetConfigDir,
// keyed by the host's address and engine socket): the same project on the
// local engine or another host never shares them.
func (d *Deployer) targetConfigDir(project string, dir *string) error {
	if *dir != "" {
		return nil
	}
	e := d.conn.Endpoint
	target := e.Host + "_" + strconv.Itoa(e.Port)
	if e.Scheme == "ssh" && e.Socket != DefaultSocket {
		target += "_" + e.Socket
	}
	var err error
	*dir, err = deployer.TargetConfigDir(project, target)
	return err
}

// Status lists project's containers on the host.
func (d *Deployer) Status(ctx context.Context, project string) ([]deployer.ContainerStatus, error) {
	return d.d.Status(ctx, project)
}

// Logs writes the logs of project's containers on the host.
func (d *Deployer) Logs(ctx context.Context, project string, o deployer.LogsOptions) error {
	return d.d.Logs(ctx, project, o)
}

// Releases lists project's releases recorded on the host, newest first.
func (d *Deployer) Releases(ctx context.Context, project string) ([]deployer.Release, error) {
	return d.d.Releases(ctx, project)
}

// LockStatus names the holder of project's deploy lock on the host.
func (d *Deployer) LockStatus(ctx context.Context, project string) (*deployer.LockHolder, time.Duration, error) {
	return d.d.LockStatus(ctx, project)
}

// BreakLock removes project's deploy lock on the host (a live holder only
// when force; see deployer.BreakLock).
func (d *Deployer) BreakLock(ctx context.Context, project string, force bool) (*deployer.LockHolder, error) {
	return d.d.BreakLock(ctx, project, force)
}

// TunnelOptions control Tunnel.
type TunnelOptions struct {
	// Service is the service to reach.
	Service string
	// Port is its container port; 0 means its published port, else its
	// only exposed one.
	Port int
	// LocalPort is the port on this machine's 127.0.0.1: -1 means the
	// published host port (else Port), 0 any free port.
	LocalPort int
	// Ready is called once the local port listens, before any connection
	// is forwarded.
	Ready func(Tunnel)
	// OnError receives the failure of one forwarded connection (the tunnel
	// goes on).
	OnError func(error)
}

// Tunnel is a listening tunnel.
type Tunnel struct {
	// Local is the address listening on this machine.
	Local net.Addr
	// Target is where it leads on the host.
	Target TunnelTarget
}

// Tunnel forwards a port on this machine's 127.0.0.1 to a service of
// project on the host, over the SSH connection, until ctx ends (nil).
func (d *Deployer) Tunnel(ctx context.Context, project string, o TunnelOptions) error {
	if d.conn.Endpoint.Scheme != "ssh" {
		return deployer.Invalidf("a tunnel needs an ssh:// host (a tcp:// engine connection reaches only the Engine API): use --host ssh://user@%s", d.conn.Endpoint.Host)
	}
	target, err := TargetOf(ctx, d.client, project, o.Service, o.Port)
	if err != nil {
		return err
	}
	lp := o.LocalPort
	if lp == -1 {
		lp = target.HostPort
		if lp == 0 {
			lp = target.Port
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lp)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen on 127.0.0.1:%d: the port is in use on this machine: give --local-port N (or 0 for any free port)", lp)
		}
		return fmt.Errorf("listen on 127.0.0.1:%d: %w", lp, err)
	}
	if o.Ready != nil {
		o.Ready(Tunnel{Local: ln.Addr(), Target: target})
	}
	onErr := o.OnError
	if onErr == nil {
		onErr = func(error) {}
	}
	return Forward(ctx, ln, func(ctx context.Context) (net.Conn, error) {
		return d.conn.DialTCP(ctx, target.Addr)
	}, onErr)
}

// RegistryOptions say where --via registry pushes and how the host pulls.
type RegistryOptions struct {
	// Registry is HOST[:PORT][/NAMESPACE] or a Docker Hub name ("" : Docker
	// Hub under the push login's user).
	Registry string
	// PullRegistry is the same registry as the host reaches it, when its
	// address differs there ("" : Registry).
	PullRegistry string
	// Service is the service whose image is pushed ("" : the one with a
	// build section).
	Service string
	// Credentials are the push login.
	Credentials registry.Credentials
}

// NewRegistryRoute checks that st can go --via registry (it builds one
// image) and returns the route for UpOptions.Registry: the repository, the
// tags (git revision, latest) and the record of the last push. Invalid
// requests wrap deployer.ErrInvalid. It needs no connection, so a caller
// refuses before connecting.
func NewRegistryRoute(st *deployer.Stack, o RegistryOptions) (*RegistryRoute, error) {
	// One repository is pushed and pulled: a second built image would
	// overwrite the first one's tags there.
	images := map[string][]string{}
	for _, name := range st.Project.ServicesWithBuild() {
		ref := deployer.ImageRef(st.Project.Name, st.Project.Services[name])
		images[ref] = append(images[ref], name)
	}
	if len(images) > 1 {
		var list []string
		for ref, names := range images {
			sort.Strings(names)
			list = append(list, ref+" ("+strings.Join(names, ", ")+")")
		}
		sort.Strings(list)
		return nil, deployer.Invalidf("--via registry moves one built image, and this stack builds %d: %s; use --via ssh", len(images), strings.Join(list, ", "))
	}
	app, err := st.AppImage(o.Service)
	if err != nil {
		return nil, err
	}
	repo, err := registry.Repository(o.Registry, o.Credentials.Username, app.Name)
	if err != nil {
		return nil, &deployer.InvalidError{Err: err}
	}
	dir, err := deployer.ConfigDir(st.Project.Name)
	if err != nil {
		return nil, err
	}
	r := &RegistryRoute{Repository: repo, Tags: deployer.PushTags("", app.Revision), Credentials: o.Credentials, RecordDir: dir}
	if o.PullRegistry != "" {
		if r.PullRepository, err = registry.Repository(o.PullRegistry, o.Credentials.Username, app.Name); err != nil {
			return nil, &deployer.InvalidError{Err: fmt.Errorf("--pull-registry: %w", err)}
		}
	}
	return r, nil
}
