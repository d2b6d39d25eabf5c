package swarm

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// Opener opens the connection to one node's engine given its URL
// (ssh://user@host[:port][/socket], as --host takes it); the caller's
// connection options (keys, known hosts, ssh config) say how.
type Opener func(ctx context.Context, url string) (*remote.Deployer, error)

// Cluster is a swarm reached through one manager's connection. The other
// nodes' connections (to send them images, to remove their volumes) are
// opened on first use, one per node, with the manager's login, port and
// socket path, and closed with the cluster.
type Cluster struct {
	manager *remote.Deployer
	open    Opener
	closer  func(*remote.Deployer)
	out     *deployer.Progress

	mu     sync.Mutex
	byAddr map[string]*remote.Deployer
}

// NewCluster is the swarm whose manager is reached through mgr (it must
// answer a ping). open opens the other nodes; closer closes a connection
// (the caller may report its traffic); out shows progress.
func NewCluster(ctx context.Context, mgr *remote.Deployer, open Opener, closer func(*remote.Deployer), out *deployer.Progress) (*Cluster, error) {
	if closer == nil {
		closer = func(d *remote.Deployer) { d.Close() }
	}
	if err := mgr.Ping(ctx); err != nil {
		closer(mgr)
		return nil, err
	}
	return &Cluster{manager: mgr, open: open, closer: closer, out: out, byAddr: map[string]*remote.Deployer{}}, nil
}

// Close closes every connection, the manager's last.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.byAddr {
		c.closer(d)
	}
	c.byAddr = map[string]*remote.Deployer{}
	c.closer(c.manager)
}

func (c *Cluster) client() *client.Client { return c.manager.Client() }

// node is the engine of the node at addr: the manager's own connection
// when addr is the manager, else that node's (opened on first use).
func (c *Cluster) node(ctx context.Context, addr string) (*client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep := c.manager.Endpoint()
	if addr == ep.Host {
		return c.client(), nil
	}
	if ips, err := net.DefaultResolver.LookupHost(ctx, ep.Host); err == nil {
		for _, ip := range ips {
			if ip == addr {
				return c.client(), nil
			}
		}
	}
	if d, ok := c.byAddr[addr]; ok {
		return d.Client(), nil
	}
	u := "ssh://"
	if ep.User != "" {
		u += ep.User + "@"
	}
	u += net.JoinHostPort(addr, strconv.Itoa(ep.Port)) + ep.Socket
	d, err := c.open(ctx, u)
	if err == nil {
		if err = d.Ping(ctx); err != nil {
			c.closer(d)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to swarm node %s: %w", addr, err)
	}
	c.byAddr[addr] = d
	return d.Client(), nil
}

func (c *Cluster) withNodes(o UpOptions) UpOptions {
	o.DialNode = func(ctx context.Context, addr string) (remote.ImageEngine, error) { return c.node(ctx, addr) }
	o.Locker = deployer.New(c.client(), c.out)
	return o
}

// Up is swarm up on this cluster (see Up): images go to the nodes over
// their own connections; the deploy lock is taken on the manager.
func (c *Cluster) Up(ctx context.Context, st *deployer.Stack, o UpOptions) (*UpReport, error) {
	return Up(ctx, c.client(), st, c.withNodes(o), c.out)
}

// DryRun is swarm up --dry-run on this cluster (see DryRun).
func (c *Cluster) DryRun(ctx context.Context, st *deployer.Stack, o UpOptions) (*Plan, error) {
	return DryRun(ctx, c.client(), st, c.withNodes(o))
}

// Down removes the project from the swarm (see Down); volumes are removed
// over each node's connection.
func (c *Cluster) Down(ctx context.Context, project string, o DownOptions) (*DownReport, error) {
	o.DialNode = func(ctx context.Context, addr string) (VolumeEngine, error) { return c.node(ctx, addr) }
	return Down(ctx, c.client(), project, o)
}

// Status is the project's services on the swarm (see Status).
func (c *Cluster) Status(ctx context.Context, project string) ([]ServiceStatus, error) {
	return Status(ctx, c.client(), project)
}

// Rollback returns every service to its previous spec (see Rollback).
func (c *Cluster) Rollback(ctx context.Context, project string, timeout time.Duration) ([]ServiceResult, error) {
	return Rollback(ctx, c.client(), project, timeout, c.out)
}

// Scale sets replicas (see Scale).
func (c *Cluster) Scale(ctx context.Context, project string, replicas map[string]uint64, timeout time.Duration) ([]ServiceResult, error) {
	return Scale(ctx, c.client(), project, replicas, timeout, c.out)
}

// Logs prints the services' logs (see Logs).
func (c *Cluster) Logs(ctx context.Context, project string, o LogsOptions, stdout, stderr io.Writer) error {
	return Logs(ctx, c.client(), project, o, stdout, stderr)
}

// Releases are the project's releases recorded on the swarm, newest first.
func (c *Cluster) Releases(ctx context.Context, project string) ([]deployer.Release, error) {
	return Releases(ctx, c.client(), project)
}

// InitHosts connects to each URL (managers first), then makes them one
// swarm (see Init). Every connection is closed before it returns.
func InitHosts(ctx context.Context, managers, workers []string, open Opener, closer func(*remote.Deployer), o InitOptions, rep remote.Reporter) (*InitReport, error) {
	if closer == nil {
		closer = func(d *remote.Deployer) { d.Close() }
	}
	// Refuse what is wrong in the flags alone before connecting.
	if err := CheckInit(placeholders(managers, workers), o); err != nil {
		return nil, err
	}
	var hosts []Host
	var opened []*remote.Deployer
	defer func() {
		for _, d := range opened {
			closer(d)
		}
	}()
	add := func(urls []string, manager bool) error {
		for _, u := range urls {
			d, err := open(ctx, u)
			if err != nil {
				return err
			}
			opened = append(opened, d)
			if err := d.Ping(ctx); err != nil {
				return err
			}
			addr, err := advertiseAddr(ctx, d.Endpoint().Host)
			if err != nil {
				return err
			}
			hosts = append(hosts, Host{Name: remote.Redact(u), Addr: addr, Manager: manager, Engine: d.Client()})
		}
		return nil
	}
	if err := add(managers, true); err != nil {
		return nil, err
	}
	if err := add(workers, false); err != nil {
		return nil, err
	}
	return Init(ctx, hosts, o, rep)
}

// placeholders are hosts with unique names and no engine, for the checks
// that need only the flags.
func placeholders(managers, workers []string) []Host {
	var hs []Host
	for i, u := range append(append([]string{}, managers...), workers...) {
		hs = append(hs, Host{Name: remote.Redact(u), Addr: fmt.Sprint(i), Manager: i < len(managers)})
	}
	return hs
}

// advertiseAddr is the IP a node advertises: its URL's host, resolved here.
func advertiseAddr(ctx context.Context, host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("resolve %s for the swarm's advertise address: %v", host, err)
	}
	return ips[0].String(), nil
}
