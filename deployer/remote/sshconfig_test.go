package remote

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func writeSSHConfig(t *testing.T, home, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(home, ".ssh", "config")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestApplySSHConfig(t *testing.T) {
	home := t.TempDir()
	writeSSHConfig(t, home, `
Host prod
  HostName 203.0.113.7
  User admin
  Port 2222
  IdentityFile ~/.ssh/ec2.pem
  IdentityFile ~/.ssh/missing.pem

Host *.corp
  HostName %h.example.net
  User deploy

Host bastioned
  ProxyJump jump.example.net

Host chained
  ProxyJump a.example,b.example

Host commanded
  ProxyCommand nc %h %p

Host *
  User fallback
`)
	writeKey(t, filepath.Join(home, ".ssh"), "ec2.pem", nil)
	parse := func(raw string) Endpoint {
		ep, err := ParseHost(raw)
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	var notices bytes.Buffer
	opts := SSHOptions{HomeDir: home, Notices: &notices}
	for _, tc := range []struct {
		raw  string
		want Endpoint
		ids  []string
	}{
		{"ssh://prod", Endpoint{Scheme: "ssh", User: "admin", Host: "203.0.113.7", Port: 2222, Socket: DefaultSocket}, []string{filepath.Join(home, ".ssh", "ec2.pem")}},
		// The URL's user and port win, as ssh's command line does.
		{"ssh://root@prod:22/run/docker.sock", Endpoint{Scheme: "ssh", User: "root", Host: "203.0.113.7", Port: 22, Socket: "/run/docker.sock"}, []string{filepath.Join(home, ".ssh", "ec2.pem")}},
		{"ssh://db.corp", Endpoint{Scheme: "ssh", User: "deploy", Host: "db.corp.example.net", Port: 22, Socket: DefaultSocket}, nil},
		{"ssh://other", Endpoint{Scheme: "ssh", User: "fallback", Host: "other", Port: 22, Socket: DefaultSocket}, nil},
	} {
		ep, o, err := applySSHConfig(tc.raw, parse(tc.raw), opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if ep != tc.want {
			t.Errorf("%s: endpoint %+v, want %+v", tc.raw, ep, tc.want)
		}
		if !reflect.DeepEqual(o.IdentityFiles, tc.ids) {
			t.Errorf("%s: identities %v, want %v", tc.raw, o.IdentityFiles, tc.ids)
		}
	}
	if !strings.Contains(notices.String(), "missing.pem") {
		t.Errorf("a missing IdentityFile is not noticed: %q", notices.String())
	}

	// --identity comes first, config identities after it.
	_, o, err := applySSHConfig("ssh://prod", parse("ssh://prod"), SSHOptions{HomeDir: home, IdentityFiles: []string{"/k/explicit"}})
	if err != nil || !reflect.DeepEqual(o.IdentityFiles, []string{"/k/explicit", filepath.Join(home, ".ssh", "ec2.pem")}) {
		t.Errorf("identities with --identity: %v, %v", o.IdentityFiles, err)
	}

	// One jump host is taken; a chain or a ProxyCommand refuses, naming
	// it: no silent direct connection.
	_, o, err = applySSHConfig("ssh://bastioned", parse("ssh://bastioned"), opts)
	if err != nil || o.ProxyJump != "jump.example.net" {
		t.Errorf("ProxyJump: %q %v", o.ProxyJump, err)
	}
	for alias, want := range map[string]string{"chained": "ProxyJump a.example,b.example", "commanded": "ProxyCommand nc %h %p"} {
		_, _, err = applySSHConfig("ssh://"+alias, parse("ssh://"+alias), opts)
		if FailedStep(err) != StepSSHConfig || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", alias, err)
		}
	}

	// "none" and a missing file read nothing.
	for _, o := range []SSHOptions{{HomeDir: home, ConfigFile: "none"}, {HomeDir: t.TempDir()}} {
		ep, _, err := applySSHConfig("ssh://prod", parse("ssh://prod"), o)
		if err != nil || ep.Host != "prod" || ep.User != "" {
			t.Errorf("config %q: %+v %v", o.ConfigFile, ep, err)
		}
	}

	// A bad port is an error naming the file.
	bad := writeSSHConfig(t, t.TempDir(), "Host x\n  Port 99999\n")
	if _, _, err := applySSHConfig("ssh://x", parse("ssh://x"), SSHOptions{HomeDir: home, ConfigFile: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad port: %v", err)
	}
}

// TestConnectThroughSSHConfigAlias: ssh://alias reaches the in-process SSH
// server through HostName, Port, User and IdentityFile from the config file
// alone (no --identity, no agent).
func TestConnectThroughSSHConfigAlias(t *testing.T) {
	r := newRig(t)
	home := t.TempDir()
	cfg := writeSSHConfig(t, home, "Host engine-box\n  HostName 127.0.0.1\n  Port "+itoa(r.srv.port)+"\n  User deploy\n  IdentityFile "+r.identity+"\n")
	c, err := Connect(context.Background(), "ssh://engine-box"+r.eng.socket, Options{SSH: SSHOptions{
		HomeDir: home, ConfigFile: cfg, KnownHostsFile: r.knownHosts, ConnectTimeout: 5 * time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Endpoint.Host != "127.0.0.1" || c.Endpoint.Port != r.srv.port || c.Endpoint.User != "deploy" {
		t.Fatalf("endpoint %+v", c.Endpoint)
	}
}

// FuzzReadSSHConfig: any config file content gives settings or an error,
// never a panic, and a port it accepts is a real port.
func FuzzReadSSHConfig(f *testing.F) {
	for _, s := range []string{"Host h\n  HostName 1.2.3.4\n  Port 22\n", "Host *\nUser u\nIdentityFile ~/.ssh/k\n", "Host h\n  Port 0\n", "Match host h\n  ProxyJump j\n", "Include /nonexistent\n"} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string) {
		file := filepath.Join(dir, "config")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		hc, err := readSSHConfig(file, "h")
		if err == nil && (hc.Port < 0 || hc.Port > 65535) {
			t.Fatalf("port %d accepted", hc.Port)
		}
	})
}

// TestConnectThroughProxyJump: a ProxyJump in the config makes the jump
// host open the TCP connection to the target (direct-tcpip), as ssh -J does;
// the engine is then reached on the target.
func TestConnectThroughProxyJump(t *testing.T) {
	r := newRig(t) // the target, with the engine socket
	jumpSrv := startSSHServer(t, mustSigner(t, r.identity).PublicKey())
	// known_hosts holds both hosts.
	kh := knownHostsFor(t, t.TempDir(), jumpSrv, jumpSrv.hostKey.PublicKey())
	target, err := os.ReadFile(r.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, kh, "\n"+string(target))
	home := t.TempDir()
	cfg := writeSSHConfig(t, home, "Host engine-box\n  HostName 127.0.0.1\n  Port "+itoa(r.srv.port)+"\n  User deploy\n  ProxyJump bastion\n\n"+
		"Host bastion\n  HostName 127.0.0.1\n  Port "+itoa(jumpSrv.port)+"\n  User jumper\n\nHost *\n  IdentityFile "+r.identity+"\n")
	c, err := Connect(context.Background(), "ssh://engine-box"+r.eng.socket, Options{SSH: SSHOptions{
		HomeDir: home, ConfigFile: cfg, KnownHostsFile: kh, ConnectTimeout: 5 * time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // else a failed check leaves the servers' cleanup waiting on this connection
	if jumpSrv.forwards.Load() != 1 || jumpSrv.channels.Load() != 0 || r.srv.logins.Load() != 1 {
		t.Fatalf("jump forwards %d, jump streamlocal %d, target logins %d; want 1, 0, 1", jumpSrv.forwards.Load(), jumpSrv.channels.Load(), r.srv.logins.Load())
	}
	if r.srv.channels.Load() == 0 {
		t.Fatal("the engine socket was not opened on the target")
	}
}

func mustSigner(t *testing.T, file string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendFile(t *testing.T, file, s string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
