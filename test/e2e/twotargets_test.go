package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestSameProjectOnTwoTargets: the bundled stack under one project name on
// the local engine and on a simulated EC2 host, deployed from one machine
// (one config directory), under 16 clients (8 on each API) creating and
// reading invoices. Their generated database passwords are separate:
// `secret rotate` on the local engine leaves the host's alone, and a
// remote up that rolls the host's API (a consumer of the password) gives it
// the host's own value. Then a second machine (another config directory)
// rotates the local engine's password; this machine's mirror is confirmed
// but stale, and its next up that rolls the API delivers the engine's
// value, not the stale copy. Every command exits 0, both APIs stay ready,
// and no request fails.
func TestSameProjectOnTwoTargets(t *testing.T) {
	t.Parallel()
	h := startNamedRemoteHost(t, 0, bedNaming{netns: "twinbed", hostIf: "twnh", nsIf: "twng", dir: "twin-ec2-", net: 226, bip: 225})
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	proj := project(t, "twin")
	e.cleanup(proj)
	port := freePort(t)
	local, remote := "http://127.0.0.1:"+strconv.Itoa(port), "http://"+h.Addr+":8000"
	e.extra = append(e.extra, "INVDEPLOY_PROXY_BINARY="+proxyBinary(t), "INVOICING_API_PORT="+strconv.Itoa(port))
	root := localRoot()
	remoteUp := func(what string, extra ...string) cliResult {
		t.Helper()
		env := append([]string{"XDG_CONFIG_HOME=" + e.xdg, "INVDEPLOY_PROXY_BINARY=" + proxyBinary(t)}, extra...)
		r := remoteRun(t, h, env, "up", "-p", proj, "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32", "--wait-timeout", "5m")
		mustCode(t, r, 0, what)
		return r
	}
	e.mustRun(root, "up", "-p", proj, "--wait-timeout", "5m")
	remoteUp("remote up of the same project")
	ready := func(base string) {
		t.Helper()
		if _, err := getOK(http.DefaultClient, base+"/readyz"); err != nil {
			t.Fatalf("%s not ready: %v", base, err)
		}
	}
	ready(local)
	ready(remote)

	mine := filepath.Join(e.xdg, "invdeploy", proj, "db_password")
	read := func(path string) []byte {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 32 {
			t.Fatalf("read the generated password %s: %v", path, err)
		}
		return b
	}
	hosts, _ := filepath.Glob(filepath.Join(e.xdg, "invdeploy", proj, "targets", "*", "db_password"))
	if len(hosts) != 1 {
		t.Fatalf("want one per-target mirror for the host, got %v", hosts)
	}
	localPW, hostPW := read(mine), read(hosts[0])
	if bytes.Equal(localPW, hostPW) {
		t.Fatal("the local engine and the host share one generated password")
	}

	localLoad := invoiceClients(8, local, func(string) {})
	remoteLoad := invoiceClients(8, remote, func(string) {})
	time.Sleep(time.Second)

	// Rotate on the local engine: the host's password is not touched.
	r := e.mustRun(root, "secret", "rotate", "db_password", "-p", proj, "--wait-timeout", "3m")
	if !strings.Contains(r.stderr, "Rolling "+proj+"-api-1 (") {
		t.Fatalf("rotate did not roll the local api:\n%s", lastLines(r.stderr, 20))
	}
	rotated := read(mine)
	if bytes.Equal(rotated, localPW) || !bytes.Equal(read(hosts[0]), hostPW) {
		t.Fatal("rotate did not change the local password alone")
	}

	// Roll the host's API (its configuration changed): it gets the host's
	// password, so it stays ready.
	apiOnHost := func() string {
		return strings.TrimSpace(h.Docker(t, "ps", "-q", "--filter", "label="+deployer.LabelProject+"="+proj, "--filter", "label="+deployer.LabelService+"=api"))
	}
	before := apiOnHost()
	remoteUp("remote up that rolls the host's api", "INVOICING_API_CPUS=0.9")
	if after := apiOnHost(); after == before || after == "" {
		t.Fatalf("the host's api was not replaced (%q, then %q)", before, after)
	}
	ready(remote)
	if !bytes.Equal(read(hosts[0]), hostPW) {
		t.Fatal("the host's mirrored password changed")
	}

	// A second machine rotates the local engine's password.
	first := e.xdg
	e.xdg = t.TempDir()
	if r := e.mustRun(root, "up", "-p", proj, "--wait-timeout", "3m"); !strings.Contains(r.stderr+r.stdout, "took the value the engine's store holds") {
		t.Fatalf("the second machine did not take the engine's value:\n%s", lastLines(r.stderr, 20))
	}
	e.mustRun(root, "secret", "rotate", "db_password", "-p", proj, "--wait-timeout", "3m")
	fromElsewhere := read(filepath.Join(e.xdg, "invdeploy", proj, "db_password"))
	e.xdg = first

	// This machine's mirror is confirmed and stale; an up that rolls the
	// API delivers the engine's value.
	e.extra = append(e.extra, "INVOICING_API_CPUS=0.9")
	r = e.mustRun(root, "up", "-p", proj, "--wait-timeout", "3m")
	if !strings.Contains(r.stderr+r.stdout, "took the value the engine's store holds") {
		t.Fatalf("up with a stale mirror did not take the engine's value:\n%s", lastLines(r.stderr, 20))
	}
	if !bytes.Equal(read(mine), fromElsewhere) {
		t.Fatal("the mirror keeps the stale password")
	}
	if !strings.Contains(r.stderr, "Rolling "+proj+"-api-1") {
		t.Fatalf("the local api was not rolled:\n%s", lastLines(r.stderr, 20))
	}
	time.Sleep(time.Second)
	ready(local)
	ready(remote)

	for name, g := range map[string]*loadGen{"local engine": localLoad, "host": remoteLoad} {
		ok, failed, failures := g.finish()
		t.Logf("load on the %s: %d requests succeeded, %d failed", name, ok, failed)
		if failed != 0 {
			t.Errorf("%d requests failed on the %s; first: %v", failed, name, failures)
		}
		if ok < 50 {
			t.Errorf("only %d requests on the %s: the load generator did not load", ok, name)
		}
	}
	e.assertNoSecret(proj, string(fromElsewhere))
}
