package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
)

// TLSOptions are the client certificate files for a tcp:// host. Empty
// fields fall back to ca.pem, cert.pem and key.pem in CertPath
// (DOCKER_CERT_PATH).
type TLSOptions struct {
	CACert, Cert, Key string
	CertPath          string
}

// Options say how to reach a remote engine.
type Options struct {
	SSH SSHOptions
	TLS TLSOptions
}

// Conn is an open route to a remote engine: ClientOpts configure a Docker
// client to use it. Close it when the run ends.
type Conn struct {
	// Endpoint is the parsed host URL.
	Endpoint Endpoint
	// Secure says the Engine API traffic is encrypted and authenticated
	// (SSH or mutual TLS), as opposed to plain tcp to loopback.
	Secure bool

	ssh   *SSHConn
	opts  []client.Opt
	wire  *wireCounter // tcp:// only
	close func() error
}

// Connect parses rawURL and opens the route to its engine: for ssh:// the one
// SSH connection of the run; for tcp:// a checked TLS configuration (plain
// tcp is allowed only to a loopback address).
func Connect(ctx context.Context, rawURL string, o Options) (*Conn, error) {
	ep, err := ParseHost(rawURL)
	if err != nil {
		return nil, &ConnectError{Step: StepParse, Host: Redact(rawURL), Err: err}
	}
	switch ep.Scheme {
	case "ssh":
		ep, sshOpts, err := applySSHConfig(rawURL, ep, o.SSH)
		if err != nil {
			return nil, err
		}
		sc, err := DialSSH(ctx, ep, sshOpts)
		if err != nil {
			return nil, err
		}
		return &Conn{
			Endpoint: ep,
			Secure:   true,
			ssh:      sc,
			opts: append([]client.Opt{
				// A fresh transport drops whatever FromEnv set up (TLS from
				// DOCKER_CERT_PATH, proxies): the SSH channel is the transport.
				client.WithHTTPClient(&http.Client{Transport: leanTransport()}),
				client.WithHost("unix://" + ep.Socket),
				client.WithDialContext(sc.DialContext),
			}, leanHeaders()...),
			close: sc.Close,
		}, nil
	default:
		return connectTCP(ep, o.TLS)
	}
}

func connectTCP(ep Endpoint, t TLSOptions) (*Conn, error) {
	fail := func(err error, hint string) error {
		return &ConnectError{Step: StepTLS, Host: ep.Address(), Err: err, Hint: hint}
	}
	pick := func(explicit, name string) string {
		if explicit != "" || t.CertPath == "" {
			return explicit
		}
		return filepath.Join(t.CertPath, name)
	}
	ca, cert, key := pick(t.CACert, "ca.pem"), pick(t.Cert, "cert.pem"), pick(t.Key, "key.pem")
	w := &wireCounter{}
	c := &Conn{Endpoint: ep, wire: w, close: func() error { return nil }}
	c.opts = append([]client.Opt{
		client.WithHTTPClient(&http.Client{Transport: leanTransport()}),
		client.WithHost("tcp://" + ep.Address()),
	}, leanHeaders()...)
	if ca == "" && cert == "" && key == "" {
		if !ep.IsLoopback() {
			// The address as given cannot be used: a usage error (exit 2).
			return nil, fail(&deployer.InvalidError{Err: errors.New("plain tcp:// to a non-loopback address would expose the Engine API (root on that host) unencrypted and unauthenticated; refusing")},
				"use ssh://user@"+ep.Host+", or give --tlscacert, --tlscert and --tlskey (or DOCKER_CERT_PATH) for an engine listening with --tlsverify on 2376")
		}
	} else {
		for flag, f := range map[string]string{"--tlscacert": ca, "--tlscert": cert, "--tlskey": key} {
			if f == "" {
				return nil, fail(deployer.Invalidf("%s is missing", flag), "mutual TLS needs all three: the CA, the client certificate and its key")
			}
			if _, err := os.Stat(f); err != nil {
				return nil, fail(fmt.Errorf("%s: %w", flag, err), "")
			}
		}
		c.opts = append(c.opts, client.WithTLSClientConfig(ca, cert, key))
		c.Secure = true
	}
	d := &net.Dialer{Timeout: 20 * time.Second, KeepAlive: 30 * time.Second}
	c.opts = append(c.opts, client.WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
		w.dials.Add(1)
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &ConnectError{Step: StepTCP, Host: ep.Address(), Err: err}
		}
		return &countingTCP{Conn: conn, w: w}, nil
	}))
	return c, nil
}

// leanTransport is the HTTP transport of a remote engine's client. It asks
// for no gzip: the engine never compresses its answers, and the
// Accept-Encoding header it would add costs 24 bytes of every request on a
// link that may be a slow uplink (a warm remote up makes about 40 requests).
func leanTransport() *http.Transport {
	return &http.Transport{DisableCompression: true}
}

// leanHeaders drop net/http's default User-Agent (Go-http-client/1.1, 31
// bytes per request that tell the engine nothing): a header set to "" is
// not sent. The engine does not need one.
func leanHeaders() []client.Opt {
	return []client.Opt{client.WithHTTPHeaders(map[string]string{"User-Agent": ""})}
}

// ClientOpts configure a Docker client (after any defaults) to reach the
// remote engine through this connection.
func (c *Conn) ClientOpts() []client.Opt { return c.opts }

// Stats reports the traffic to the remote engine so far.
func (c *Conn) Stats() Stats {
	if c.ssh != nil {
		return c.ssh.Stats()
	}
	return Stats{BytesSent: c.wire.sent.Load(), BytesReceived: c.wire.received.Load(), Dials: c.wire.dials.Load()}
}

// Close ends the connection (the SSH connection for ssh://).
func (c *Conn) Close() error { return c.close() }

type wireCounter struct {
	sent, received, dials atomic.Int64
}

type countingTCP struct {
	net.Conn
	w *wireCounter
}

func (c *countingTCP) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.received.Add(int64(n))
	return n, err
}

func (c *countingTCP) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.sent.Add(int64(n))
	return n, err
}
