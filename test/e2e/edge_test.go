package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/invdeploy/invdeploy/internal/testacme"
)

// The edge tests' host ports (this file's share of 24000-24999).
const edgePortLo, edgePortHi = 24500, 24999

// edgeStack is rollStack served by the edge under HOST.
const edgeStack = rollStack + `      hosts: ["${APP_HOST}"]
`

// edgeBed is an edge of the test's own (INVDEPLOY_EDGE_NAME) on the local
// engine, ordering from a pebble whose DNS answers 127.0.0.1.
type edgeBed struct {
	name                string
	httpPort, httpsPort int
	pebble              *testacme.Pebble
	roots               *x509.CertPool
	// addr is where the edge listens ("": 127.0.0.1, the local engine).
	addr string
}

func newEdgeBed(t *testing.T, e *localEnv) *edgeBed {
	t.Helper()
	b := &edgeBed{name: fmt.Sprintf("edge-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)}
	b.httpPort, b.httpsPort = testacme.FreePort(t, edgePortLo, edgePortHi), testacme.FreePort(t, edgePortLo, edgePortHi)
	b.pebble = testacme.Start(t, testacme.Options{HTTPPort: b.httpPort, TLSPort: b.httpsPort}, edgePortLo, edgePortHi)
	b.roots = b.pebble.Roots(t)
	e.extra = append(e.extra, "INVDEPLOY_PROXY_BINARY="+proxyBinary(t), "INVDEPLOY_EDGE_NAME="+b.name,
		"INVDEPLOY_EDGE_HTTP_PORT="+strconv.Itoa(b.httpPort), "INVDEPLOY_EDGE_HTTPS_PORT="+strconv.Itoa(b.httpsPort),
		"INVDEPLOY_ACME_DIRECTORY="+b.pebble.Directory, "INVDEPLOY_ACME_CA="+b.pebble.CAFile)
	t.Cleanup(func() {
		ctx := context.Background()
		if t.Failed() {
			if logs, err := e.docker.ContainerLogs(ctx, b.name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "40"}); err == nil {
				var out strings.Builder
				_, _ = stdcopy.StdCopy(&out, &out, logs)
				logs.Close()
				t.Logf("edge logs:\n%s", out.String())
			}
		}
		for _, n := range []string{b.name, b.name + "-next"} {
			_ = e.docker.ContainerRemove(ctx, n, container.RemoveOptions{Force: true})
		}
		_ = e.docker.VolumeRemove(ctx, b.name+"-data", true)
	})
	return b
}

// client reaches every host name at the edge's address, trusting pebble's
// root only.
func (b *edgeBed) client(keepAlive bool) *http.Client {
	ip := b.addr
	if ip == "" {
		ip = "127.0.0.1"
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: b.roots}, ForceAttemptHTTP2: true,
			DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (b *edgeBed) url(host, path string) string {
	return "https://" + host + ":" + strconv.Itoa(b.httpsPort) + path
}

// TestEdgeTwoProjects: two projects on one engine, each with its own host
// name, over HTTPS through one edge with certificates that chain to
// pebble's root; HTTP redirects; a roll of one project under 16 HTTPS
// clients fails no request and disturbs not the other; a restart of the
// edge orders no new certificate; an upgrade of the edge (new settings)
// under load fails no request; down takes a project's routes away.
func TestEdgeTwoProjects(t *testing.T) {
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	bed := newEdgeBed(t, e)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(edgeStack), 0o644); err != nil {
		t.Fatal(err)
	}
	projects := []string{project(t, "edge1"), project(t, "edge2")}
	hosts := []string{"one.edge-e2e.test", "two.edge-e2e.test"}
	ports := []int{freePort(t), freePort(t)}
	base := len(e.extra)
	up := func(i int, image string, extra ...string) localResult {
		e.extra = append(e.extra[:base], "APP_IMAGE="+image, "APP_PORT="+strconv.Itoa(ports[i]), "APP_HOST="+hosts[i])
		return e.mustRun(dir, append([]string{"up", "-p", projects[i], "--wait-timeout", "60s"}, extra...)...)
	}
	for i := range projects {
		e.cleanup(projects[i])
	}
	start := time.Now()
	r := up(0, "rollapp:e2e-v1")
	if !strings.Contains(r.stderr, "Container "+bed.name+" created and started") || !strings.Contains(r.stderr, "Edge routes "+hosts[0]) {
		t.Fatalf("first up did not start the edge and route:\n%s", r.stderr)
	}
	up(1, "rollapp:e2e-v1")
	c := bed.client(true)
	for i, h := range hosts {
		var resp *http.Response
		var err error
		ok := testacme.WaitFor(context.Background(), 60*time.Second, func() bool {
			resp, err = c.Get(bed.url(h, "/version"))
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == 200 && string(b) == "1"
		})
		if !ok {
			t.Fatalf("%s over HTTPS: %v %v", h, resp, err)
		}
		if i == 1 {
			t.Logf("time to both certificates (from the first up): %s", time.Since(start).Round(time.Millisecond))
		}
		if resp.TLS == nil || resp.TLS.PeerCertificates[0].DNSNames[0] != h || resp.ProtoMajor != 2 {
			t.Fatalf("%s: TLS %+v proto %s", h, resp.TLS, resp.Proto)
		}
	}
	// Plain HTTP redirects.
	resp, err := c.Get("http://" + hosts[0] + ":" + strconv.Itoa(bed.httpPort) + "/version?x=1")
	if err != nil || resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != bed.url(hosts[0], "/version?x=1") {
		t.Fatalf("redirect: %v %v", resp, err)
	}
	orders := bed.pebble.Orders()
	if orders != 2 {
		t.Fatalf("pebble has %d orders, want 2", orders)
	}
	// The edge's container: hardened, host network, its own volume.
	ins, err := e.docker.ContainerInspect(context.Background(), bed.name)
	if err != nil {
		t.Fatal(err)
	}
	// Its metrics, on the default bridge's gateway (where Prometheus of
	// the monitoring profile finds them as host.docker.internal).
	metricsAddr := ""
	for i, a := range ins.Config.Cmd {
		if a == "--metrics" && i+1 < len(ins.Config.Cmd) {
			metricsAddr = ins.Config.Cmd[i+1]
		}
	}
	if m, err := getOK(http.DefaultClient, "http://"+metricsAddr+"/metrics"); err != nil || !strings.Contains(m, `invdeploy_edge_certificates_obtained_total{host="`+hosts[0]+`",renewal="false"} 1`) {
		t.Fatalf("the edge's metrics at %q: %v\n%.300s", metricsAddr, err, m)
	}
	if !ins.HostConfig.ReadonlyRootfs || ins.HostConfig.NetworkMode != "host" || len(ins.HostConfig.CapAdd) != 1 || strings.TrimPrefix(ins.HostConfig.CapAdd[0], "CAP_") != "NET_BIND_SERVICE" {
		t.Fatalf("edge container: read-only %v network %s cap_add %v", ins.HostConfig.ReadonlyRootfs, ins.HostConfig.NetworkMode, ins.HostConfig.CapAdd)
	}

	// A roll of project one under 16 HTTPS clients; project two watched.
	load := startHTTPSLoad(bed, 16, hosts[0], "")
	other := startHTTPSLoad(bed, 4, hosts[1], "1")
	time.Sleep(time.Second)
	r = up(0, "rollapp:e2e-v2")
	if !strings.Contains(r.stderr, "switched to") {
		t.Fatalf("the second up did not roll:\n%s", r.stderr)
	}
	time.Sleep(500 * time.Millisecond)
	okN, failed, failures := load.finish()
	okO, failedO, failuresO := other.finish()
	t.Logf("roll through the edge: %d requests, %d failed; other project: %d requests, %d failed", okN, failed, okO, failedO)
	if failed != 0 || okN < 100 {
		t.Fatalf("roll through the edge: %d failed of %d: %v", failed, okN+failed, failures)
	}
	if failedO != 0 || okO < 20 {
		t.Fatalf("the other project was disturbed: %d failed of %d: %v", failedO, okO+failedO, failuresO)
	}
	if v, err := getOK(c, bed.url(hosts[0], "/version")); err != nil || v != "2" {
		t.Fatalf("after the roll: %q %v", v, err)
	}

	// A restart of the edge serves the kept certificates: no new order.
	timeout := 10
	if err := e.docker.ContainerRestart(context.Background(), bed.name, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	c2 := bed.client(true)
	if !testacme.WaitFor(context.Background(), 30*time.Second, func() bool { v, err := getOK(c2, bed.url(hosts[1], "/version")); return err == nil && v == "1" }) {
		t.Fatal("the restarted edge does not serve")
	}
	if got := bed.pebble.Orders(); got != orders {
		t.Fatalf("edge restart: pebble has %d orders, want still %d", got, orders)
	}

	// An upgrade of the edge (another setting) under load: the listeners
	// are handed over, no request fails, no certificate is ordered.
	load = startHTTPSLoad(bed, 16, hosts[1], "1")
	time.Sleep(time.Second)
	r = up(1, "rollapp:e2e-v1", "--acme-email", "ops@edge-e2e.test")
	if !strings.Contains(r.stderr, "Container "+bed.name+" upgraded") {
		t.Fatalf("the edge was not upgraded:\n%s", r.stderr)
	}
	time.Sleep(time.Second)
	okN, failed, failures = load.finish()
	t.Logf("edge upgrade under 16 HTTPS clients: %d requests, %d failed", okN, failed)
	if failed != 0 || okN < 100 {
		t.Fatalf("edge upgrade: %d failed of %d: %v", failed, okN+failed, failures)
	}
	if got := bed.pebble.Orders(); got != orders {
		t.Fatalf("edge upgrade: pebble has %d orders, want still %d", got, orders)
	}
	// The next up of project one, without the setting, keeps it.
	r = up(0, "rollapp:e2e-v2")
	if strings.Contains(r.stderr, "upgraded") {
		t.Fatalf("an up without --acme-email reset the edge:\n%s", r.stderr)
	}

	// down takes project one's host away; project two stays.
	e.mustRun(dir, "down", "-p", projects[0])
	resp, err = c2.Get(bed.url(hosts[0], "/version"))
	if err == nil {
		resp.Body.Close()
	}
	if err == nil && resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("after down, %s answers %s", hosts[0], resp.Status)
	}
	if v, err := getOK(c2, bed.url(hosts[1], "/version")); err != nil || v != "1" {
		t.Fatalf("after down of project one, project two: %q %v", v, err)
	}
	vols, err := e.docker.VolumeList(context.Background(), volume.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range vols.Volumes {
		found = found || v.Name == bed.name+"-data"
	}
	if !found {
		t.Fatal("the edge's volume is missing")
	}
}

// TestEdgePreflight: a host name that is not one, and the edge's port held
// by a process, each refuse with exit 3 naming it.
func TestEdgePreflight(t *testing.T) {
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	bed := &edgeBed{name: fmt.Sprintf("edge-e2e-pre-%d", os.Getpid())}
	bed.httpPort, bed.httpsPort = testacme.FreePort(t, edgePortLo, edgePortHi), testacme.FreePort(t, edgePortLo, edgePortHi)
	e.extra = append(e.extra, "INVDEPLOY_PROXY_BINARY="+proxyBinary(t), "INVDEPLOY_EDGE_NAME="+bed.name,
		"INVDEPLOY_EDGE_HTTP_PORT="+strconv.Itoa(bed.httpPort), "INVDEPLOY_EDGE_HTTPS_PORT="+strconv.Itoa(bed.httpsPort))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(edgeStack), 0o644); err != nil {
		t.Fatal(err)
	}
	proj := project(t, "edgepre")
	e.cleanup(proj)
	env := len(e.extra)
	e.extra = append(e.extra[:env], "APP_IMAGE=rollapp:e2e-v1", "APP_PORT="+strconv.Itoa(freePort(t)), "APP_HOST=not_a host")
	r := e.run(dir, "up", "-p", proj)
	if r.code != 3 || !strings.Contains(r.stderr, "not_a host") {
		t.Fatalf("a bad host name: exit %d\n%s", r.code, r.stderr)
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(bed.httpsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e.extra = append(e.extra[:env], "APP_IMAGE=rollapp:e2e-v1", "APP_PORT="+strconv.Itoa(freePort(t)), "APP_HOST=pre.edge-e2e.test")
	r = e.run(dir, "up", "-p", proj)
	if r.code != 3 || !strings.Contains(r.stderr, strconv.Itoa(bed.httpsPort)) || !strings.Contains(r.stderr, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("the edge's port held by this test: exit %d\n%s", r.code, r.stderr)
	}
	if n := e.objects(proj); n != 0 {
		t.Fatalf("a refused up left %d objects", n)
	}
	if _, err := e.docker.ContainerInspect(context.Background(), bed.name); err == nil {
		t.Fatal("a refused up created the edge")
	}
}

// startHTTPSLoad runs clients on host through the edge (half keep their
// connections alive); want, when set, is the body each must answer.
func startHTTPSLoad(b *edgeBed, clients int, host, want string) *loadGen {
	var mine sync.Map // startLoad's client -> one of this bed's
	var n atomic.Int64
	return startLoad(clients, func(c *http.Client) error {
		v, ok := mine.Load(c)
		if !ok {
			v, _ = mine.LoadOrStore(c, b.client(n.Add(1)%2 == 0))
		}
		got, err := getOK(v.(*http.Client), b.url(host, "/version"))
		if err == nil && want != "" && got != want {
			err = fmt.Errorf("version %q, want %q", got, want)
		}
		return err
	})
}
