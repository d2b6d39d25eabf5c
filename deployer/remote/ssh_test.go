package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// rig is one SSH server + fake engine + a client identity and known_hosts.
type rig struct {
	srv        *testSSHServer
	eng        *fakeEngine
	dir        string
	identity   string
	knownHosts string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	identity, signer := writeKey(t, dir, "id_test", nil)
	srv := startSSHServer(t, signer.PublicKey())
	return &rig{
		srv:        srv,
		eng:        startFakeEngine(t),
		dir:        dir,
		identity:   identity,
		knownHosts: knownHostsFor(t, dir, srv, srv.hostKey.PublicKey()),
	}
}

func (r *rig) endpoint(t *testing.T) Endpoint {
	t.Helper()
	ep, err := ParseHost("ssh://deploy@" + r.srv.addr + r.eng.socket)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func (r *rig) opts() SSHOptions {
	return SSHOptions{
		KnownHostsFile: r.knownHosts,
		IdentityFiles:  []string{r.identity},
		HomeDir:        r.dir,
		ConnectTimeout: 5 * time.Second,
	}
}

func ping(t *testing.T, c *http.Client) {
	t.Helper()
	resp, err := c.Get("http://remote/_ping")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "OK" {
		t.Fatalf("ping answered %q", b)
	}
}

func TestManyAPICallsUseOneSSHConnection(t *testing.T) {
	r := newRig(t)
	conn, err := DialSSH(context.Background(), r.endpoint(t), r.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// No keep-alive: every request dials anew, the worst case for connection count.
	hc := &http.Client{Transport: &http.Transport{DialContext: conn.DialContext, DisableKeepAlives: true}}
	const calls = 25
	for i := 0; i < calls; i++ {
		ping(t, hc)
	}
	if got := r.eng.pings.Load(); got != calls {
		t.Errorf("engine saw %d pings, want %d", got, calls)
	}
	if got := r.srv.accepted.Load(); got != 1 {
		t.Errorf("SSH server accepted %d TCP connections for %d API calls, want exactly 1", got, calls)
	}
	if got := r.srv.logins.Load(); got != 1 {
		t.Errorf("%d SSH logins, want 1", got)
	}
	st := conn.Stats()
	if st.Dials != calls {
		t.Errorf("Stats.Dials = %d, want %d", st.Dials, calls)
	}
	if st.BytesSent == 0 || st.BytesReceived == 0 {
		t.Errorf("Stats counted no bytes: %+v", st)
	}
}

func TestUnknownHostKeyRefusesWithFingerprint(t *testing.T) {
	r := newRig(t)
	os.WriteFile(r.knownHosts, nil, 0o600)
	_, err := DialSSH(context.Background(), r.endpoint(t), r.opts())
	if FailedStep(err) != StepHostKey {
		t.Fatalf("step = %q, want host key; err = %v", FailedStep(err), err)
	}
	fp := ssh.FingerprintSHA256(r.srv.hostKey.PublicKey())
	if !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "--accept-new-host-key") {
		t.Errorf("error does not show fingerprint %s and the flag: %v", fp, err)
	}
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Changed {
		t.Errorf("want an unknown-key HostKeyError, got %#v", hke)
	}
	if b, _ := os.ReadFile(r.knownHosts); len(b) != 0 {
		t.Errorf("known_hosts was written without --accept-new-host-key: %q", b)
	}
	if r.srv.logins.Load() != 0 {
		t.Error("logged in despite an unknown host key")
	}
}

func TestAcceptNewHostKeyAddsItOnce(t *testing.T) {
	r := newRig(t)
	kh := filepath.Join(r.dir, "sub", "known_hosts") // missing file and directory
	opts := r.opts()
	opts.KnownHostsFile = kh
	opts.AcceptNewHostKey = true
	var notices bytes.Buffer
	opts.Notices = &notices
	conn, err := DialSSH(context.Background(), r.endpoint(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	fp := ssh.FingerprintSHA256(r.srv.hostKey.PublicKey())
	if !strings.Contains(notices.String(), fp) {
		t.Errorf("notice does not show the added fingerprint: %q", notices.String())
	}
	// Now known: connects without the flag, and the file has one line.
	opts.AcceptNewHostKey = false
	conn, err = DialSSH(context.Background(), r.endpoint(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	b, _ := os.ReadFile(kh)
	if n := strings.Count(string(b), "\n"); n != 1 || !strings.HasPrefix(string(b), "[127.0.0.1]:") {
		t.Errorf("known_hosts = %q, want one [127.0.0.1]:port line", b)
	}
}

func TestChangedHostKeyRefusesEvenWithAcceptNew(t *testing.T) {
	r := newRig(t)
	old := newKey(t).PublicKey()
	r.knownHosts = knownHostsFor(t, r.dir, r.srv, old)
	before, _ := os.ReadFile(r.knownHosts)
	opts := r.opts()
	opts.AcceptNewHostKey = true
	_, err := DialSSH(context.Background(), r.endpoint(t), opts)
	var hke *HostKeyError
	if !errors.As(err, &hke) || !hke.Changed {
		t.Fatalf("want a changed-key refusal, got %v", err)
	}
	if !strings.Contains(err.Error(), ssh.FingerprintSHA256(r.srv.hostKey.PublicKey())) ||
		!strings.Contains(err.Error(), ssh.FingerprintSHA256(old)) {
		t.Errorf("error should show both fingerprints: %v", err)
	}
	if after, _ := os.ReadFile(r.knownHosts); !bytes.Equal(before, after) {
		t.Errorf("known_hosts changed on a changed key")
	}
}

func TestWrongKeyFailsAuthentication(t *testing.T) {
	r := newRig(t)
	other, _ := writeKey(t, r.dir, "id_other", nil)
	opts := r.opts()
	opts.IdentityFiles = []string{other}
	_, err := DialSSH(context.Background(), r.endpoint(t), opts)
	if FailedStep(err) != StepAuth {
		t.Fatalf("step = %q, want authentication; err = %v", FailedStep(err), err)
	}
	if !strings.Contains(err.Error(), `"deploy"`) {
		t.Errorf("error should name the user: %v", err)
	}
}

func TestClosedPortFailsTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := newRig(t)
	ep, _ := ParseHost("ssh://deploy@" + addr)
	_, err = DialSSH(context.Background(), ep, r.opts())
	if FailedStep(err) != StepTCP {
		t.Fatalf("step = %q, want TCP; err = %v", FailedStep(err), err)
	}
}

func TestUnresolvableNameFailsResolution(t *testing.T) {
	r := newRig(t)
	opts := r.opts()
	opts.LookupHost = func(context.Context, string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: "ec2.invalid", IsNotFound: true}
	}
	ep, _ := ParseHost("ssh://deploy@ec2.invalid")
	_, err := DialSSH(context.Background(), ep, opts)
	if FailedStep(err) != StepResolve || !strings.Contains(err.Error(), "name resolution") {
		t.Fatalf("step = %q, want name resolution; err = %v", FailedStep(err), err)
	}
}

func TestNotSSHFailsHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
			c.Close()
		}
	}()
	r := newRig(t)
	ep, _ := ParseHost("ssh://deploy@" + ln.Addr().String())
	_, err = DialSSH(context.Background(), ep, r.opts())
	if FailedStep(err) != StepHandshake {
		t.Fatalf("step = %q, want handshake; err = %v", FailedStep(err), err)
	}
}

