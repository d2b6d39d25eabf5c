package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
)

// rollStack is a user's stateless app with a published HTTP port: up rolls
// it behind invdeploy's proxy. The image carries VERSION; MODE breaks a
// release.
const rollStack = `services:
  app:
    image: ${APP_IMAGE}
    environment:
      MODE: ${APP_MODE:-ok}
    ports:
      - "${APP_BIND:-127.0.0.1}:${APP_PORT}:8080"
    healthcheck:
      test: ["CMD", "/rollapp", "check"]
      interval: 1s
      timeout: 2s
      retries: 3
    restart: on-failure:2
    stop_grace_period: 30s
    x-invdeploy:
      health_path: /healthz
`

var (
	rollappOnce sync.Once
	rollappErr  error
)

// rollappImages builds testdata/rollapp (static) and two images of it,
// rollapp:e2e-v1 and rollapp:e2e-v2 (VERSION 1 and 2), FROM scratch.
func rollappImages(t *testing.T, c *client.Client) {
	t.Helper()
	rollappOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rollapp")
		if err != nil {
			rollappErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "rollapp")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/e2e/testdata/rollapp")
		cmd.Dir = localRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			rollappErr = fmt.Errorf("build rollapp: %v\n%s", err, out)
			return
		}
		body, err := os.ReadFile(bin)
		if err != nil {
			rollappErr = err
			return
		}
		for _, v := range []string{"1", "2"} {
			df := "FROM scratch\nCOPY rollapp /rollapp\nENV VERSION=" + v + "\nUSER 65532:65532\nENTRYPOINT [\"/rollapp\"]\n"
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, f := range []struct {
				name string
				mode int64
				b    []byte
			}{{"Dockerfile", 0o644, []byte(df)}, {"rollapp", 0o755, body}} {
				_ = tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.b)), ModTime: time.Unix(0, 0)})
				_, _ = tw.Write(f.b)
			}
			_ = tw.Close()
			resp, err := c.ImageBuild(context.Background(), &buf, build.ImageBuildOptions{Tags: []string{"rollapp:e2e-v" + v}, Remove: true, Version: build.BuilderV1})
			if err != nil {
				rollappErr = err
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(out, []byte(`"error"`)) {
				rollappErr = fmt.Errorf("build rollapp:e2e-v%s: %s", v, out)
				return
			}
		}
	})
	if rollappErr != nil {
		t.Fatal(rollappErr)
	}
}

// loadGen is the clients of a rollout test: half keep their connections
// alive, half open a new one per request; each request must answer 2xx.
type loadGen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

// startLoad runs clients workers; do makes one request with the client it is
// given and returns an error for anything but success.
func startLoad(clients int, do func(c *http.Client) error) *loadGen {
	return load(clients, true, do)
}

// startLoadKeepAlive is startLoad with every client keeping its connection.
func startLoadKeepAlive(clients int, do func(c *http.Client) error) *loadGen {
	return load(clients, false, do)
}

func load(clients int, mixed bool, do func(c *http.Client) error) *loadGen {
	g := &loadGen{stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		tr := &http.Transport{DisableKeepAlives: mixed && i%2 == 1, MaxIdleConnsPerHost: 1}
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-g.stop:
					return
				default:
				}
				if err := do(c); err != nil {
					g.failed.Add(1)
					g.mu.Lock()
					if len(g.failures) < 10 {
						g.failures = append(g.failures, err.Error())
					}
					g.mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				} else {
					g.ok.Add(1)
				}
			}
		}()
	}
	return g
}

// finish stops the clients and returns (succeeded, failed, first failures).
func (g *loadGen) finish() (int64, int64, []string) {
	close(g.stop)
	g.wg.Wait()
	return g.ok.Load(), g.failed.Load(), g.failures
}

func getOK(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// appContainers lists the project's containers by role: the service's own
// and its proxy's.
func appContainers(t *testing.T, c *client.Client, project string) (app []container.Summary, proxy []container.Summary) {
	t.Helper()
	cs, err := c.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project))})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range cs {
		if x.Labels[deployer.LabelRole] == "proxy" {
			proxy = append(proxy, x)
		} else {
			app = append(app, x)
		}
	}
	return app, proxy
}

// invoiceLoad is 16 clients on the bundled API, half reading the newest
// invoices and half creating one; onCreated gets each acknowledged
// create's Location.
func invoiceLoad(base string, onCreated func(loc string)) *loadGen {
	return invoiceClients(16, base, onCreated)
}

