package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHOptions say how to log in to an ssh:// host. The zero value of each
// field means the usual default.
type SSHOptions struct {
	// KnownHostsFile is the known_hosts file; default ~/.ssh/known_hosts.
	KnownHostsFile string
	// AcceptNewHostKey appends the key of a host not yet in KnownHostsFile.
	// A changed key is refused regardless.
	AcceptNewHostKey bool
	// IdentityFiles are private keys to offer first (--identity). When set,
	// the default ~/.ssh/id_* files are not tried.
	IdentityFiles []string
	// AgentSocket is the ssh-agent socket (SSH_AUTH_SOCK); empty: no agent.
	AgentSocket string
	// HomeDir locates ~/.ssh; default the user's home directory.
	HomeDir string
	// ConfigFile is the OpenSSH client config read for the host's HostName,
	// User, Port, IdentityFile and ProxyJump (ssh -F); default
	// ~/.ssh/config, "none" reads none.
	ConfigFile string
	// ProxyJump is a jump host, [user@]host[:port] or a config alias, that
	// opens the TCP connection to the host (ssh -J); one hop only.
	ProxyJump string
	// ConnectTimeout bounds resolution, TCP connect and the SSH handshake;
	// default 20s.
	ConnectTimeout time.Duration
	// KeepAlive is the interval of keepalive requests; default 15s,
	// negative disables them.
	KeepAlive time.Duration
	// Notices receives one-line messages for the user (an added host key,
	// a skipped identity); nil discards them.
	Notices io.Writer
	// LookupHost resolves a host name; nil uses net.DefaultResolver. A test seam.
	LookupHost func(ctx context.Context, host string) ([]string, error)
}

// Stats counts what went over a connection to a remote engine.
type Stats struct {
	// BytesSent and BytesReceived count bytes on the wire (TCP payload,
	// including SSH or TLS framing).
	BytesSent, BytesReceived int64
	// Dials is the number of Engine API connections opened (SSH channels for
	// ssh://); the number of SSH connections is always one.
	Dials int64
}

// SSHConn is the one SSH connection of an invdeploy run to a remote host.
// DialContext opens a channel to the remote engine's socket over it; it is
// safe for concurrent use.
type SSHConn struct {
	ep     Endpoint
	client *ssh.Client
	// jump is the connection to the ProxyJump host, when there is one.
	jump  *ssh.Client
	wire  *countingConn
	dials atomic.Int64

	stop     chan struct{}
	stopOnce sync.Once
}

// DialSSH logs in to ep and checks that the Docker socket can be opened.
// The steps (name resolution, TCP connect, host key, authentication, Docker
// socket) fail with a *ConnectError naming the step. With opts.ProxyJump the
// TCP connection to ep is opened by the jump host, as ssh -J does.
func DialSSH(ctx context.Context, ep Endpoint, opts SSHOptions) (*SSHConn, error) {
	if ep.Scheme != "ssh" {
		return nil, &ConnectError{Step: StepParse, Host: ep.String(), Err: errors.New("not an ssh:// URL")}
	}
	opts = withSSHDefaults(opts)
	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()

	dial := dialDirect(opts)
	var jump *ssh.Client
	if opts.ProxyJump != "" {
		var err error
		if jump, err = dialJump(ctx, opts); err != nil {
			return nil, err
		}
		dial = func(ctx context.Context, ep Endpoint) (net.Conn, error) {
			conn, err := jump.DialContext(ctx, "tcp", ep.Address())
			if err != nil {
				return nil, &ConnectError{Step: StepTCP, Host: ep.Address(), Err: fmt.Errorf("through jump host %s: %w", opts.ProxyJump, err),
					Hint: "check that the jump host can reach the host (its HostName and port) and allows TCP forwarding"}
			}
			return conn, nil
		}
	}
	client, wire, err := login(ctx, ep, opts, dial)
	if err != nil {
		if jump != nil {
			jump.Close()
		}
		return nil, err
	}
	c := &SSHConn{ep: ep, client: client, jump: jump, wire: wire, stop: make(chan struct{})}
	if opts.KeepAlive > 0 {
		go c.keepAlive(opts.KeepAlive)
	}
	// Prove the socket can be opened now, so a wrong path fails here, named.
	probe, err := c.DialContext(ctx, "unix", ep.Socket)
	if err != nil {
		c.Close()
		return nil, err
	}
	probe.Close()
	c.dials.Store(0)
	return c, nil
}