func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(3 * time.Second)
		}
	}()
	r := newRig(t)
	opts := r.opts()
	opts.ConnectTimeout = 300 * time.Millisecond
	ep, _ := ParseHost("ssh://deploy@" + ln.Addr().String())
	start := time.Now()
	_, err = DialSSH(context.Background(), ep, opts)
	if FailedStep(err) != StepHandshake {
		t.Fatalf("step = %q, want handshake; err = %v", FailedStep(err), err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %s", d)
	}
}

func TestMissingSocketIsNamed(t *testing.T) {
	r := newRig(t)
	ep, _ := ParseHost("ssh://deploy@" + r.srv.addr + "/run/no-such/docker.sock")
	_, err := DialSSH(context.Background(), ep, r.opts())
	if FailedStep(err) != StepSocket || !strings.Contains(err.Error(), "/run/no-such/docker.sock") {
		t.Fatalf("step = %q, want Docker socket naming the path; err = %v", FailedStep(err), err)
	}
}

func TestNoCredentials(t *testing.T) {
	r := newRig(t)
	opts := r.opts()
	opts.IdentityFiles = nil
	opts.HomeDir = t.TempDir() // no ~/.ssh/id_*
	_, err := DialSSH(context.Background(), r.endpoint(t), opts)
	if FailedStep(err) != StepCredential {
		t.Fatalf("step = %q, want credentials; err = %v", FailedStep(err), err)
	}
	if r.srv.accepted.Load() != 0 {
		t.Error("connected although there was no key to offer")
	}
}

