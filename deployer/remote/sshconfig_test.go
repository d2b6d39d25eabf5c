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

	// A jump host refuses, naming it; no silent direct connection.
	_, _, err = applySSHConfig("ssh://bastioned", parse("ssh://bastioned"), opts)
	if FailedStep(err) != StepSSHConfig || !strings.Contains(err.Error(), "ProxyJump jump.example.net") {
		t.Errorf("ProxyJump: %v", err)
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