// dialFunc opens the TCP connection to an SSH server.
type dialFunc func(ctx context.Context, ep Endpoint) (net.Conn, error)

// dialDirect resolves ep's host and connects to it from here.
func dialDirect(opts SSHOptions) dialFunc {
	return func(ctx context.Context, ep Endpoint) (net.Conn, error) {
		fail := func(step Step, err error, hint string) error {
			return &ConnectError{Step: step, Host: ep.Address(), Err: err, Hint: hint}
		}
		addrs := []string{ep.Host}
		if net.ParseIP(ep.Host) == nil {
			var err error
			addrs, err = opts.LookupHost(ctx, ep.Host)
			if err == nil && len(addrs) == 0 {
				err = errors.New("no addresses")
			}
			if err != nil {
				return nil, fail(StepResolve, fmt.Errorf("look up %s: %w", ep.Host, err), "check the host name (or use the instance's public IP address)")
			}
		}
		var dialErrs []string
		for _, a := range addrs {
			var d net.Dialer
			raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a, fmt.Sprint(ep.Port)))
			if err == nil {
				return raw, nil
			}
			dialErrs = append(dialErrs, err.Error())
		}
		return nil, fail(StepTCP, errors.New(strings.Join(dialErrs, "; ")),
			fmt.Sprintf("is sshd running on port %d, and does the host's firewall (EC2 security group) allow SSH from this address?", ep.Port))
	}
}

// dialJump logs in to the jump host opts.ProxyJump ([user@]host[:port], or
// an alias of the ssh config), itself reached directly.
func dialJump(ctx context.Context, opts SSHOptions) (*ssh.Client, error) {
	raw := "ssh://" + opts.ProxyJump
	jep, err := ParseHost(raw)
	if err != nil {
		return nil, &ConnectError{Step: StepSSHConfig, Host: opts.ProxyJump, Err: fmt.Errorf("ProxyJump %q: %w", opts.ProxyJump, err)}
	}
	jopts := opts
	jopts.ProxyJump = ""
	jep, jopts, err = applySSHConfig(raw, jep, jopts)
	if err != nil {
		return nil, err
	}
	if jopts.ProxyJump != "" {
		return nil, &ConnectError{Step: StepSSHConfig, Host: jep.String(), Err: fmt.Errorf("jump host %s has a ProxyJump of its own (%s): chains of jump hosts are not supported", opts.ProxyJump, jopts.ProxyJump),
			Hint: "open a tunnel first (ssh -N -L 2222:HOST:22 JUMPHOST) and use --host ssh://USER@127.0.0.1:2222"}
	}
	client, _, err := login(ctx, jep, jopts, dialDirect(jopts))
	if err != nil {
		return nil, fmt.Errorf("jump host %s: %w", opts.ProxyJump, err)
	}
	return client, nil
}