func TestDefaultIdentityAndPassphraseNote(t *testing.T) {
	home := t.TempDir()
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	writeKey(t, filepath.Join(home, ".ssh"), "id_ecdsa", []byte("secret-passphrase")) // skipped
	_, signer := writeKey(t, filepath.Join(home, ".ssh"), "id_rsa", nil)              // name only; it is ed25519
	srv := startSSHServer(t, signer.PublicKey())
	eng := startFakeEngine(t)
	kh := knownHostsFor(t, home, srv, srv.hostKey.PublicKey())
	var notices bytes.Buffer
	ep, _ := ParseHost("ssh://deploy@" + srv.addr + eng.socket)
	conn, err := DialSSH(context.Background(), ep, SSHOptions{HomeDir: home, KnownHostsFile: kh, Notices: &notices})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if !strings.Contains(notices.String(), "passphrase-protected") || strings.Contains(notices.String(), "secret-passphrase") {
		t.Errorf("notices = %q", notices.String())
	}
}

func TestAgentAuthentication(t *testing.T) {
	r := newRig(t)
	_, priv, _ := ed25519GenerateKey()
	signer, _ := ssh.NewSignerFromKey(priv)
	srv := startSSHServer(t, signer.PublicKey())
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sockDir, _ := os.MkdirTemp("", "agent")
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go agent.ServeAgent(keyring, c)
		}
	}()
	kh := knownHostsFor(t, t.TempDir(), srv, srv.hostKey.PublicKey())
	ep, _ := ParseHost("ssh://deploy@" + srv.addr + r.eng.socket)
	conn, err := DialSSH(context.Background(), ep, SSHOptions{HomeDir: t.TempDir(), KnownHostsFile: kh, AgentSocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ping(t, &http.Client{Transport: &http.Transport{DialContext: conn.DialContext}})
}

// TestClientSendsNoIdleHeaders: every request of a remote run crosses the
// SSH link, so the client sends neither net/http's default User-Agent nor
// Accept-Encoding (the engine does not compress its answers).
func TestClientSendsNoIdleHeaders(t *testing.T) {
	r := newRig(t)
	o := r.opts()
	o.ConfigFile = "none"
	conn, err := Connect(context.Background(), "ssh://deploy@"+r.srv.addr+r.eng.socket, Options{SSH: o})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := client.NewClientWithOpts(conn.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := r.eng.header.Load()
	if h == nil {
		t.Fatal("the engine saw no ping")
	}
	for _, name := range []string{"User-Agent", "Accept-Encoding"} {
		if v, ok := (*h)[name]; ok {
			t.Errorf("the request carries %s: %q", name, v)
		}
	}
}
