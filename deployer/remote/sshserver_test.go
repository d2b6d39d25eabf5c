package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testSSHServer is an in-process SSH server on 127.0.0.1 that accepts
// public-key logins and forwards direct-streamlocal channels to unix sockets,
// like sshd with AllowStreamLocalForwarding, and direct-tcpip channels (ssh
// -J through it) to TCP addresses. It counts TCP connections.
type testSSHServer struct {
	addr     string
	port     int
	hostKey  ssh.Signer
	accepted atomic.Int64 // TCP connections accepted
	logins   atomic.Int64 // successful authentications
	channels atomic.Int64 // streamlocal channels opened
	forwards atomic.Int64 // direct-tcpip channels opened
}

func newKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeKey writes priv as an OpenSSH private key file and returns its path.
func writeKey(t testing.TB, dir, name string, passphrase []byte) (string, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase != nil {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, s
}

func startSSHServer(t testing.TB, authorized ...ssh.PublicKey) *testSSHServer {
	t.Helper()
	srv := &testSSHServer{hostKey: newKey(t)}
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, a := range authorized {
				if string(a.Marshal()) == string(key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errUnauthorized
		},
	}
	config.AddHostKey(srv.hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.addr = ln.Addr().String()
	srv.port = ln.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		// Close the server's side of every connection too: a test that
		// failed before closing its client must not hang here.
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			srv.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.serve(c, config)
			}()
		}
	}()
	return srv
}

var errUnauthorized = errors.New("key not authorized")

func (s *testSSHServer) serve(c net.Conn, config *ssh.ServerConfig) {
	defer c.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(c, config)
	if err != nil {
		return
	}
	defer sconn.Close()
	s.logins.Add(1)
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		var network, addr string
		counter := &s.channels
		switch nc.ChannelType() {
		case "direct-streamlocal@openssh.com":
			var msg struct {
				Path      string
				Reserved0 string
				Reserved1 uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
				nc.Reject(ssh.ConnectionFailed, "bad payload")
				continue
			}
			network, addr = "unix", msg.Path
		case "direct-tcpip":
			var msg struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
				nc.Reject(ssh.ConnectionFailed, "bad payload")
				continue
			}
			network, addr, counter = "tcp", net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port))), &s.forwards
		default:
			nc.Reject(ssh.UnknownChannelType, "only streamlocal and tcpip here")
			continue
		}
		target, err := net.Dial(network, addr)
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, "open failed")
			continue
		}
		// Counted before Accept: the client's OpenChannel returns once the
		// channel is accepted, and a test may read the count right then.
		counter.Add(1)
		ch, creqs, err := nc.Accept()
		if err != nil {
			counter.Add(-1)
			target.Close()
			continue
		}
		go ssh.DiscardRequests(creqs)
		go func() {
			io.Copy(ch, target)
			ch.CloseWrite()
			ch.Close()
		}()
		go func() {
			io.Copy(target, ch)
			if cw, ok := target.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		}()
	}
}

// fakeEngine serves /_ping on a unix socket, counting requests.
type fakeEngine struct {
	socket string
	pings  atomic.Int64
	// header is the last ping's request header.
	header atomic.Pointer[http.Header]
}

func startFakeEngine(t testing.TB) *fakeEngine {
	t.Helper()
	dir, err := os.MkdirTemp("", "eng") // short path: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &fakeEngine{socket: filepath.Join(dir, "docker.sock")}
	ln, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			e.pings.Add(1)
			h := r.Header.Clone()
			e.header.Store(&h)
			io.WriteString(w, "OK")
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return e
}

// knownHosts writes a known_hosts file with key for the server and returns its path.
func knownHostsFor(t testing.TB, dir string, srv *testSSHServer, key ssh.PublicKey) string {
	t.Helper()
	path := filepath.Join(dir, "known_hosts")
	line := "[127.0.0.1]:" + itoa(srv.port) + " " + string(ssh.MarshalAuthorizedKey(key))
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func itoa(n int) string { return strconv.Itoa(n) }

func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