// login connects to ep with dial and logs in: host key against known_hosts,
// then public-key authentication. It returns the client and the counted
// wire under it.
func login(ctx context.Context, ep Endpoint, opts SSHOptions, dial dialFunc) (*ssh.Client, *countingConn, error) {
	fail := func(step Step, err error, hint string) error {
		return &ConnectError{Step: step, Host: ep.Address(), Err: err, Hint: hint}
	}
	user := ep.User
	if user == "" {
		user = currentUser()
	}

	signers, notes, closeAgent, err := credentials(opts)
	defer closeAgent() // signers from the agent are used during the handshake only
	for _, n := range notes {
		fmt.Fprintln(opts.Notices, "ssh: "+n)
	}
	if err != nil {
		return nil, nil, fail(StepCredential, err, "start ssh-agent and ssh-add your key, or pass --identity FILE")
	}

	raw, err := dial(ctx, ep)
	if err != nil {
		return nil, nil, err
	}
	wire := &countingConn{Conn: raw}

	keys := newHostKeys(opts.KnownHostsFile, opts.AcceptNewHostKey, opts.Notices)
	config := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   keys.check,
		HostKeyAlgorithms: keys.algorithms(ep.Address()),
		Timeout:           opts.ConnectTimeout,
	}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	// Close the socket if ctx ends mid-handshake: NewClientConn does not watch ctx.
	handshakeDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			raw.Close()
		case <-handshakeDone:
		}
	}()
	sconn, chans, reqs, err := ssh.NewClientConn(wire, ep.Address(), config)
	close(handshakeDone)
	if err != nil {
		raw.Close()
		keys.mu.Lock()
		refused := keys.refused
		keys.mu.Unlock()
		if refused != nil {
			return nil, nil, fail(StepHostKey, refused, "")
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, nil, fail(StepAuth, fmt.Errorf("user %q: the server accepted none of %d key(s) offered", user, len(signers)),
				fmt.Sprintf("add your public key to ~%s/.ssh/authorized_keys on the host, or pass the right key with --identity", user))
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (after %s)", err, opts.ConnectTimeout)
		}
		return nil, nil, fail(StepHandshake, err, "is it an SSH server on that port?")
	}
	raw.SetDeadline(time.Time{})
	return ssh.NewClient(sconn, chans, reqs), wire, nil
}

func withSSHDefaults(o SSHOptions) SSHOptions {
	if o.HomeDir == "" {
		o.HomeDir, _ = os.UserHomeDir()
	}
	if o.KnownHostsFile == "" {
		o.KnownHostsFile = filepath.Join(o.HomeDir, ".ssh", "known_hosts")
	}
	if o.ConfigFile == "" && o.HomeDir != "" {
		o.ConfigFile = filepath.Join(o.HomeDir, ".ssh", "config")
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 20 * time.Second
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.Notices == nil {
		o.Notices = io.Discard
	}
	if o.LookupHost == nil {
		o.LookupHost = net.DefaultResolver.LookupHost
	}
	return o
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// DialContext opens a new stream to the remote engine's socket over the one
// SSH connection. network and addr are ignored: the socket is the one in the
// host URL. It fits client.WithDialContext.
func (c *SSHConn) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	c.dials.Add(1)
	conn, err := c.client.DialContext(ctx, "unix", c.ep.Socket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		var oce *ssh.OpenChannelError
		hint := "check that Docker runs on the host, that the socket path is right (ssh://user@host/path/to/docker.sock), that the user may open it (docker group), and that sshd_config does not set AllowStreamLocalForwarding or AllowTcpForwarding to no (either refuses the stream to the socket)"
		if errors.As(err, &oce) {
			err = fmt.Errorf("sshd could not open %s: %s", c.ep.Socket, oce.Message)
			if oce.Message == "" {
				err = fmt.Errorf("sshd could not open %s: %s", c.ep.Socket, oce.Reason)
			}
		}
		return nil, &ConnectError{Step: StepSocket, Host: c.ep.Address(), Err: err, Hint: hint}
	}
	return conn, nil
}

// Stats reports the bytes on the SSH connection and the streams opened.
func (c *SSHConn) Stats() Stats {
	return Stats{BytesSent: c.wire.sent.Load(), BytesReceived: c.wire.received.Load(), Dials: c.dials.Load()}
}

// Close ends the SSH connection and every stream on it.
func (c *SSHConn) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	err := c.client.Close()
	if c.jump != nil {
		c.jump.Close()
	}
	return err
}

func (c *SSHConn) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if _, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				return
			}
		}
	}
}

// countingConn counts the bytes read and written on a connection.
type countingConn struct {
	net.Conn
	sent, received atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}
