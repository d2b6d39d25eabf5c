package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"golang.org/x/crypto/ssh"

	"github.com/invdeploy/invdeploy/deployer"
)

// DialTCP opens a TCP connection from the remote host to addr (host:port as
// the host sees it) as a direct-tcpip channel of the one SSH connection:
// what `ssh -L` does, so a port bound to the host's 127.0.0.1 is reachable
// without opening it to the network.
func (c *SSHConn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return nil, fmt.Errorf("sshd on %s could not connect to %s: %s (is the service running? does sshd_config set AllowTcpForwarding no?)", c.ep.Host, addr, oce.Message)
		}
		return nil, fmt.Errorf("open a tunnel to %s on %s: %w", addr, c.ep.Host, err)
	}
	return conn, nil
}

// DialTCP opens a TCP connection from the remote host to addr over the SSH
// connection; a tcp:// (TLS) connection reaches only the engine, so it
// cannot tunnel.
func (c *Conn) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if c.ssh == nil {
		return nil, errors.New("a tunnel needs an ssh:// host (a tcp:// engine connection reaches only the Engine API): use --host ssh://user@host")
	}
	return c.ssh.DialTCP(ctx, addr)
}

// TunnelTarget is where a tunnel to a service leads, as the remote host sees it.
type TunnelTarget struct {
	// Container is the name of the service's container.
	Container string
	// Port is the service's container port.
	Port int
	// Addr is what the host connects to: 127.0.0.1:<published port> when the
	// port is published on the host, else <container IP>:<port>.
	Addr string
	// HostPort is the published host port (0: not published).
	HostPort int
}

// ContainerLister is the one Engine API call TargetOf needs.
type ContainerLister interface {
	ContainerList(ctx context.Context, o container.ListOptions) ([]container.Summary, error)
}

// TargetOf finds the running container of service in project and the
// address the remote host reaches its port on. port 0 picks the service's
// published port (its first, by container port), else its only exposed one.
func TargetOf(ctx context.Context, eng ContainerLister, project, service string, port int) (TunnelTarget, error) {
	f := filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project), filters.Arg("label", deployer.LabelService+"="+service))
	cs, err := eng.ContainerList(ctx, container.ListOptions{Filters: f})
	if err != nil {
		return TunnelTarget{}, fmt.Errorf("find the %s container of project %s: %w", service, project, err)
	}
	if len(cs) == 0 {
		return TunnelTarget{}, fmt.Errorf("project %s has no running %s container on the host: start it first (e.g. invdeploy remote up --profile monitoring), or check the name with invdeploy remote status", project, service)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	c := cs[0]
	t := TunnelTarget{Container: service, Port: port}
	if len(c.Names) > 0 {
		t.Container = c.Names[0][1:]
	}
	ports := map[int]int{} // container port -> published loopback-reachable host port (0: none)
	var order []int
	for _, p := range c.Ports {
		if p.Type != "" && p.Type != "tcp" {
			continue
		}
		cp := int(p.PrivatePort)
		if _, seen := ports[cp]; !seen {
			order = append(order, cp)
			ports[cp] = 0
		}
		if p.PublicPort != 0 && (p.IP == "" || p.IP == "0.0.0.0" || p.IP == "::" || net.ParseIP(p.IP).IsLoopback()) {
			ports[cp] = int(p.PublicPort)
		}
	}
	sort.Ints(order)
	if t.Port == 0 {
		for _, cp := range order {
			if ports[cp] != 0 {
				t.Port = cp
				break
			}
		}
		if t.Port == 0 && len(order) == 1 {
			t.Port = order[0]
		}
		if t.Port == 0 {
			return t, fmt.Errorf("service %s publishes no port and exposes %d: name one, e.g. %s:8080", service, len(order), service)
		}
	}
	if hp := ports[t.Port]; hp != 0 {
		t.HostPort = hp
		t.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
		return t, nil
	}
	if c.NetworkSettings != nil {
		names := make([]string, 0, len(c.NetworkSettings.Networks))
		for n := range c.NetworkSettings.Networks {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if ip := c.NetworkSettings.Networks[n].IPAddress; ip != "" {
				t.Addr = net.JoinHostPort(ip, strconv.Itoa(t.Port))
				return t, nil
			}
		}
	}
	return t, fmt.Errorf("container %s has no IP address on a network and does not publish port %d: a tunnel cannot reach it", t.Container, t.Port)
}

// Forward accepts connections on ln until ctx ends and joins each to a new
// connection made by dial, copying both ways. A failed dial closes only that
// connection and is reported to onErr; Forward returns when ctx ends (nil)
// or ln fails.
func Forward(ctx context.Context, ln net.Listener, dial func(context.Context) (net.Conn, error), onErr func(error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer local.Close()
			remote, err := dial(ctx)
			if err != nil {
				if onErr != nil {
					onErr(err)
				}
				return
			}
			defer remote.Close()
			done := context.AfterFunc(ctx, func() { local.Close(); remote.Close() })
			defer done()
			join(local, remote)
		}()
	}
}

// join copies a<->b until both directions end, passing on half-closes so
// that a request/response protocol sees the end of each side's stream.
func join(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go half(a, b)
	go half(b, a)
	wg.Wait()
}