// invoiceClients is invoiceLoad with the given number of clients.
func invoiceClients(clients int, base string, onCreated func(loc string)) *loadGen {
	var n atomic.Int64
	return startLoad(clients, func(c *http.Client) error {
		if n.Add(1)%2 == 0 {
			_, err := getOK(c, base+"/v1/invoices?limit=5")
			return err
		}
		body := `{"currency":"EUR","customer":{"name":"Roll Test"},"line_items":[{"description":"x","quantity":1,"unit_amount":100}]}`
		resp, err := c.Post(base+"/v1/invoices", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("create: %s", resp.Status)
		}
		onCreated(resp.Header.Get("Location"))
		return nil
	})
}

// TestRolloutZeroDowntime: a user's app behind the rollout proxy, under 16
// clients (keep-alive and new connections) for the whole test: a new image
// rolls with 0 failed requests while a 5 s request in flight at the switch
// completes on the old version; a release that exits at once and one that
// never turns healthy each exit 4 with 0 failed requests and the old
// version still serving; rollback returns to the previous image, again with
// 0 failed requests.
func TestRolloutZeroDowntime(t *testing.T) {
	t.Parallel()
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	e.extra = append(e.extra, "INVDEPLOY_PROXY_BINARY="+proxyBinary(t))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rollStack), 0o644); err != nil {
		t.Fatal(err)
	}
	proj := project(t, "roll")
	e.cleanup(proj)
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	env := func(image, mode string) {
		e.extra = append(e.extra[:1], "APP_IMAGE="+image, "APP_MODE="+mode, "APP_PORT="+strconv.Itoa(port))
	}

	env("rollapp:e2e-v1", "ok")
	r := e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
	if !strings.Contains(r.stderr, "Container "+deployer.ProxyName(proj, "app")+" created and started") {
		t.Fatalf("first up did not start the rollout proxy:\n%s", r.stderr)
	}
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "1" {
		t.Fatalf("after first up: version %q, %v", v, err)
	}
	_, proxies := appContainers(t, e.docker, proj)
	if len(proxies) != 1 {
		t.Fatalf("want one proxy container, got %d", len(proxies))
	}
	ins, err := e.docker.ContainerInspect(context.Background(), proxies[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if ins.Config.User != "65532:65532" || !ins.HostConfig.ReadonlyRootfs || len(ins.HostConfig.CapDrop) != 1 || ins.HostConfig.CapDrop[0] != "ALL" {
		t.Fatalf("proxy hardening: user %q read-only %v cap_drop %v", ins.Config.User, ins.HostConfig.ReadonlyRootfs, ins.HostConfig.CapDrop)
	}

	load := startLoad(16, func(c *http.Client) error {
		_, err := getOK(c, base+"/")
		return err
	})
	defer func() {
		select {
		case <-load.stop:
		default:
			load.finish()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	// A changed image rolls; a 5 s request in flight at the switch ends
	// on the old version with 200.
	slow := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 60 * time.Second}
		body, err := getOK(c, base+"/slow?d=5s")
		if err != nil {
			body = "error: " + err.Error()
		}
		slow <- body
	}()
	time.Sleep(200 * time.Millisecond)
	env("rollapp:e2e-v2", "ok")
	r = e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
	if !strings.Contains(r.stderr, "Rolling "+proj+"-app-1") || !strings.Contains(r.stderr, "switched to") {
		t.Fatalf("second up did not roll:\n%s", r.stderr)
	}
	if body := <-slow; body != "slow done by version 1" {
		t.Fatalf("the request in flight at the switch: %q", body)
	}
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "2" {
		t.Fatalf("after the roll: version %q, %v", v, err)
	}
	app, _ := appContainers(t, e.docker, proj)
	if len(app) != 1 || strings.TrimPrefix(app[0].Names[0], "/") != proj+"-app-1" {
		t.Fatalf("after the roll: want one container named %s-app-1, got %v", proj, app)
	}
	// The proxy's metrics (on the stack network, reached here by its
	// address) name the release up recorded, for the dashboards' marks.
	pins, err := e.docker.ContainerInspect(context.Background(), deployer.ProxyName(proj, "app"))
	if err != nil {
		t.Fatal(err)
	}
	var metrics string
	for _, n := range pins.NetworkSettings.Networks {
		metrics, err = getOK(http.DefaultClient, "http://"+n.IPAddress+":9180/metrics")
	}
	if err != nil {
		t.Fatalf("proxy metrics: %v", err)
	}
	for _, want := range []string{`invdeploy_release_info{project="` + proj + `",release="2",`, `invdeploy_proxy_switch_events_total{result="switched"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("proxy metrics lack %s:\n%s", want, metrics)
		}
	}

	// A release that exits at once, and one that never turns healthy:
	// exit 4, the old version serves on, nothing of the new one is left.
	for _, mode := range []string{"exit", "unhealthy"} {
		env("rollapp:e2e-v2", mode)
		r = e.run(dir, "up", "-p", proj, "--wait-timeout", "10s")
		if r.code != 4 {
			t.Fatalf("MODE=%s: want exit 4, got %d\n%s", mode, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "rolled back: "+proj+"-app-1 keeps serving") || !strings.Contains(r.stderr, "last 20 log lines") {
			t.Fatalf("MODE=%s: the error does not say the old container serves or lacks logs:\n%s", mode, r.stderr)
		}
		if mode == "exit" && !strings.Contains(r.stderr, "MODE=exit, exiting at once") {
			t.Fatalf("MODE=exit: the new container's log is not shown:\n%s", r.stderr)
		}
		if mode == "unhealthy" && !strings.Contains(r.stderr, "503") {
			t.Fatalf("MODE=unhealthy: the healthcheck output is not shown:\n%s", r.stderr)
		}
		if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "2" {
			t.Fatalf("after the failed MODE=%s release: version %q, %v", mode, v, err)
		}
		if app, _ := appContainers(t, e.docker, proj); len(app) != 1 {
			t.Fatalf("after the failed MODE=%s release: %d app containers left", mode, len(app))
		}
	}

	// Back to release 1's image.
	env("rollapp:e2e-v2", "ok")
	r = e.mustRun(dir, "rollback", "-p", proj, "--wait-timeout", "60s")
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "1" {
		t.Fatalf("after rollback: version %q, %v\n%s", v, err, r.stderr)
	}
	if !strings.Contains(r.stderr, "switched to") {
		t.Fatalf("rollback did not go through the proxy:\n%s", r.stderr)
	}

	ok, failed, failures := load.finish()
	t.Logf("load: %d requests succeeded, %d failed", ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed during the rollouts (of %d); first: %v", failed, ok+failed, failures)
	}
	if ok < 200 {
		t.Fatalf("only %d requests ran: the load generator did not load", ok)
	}
}

// TestRolloutBundledAPIUnderCreates: the bundled stack with the proxy; 16
// clients create invoices and read them back while a new API image rolls
// and then while secret rotate gives the database a new password (the API
// rolled onto it, the database not restarted): 0 failed requests, and
// every acknowledged create is there afterwards.
func TestRolloutBundledAPIUnderCreates(t *testing.T) {
	t.Parallel()
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	e.extra = append(e.extra, "INVDEPLOY_PROXY_BINARY="+proxyBinary(t))
	proj := project(t, "rollapi")
	e.cleanup(proj)
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	e.extra = append(e.extra, "INVOICING_API_PORT="+strconv.Itoa(port))
	root := localRoot()
	e.mustRun(root, "up", "-p", proj, "--wait-timeout", "5m")

	// The same image under another tag: the service's image changed.
	ctx := context.Background()
	app, _ := appContainers(t, e.docker, proj)
	var apiImage string
	for _, c := range app {
		if c.Labels[deployer.LabelService] == "api" {
			apiImage = c.Image
		}
	}
	if apiImage == "" {
		t.Fatal("no api container")
	}
	newTag := "rolltest-" + strconv.Itoa(os.Getpid())
	if err := e.docker.ImageTag(ctx, apiImage, "invoicing-api:"+newTag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.docker.ImageRemove(context.Background(), "invoicing-api:"+newTag, image.RemoveOptions{})
	})

	var mu sync.Mutex
	var acked []string
	load := invoiceLoad(base, func(loc string) {
		mu.Lock()
		acked = append(acked, loc)
		mu.Unlock()
	})
	time.Sleep(time.Second)
	e.extra = append(e.extra, "INVOICING_API_TAG="+newTag)
	r := e.mustRun(root, "up", "-p", proj, "--wait-timeout", "3m")
	if !strings.Contains(r.stderr, "Rolling "+proj+"-api-1") {
		t.Fatalf("the api was not rolled:\n%s", r.stderr)
	}
	time.Sleep(time.Second)
	// A new database password: set in PostgreSQL, the database not
	// restarted, the API rolled onto it, under the same load.
	r = e.mustRun(root, "secret", "rotate", "db_password", "-p", proj, "--wait-timeout", "3m")
	if !strings.Contains(r.stderr, "Rolling "+proj+"-api-1 (secret db_password changed)") || !strings.Contains(r.stderr, "Container "+proj+"-db-1 unchanged") {
		t.Fatalf("rotate did not roll the api and keep the db:\n%s", r.stderr)
	}
	time.Sleep(time.Second)
	ok, failed, failures := load.finish()
	t.Logf("load: %d requests succeeded, %d failed, %d creates acknowledged", ok, failed, len(acked))
	if failed != 0 {
		t.Fatalf("%d requests failed during the roll; first: %v", failed, failures)
	}
	if len(acked) < 20 {
		t.Fatalf("only %d creates: the load generator did not load", len(acked))
	}
	for _, loc := range acked {
		if loc == "" {
			t.Fatal("a 201 without Location")
		}
		if _, err := getOK(http.DefaultClient, base+loc); err != nil {
			t.Fatalf("an acknowledged invoice is missing after the roll: %v", err)
		}
	}
	// The API's published port belongs to the proxy, and nothing else.
	app, proxies := appContainers(t, e.docker, proj)
	if len(proxies) != 1 {
		t.Fatalf("want one proxy, got %d", len(proxies))
	}
	for _, c := range app {
		for _, p := range c.Ports {
			if int(p.PublicPort) == port {
				t.Fatalf("%s publishes the API's port itself", c.Names[0])
			}
		}
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestRolloutExpandContract: the expand/contract rule README states, on the
// bundled stack under 16 clients creating and reading invoices. A release
// with an expanding migration (a new nullable column) rolls: its container
// migrates while the old one still serves (0 failed requests); then a
// rollback runs the old code against the migrated schema, again with 0
// failed requests, and it keeps creating and reading invoices.
func TestRolloutExpandContract(t *testing.T) {
	t.Parallel()
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	proj := project(t, "expand")
	e.cleanup(proj)
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	e.extra = append(e.extra, "INVOICING_API_PORT="+strconv.Itoa(port))
	root := localRoot()
	e.mustRun(root, "up", "-p", proj, "--wait-timeout", "5m")

	// The next release: this checkout plus one expanding migration.
	src := t.TempDir()
	files, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the working tree
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mig := "-- +goose Up\nALTER TABLE invoices ADD COLUMN e2e_expand_note text;\n-- +goose Down\nALTER TABLE invoices DROP COLUMN e2e_expand_note;\n"
	if err := os.WriteFile(filepath.Join(src, "api", "postgres", "migrations", "00099_e2e_expand.sql"), []byte(mig), 0o644); err != nil {
		t.Fatal(err)
	}

	var acked atomic.Int64
	load := invoiceLoad(base, func(string) { acked.Add(1) })
	defer func() {
		select {
		case <-load.stop:
		default:
			load.finish()
		}
	}()
	e.extra = append(e.extra, "INVOICING_API_TAG=e2e-expand-"+strconv.Itoa(os.Getpid()))
	r := e.mustRun(src, "up", "-p", proj, "--build", "--wait-timeout", "10m")
	if !strings.Contains(r.stderr, "Rolling "+proj+"-api-1") {
		t.Fatalf("the migrating release did not roll:\n%s", lastLines(r.stderr, 30))
	}
	t.Cleanup(func() {
		_, _ = e.docker.ImageRemove(context.Background(), "invoicing-api:e2e-expand-"+strconv.Itoa(os.Getpid()), image.RemoveOptions{})
	})
	db := e.containerIDs(proj)[proj+"-db-1"]
	col := func() string {
		out, _ := execIn(t, e.docker, db, "", "psql", "-U", "invoicing", "-d", "invoicing", "-Atc",
			"select count(*) from information_schema.columns where table_name='invoices' and column_name='e2e_expand_note'")
		return strings.TrimSpace(out)
	}
	if got := col(); got != "1" {
		t.Fatalf("the new release did not migrate: column count %q", got)
	}
	ok1, failed1 := load.ok.Load(), load.failed.Load()
	if failed1 != 0 {
		t.Fatalf("%d requests failed while the migrating release rolled; first: %v", failed1, load.failures)
	}

	// Back to the old code, on the expanded schema.
	r = e.mustRun(root, "rollback", "-p", proj, "--wait-timeout", "5m")
	if !strings.Contains(r.stderr, "switched to") {
		t.Fatalf("rollback did not roll:\n%s", lastLines(r.stderr, 30))
	}
	before := acked.Load()
	time.Sleep(2 * time.Second)
	ok, failed, failures := load.finish()
	t.Logf("load: %d ok (%d before the rollback), %d failed, %d creates", ok, ok1, failed, acked.Load())
	if failed != 0 {
		t.Fatalf("%d requests failed; first: %v", failed, failures)
	}
	if acked.Load() <= before {
		t.Fatal("the old code created nothing on the expanded schema after the rollback")
	}
	if got := col(); got != "1" {
		t.Fatalf("the rollback changed the schema: column count %q", got)
	}
}
