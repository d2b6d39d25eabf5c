package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testacme"
)

// TestRemoteEdge: the edge on the simulated EC2 host, on the real ports 80
// and 443 of its network namespace, ordering from a pebble on this machine
// whose DNS answers the host's address: remote up prints the edge's
// security-group rules and not the app's port, the service answers over
// HTTPS with a certificate chaining to pebble's root, a roll under 16
// HTTPS clients fails no request, and a restart of the edge orders no
// new certificate.
func TestRemoteEdge(t *testing.T) {
	h := startNamedRemoteHost(t, 0, bedNaming{netns: "edgebed", hostIf: "edh", nsIf: "edg", dir: "edge-ec2-", net: 226, bip: 225})
	c := newLocalEnv(t)
	rollappImages(t, c.docker)
	p := testacme.Start(t, testacme.Options{Address: h.Addr, ListenIP: h.GatewayIP, HTTPPort: 80, TLSPort: 443}, edgePortLo, edgePortHi)
	bed := &edgeBed{httpPort: 80, httpsPort: 443, pebble: p, roots: p.Roots(t), addr: h.Addr}
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(edgeStack), 0o644); err != nil {
		t.Fatal(err)
	}
	host := "ec2.edge-e2e.test"
	env := func(image string) []string {
		return []string{"XDG_CONFIG_HOME=" + t.TempDir(), "INVDEPLOY_PROXY_BINARY=" + proxyBinary(t),
			"APP_IMAGE=" + image, "APP_BIND=0.0.0.0", "APP_PORT=18490", "APP_HOST=" + host,
			"INVDEPLOY_ACME_DIRECTORY=" + p.Directory, "INVDEPLOY_ACME_CA=" + p.CAFile}
	}
	up := func(image string) cliResult {
		t.Helper()
		return remoteRun(t, h, env(image), "up", "-f", file, "-p", "edgeremote", "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32", "--wait-timeout", "90s")
	}
	r := up("rollapp:e2e-v1")
	mustCode(t, r, 0, "first remote up")
	for _, want := range []string{"tcp 80    from 0.0.0.0/0", "tcp 443   from 0.0.0.0/0", "services.app is reached through the HTTPS edge: keep its port 18490 closed", "Container invdeploy-edge created and started"} {
		if !strings.Contains(r.Stderr, want) {
			t.Fatalf("remote up does not say %q:\n%s", want, tail(r.Stderr, 40))
		}
	}
	if strings.Contains(r.Stderr, "tcp 18490") {
		t.Fatalf("remote up asks for the app's port to be open:\n%s", tail(r.Stderr, 40))
	}
	cl := bed.client(true)
	start := time.Now()
	if !testacme.WaitFor(context.Background(), 60*time.Second, func() bool { v, err := getOK(cl, bed.url(host, "/version")); return err == nil && v == "1" }) {
		t.Fatalf("no HTTPS answer from the host's edge:\n%s", h.Docker(t, "logs", "--tail", "30", "invdeploy-edge"))
	}
	t.Logf("first HTTPS answer %s after remote up returned", time.Since(start).Round(time.Millisecond))
	resp, err := cl.Get("http://" + host + "/version")
	if err != nil || resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://"+host+"/version" {
		t.Fatalf("redirect on the host: %v %v", resp, err)
	}
	orders := p.Orders()

	load := startHTTPSLoad(bed, 16, host, "")
	time.Sleep(time.Second)
	r = up("rollapp:e2e-v2")
	mustCode(t, r, 0, "remote roll")
	if !strings.Contains(r.Stderr, "switched to") {
		t.Fatalf("remote up did not roll:\n%s", tail(r.Stderr, 30))
	}
	time.Sleep(500 * time.Millisecond)
	ok, failed, failures := load.finish()
	t.Logf("remote roll through the edge: %d requests, %d failed", ok, failed)
	if failed != 0 || ok < 50 {
		t.Fatalf("remote roll through the edge: %d failed of %d: %v", failed, ok+failed, failures)
	}
	h.Docker(t, "restart", "invdeploy-edge")
	if !testacme.WaitFor(context.Background(), 30*time.Second, func() bool {
		v, err := getOK(bed.client(false), bed.url(host, "/version"))
		return err == nil && v == "2"
	}) {
		t.Fatal("the restarted edge does not serve")
	}
	if got := p.Orders(); got != orders {
		t.Fatalf("edge restart on the host: pebble has %d orders, want still %d", got, orders)
	}
	mustCode(t, remoteRun(t, h, env("rollapp:e2e-v2"), "down", "-p", "edgeremote"), 0, "remote down")
}
