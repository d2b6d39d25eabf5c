package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/deployer"
)

// downtime watches a URL with 16 clients and records the failed requests
// and the longest stretch without a successful answer.
type downtime struct {
	g       *loadGen
	mu      sync.Mutex
	lastOK  time.Time
	longest time.Duration
}

func watch(url string) *downtime {
	d := &downtime{lastOK: time.Now()}
	d.g = startLoad(16, func(c *http.Client) error {
		_, err := getOK(c, url)
		if err == nil {
			d.mu.Lock()
			if gap := time.Since(d.lastOK); gap > d.longest {
				d.longest = gap
			}
			d.lastOK = time.Now()
			d.mu.Unlock()
		}
		return err
	})
	return d
}

func (d *downtime) finish() (ok, failed int64, longest time.Duration) {
	ok, failed, _ = d.g.finish()
	return ok, failed, d.longest
}

// untilVersion is how long after start url/version first answered want.
func untilVersion(base, want string, start time.Time, done <-chan struct{}) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	go func() {
		c := &http.Client{Timeout: 2 * time.Second}
		for {
			if v, err := getOK(c, base+"/version"); err == nil && v == want {
				out <- time.Since(start)
				return
			}
			select {
			case <-done:
				out <- -1
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return out
}

// TestBenchRollout is `make bench-rollout`: under 16 clients, a rollout and
// a rollback through the proxy against a plain recreate (the proxy turned
// off with INVDEPLOY_PROXY_BINARY=none: the e2e binaries have
// invdeploy-proxy beside them, which would otherwise roll the "recreate"
// too), in one run; and the proxy's cost on the bundled API (create and GET
// req/s through the proxy divided by direct to the container). Each mode
// prints what it ran, and up's own report of what it did to the service
// (roll or recreate) is checked, so that the reference cannot silently
// become the thing measured again.
func TestBenchRollout(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_ROLLOUT") == "" {
		t.Skip("benchmark: make bench-rollout")
	}
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	rollappImages(t, e.docker)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rollStack), 0o644); err != nil {
		t.Fatal(err)
	}
	proxyBin := proxyBinary(t)
	type benchMode struct {
		name, proxy string          // INVDEPLOY_PROXY_BINARY
		action      deployer.Action // what up must report for the changed app
	}
	modes := []benchMode{
		{"proxy", proxyBin, deployer.ActionRoll},
		{"recreate", "none", deployer.ActionRecreate},
	}
	if os.Getenv("INVDEPLOY_BENCH_ROLLOUT") == "cost" {
		modes = nil // only the proxy's cost (make bench-rollout BENCH=cost)
	}
	if len(modes) > 0 {
		fmt.Printf("bench-rollout: invdeploy up (rollapp v1 -> v2), then invdeploy rollback (-> v1), under 16 clients (half keep-alive, half a new connection per request) sending GET / without pause; one service publishing one port\n")
	}
	for _, mode := range modes {
		proj := project(t, "benchroll"+mode.name)
		e.cleanup(proj)
		port := freePort(t)
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		set := func(image string) {
			e.extra = []string{"APP_IMAGE=" + image, "APP_PORT=" + strconv.Itoa(port), "INVDEPLOY_PROXY_BINARY=" + mode.proxy}
		}
		fmt.Printf("mode %-8s: INVDEPLOY_PROXY_BINARY=%s, so up must %s the changed app\n", mode.name, mode.proxy, mode.action)
		set("rollapp:e2e-v1")
		e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
		for _, step := range []struct{ name, image, want string }{{"rollout", "rollapp:e2e-v2", "2"}, {"rollback", "", "1"}} {
			w := watch(base + "/")
			time.Sleep(500 * time.Millisecond)
			start := time.Now()
			done := make(chan struct{})
			serving := untilVersion(base, step.want, start, done)
			var r localResult
			if step.image != "" {
				set(step.image)
				r = e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s", "-o", "json")
			} else {
				r = e.mustRun(dir, "rollback", "-p", proj, "--wait-timeout", "60s", "-o", "json")
			}
			wall := time.Since(start)
			time.Sleep(500 * time.Millisecond)
			close(done)
			ok, failed, longest := w.finish()
			s := <-serving
			fmt.Printf("%-8s %-8s: %6d ok, %4d failed requests, longest gap %5.2fs, new version serving after %5.2fs, command %5.2fs (app: %s)\n",
				mode.name, step.name, ok, failed, longest.Seconds(), s.Seconds(), wall.Seconds(), strings.Join(appActions(t, r), ", "))
			if got := appActions(t, r); !slices.Contains(got, string(mode.action)) {
				t.Errorf("mode %s %s: up reports %v for the app, want %s: the benchmark did not run what it names", mode.name, step.name, got, mode.action)
			}
		}
		e.run(dir, "down", "-p", proj)
	}

	// The proxy's cost on the bundled API: one stack behind the proxy, one
	// publishing the API itself (as without the proxy), each on its own
	// PostgreSQL; both reached on 127.0.0.1 through the engine's port
	// publishing, with keep-alive clients (as wrk in bench-api).
	bases := map[string]string{}
	for _, mode := range []string{"proxy", "direct"} {
		proj := project(t, "benchrollapi"+mode)
		e.cleanup(proj)
		port := freePort(t)
		// direct: no proxy at all, not even the one beside the binary.
		e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(port), "INVDEPLOY_PROXY_BINARY=none"}
		if mode == "proxy" {
			e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(port), "INVDEPLOY_PROXY_BINARY=" + proxyBin}
		}
		e.mustRun(localRoot(), "up", "-p", proj, "--wait-timeout", "5m")
		proxies := countRole(statusJSON(t, e.mustRun(localRoot(), "status", "-p", proj, "-o", "json")), "proxy")
		if want := map[string]int{"proxy": 1, "direct": 0}[mode]; proxies != want {
			t.Fatalf("proxy cost, %s: %d proxy containers, want %d", mode, proxies, want)
		}
		fmt.Printf("proxy cost %-6s: the bundled stack (%s), proxy containers: %d, 16 keep-alive clients, 2 x 10 s per mode interleaved\n", mode, e.extra[1], proxies)
		bases[mode] = "http://127.0.0.1:" + strconv.Itoa(port)
	}
	direct := bases["direct"]
	proxied := bases["proxy"]
	body := `{"currency":"EUR","customer":{"name":"Bench"},"line_items":[{"description":"x","quantity":1,"unit_amount":100}]}`
	create := func(base string) func(c *http.Client) error {
		return func(c *http.Client) error {
			resp, err := c.Post(base+"/v1/invoices", "application/json", strings.NewReader(body))
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("create: %s", resp.Status)
			}
			return nil
		}
	}
	locs := map[string]string{}
	for _, base := range bases {
		resp, err := http.Post(base+"/v1/invoices", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		locs[base] = resp.Header.Get("Location")
		resp.Body.Close()
	}
	get := func(base string) func(c *http.Client) error {
		return func(c *http.Client) error { _, err := getOK(c, base+locs[base]); return err }
	}
	rate := func(do func(c *http.Client) error) float64 {
		var n atomic.Int64
		g := startLoadKeepAlive(16, func(c *http.Client) error {
			err := do(c)
			if err == nil {
				n.Add(1)
			}
			return err
		})
		time.Sleep(10 * time.Second)
		_, failed, _ := g.finish()
		if failed > 0 {
			t.Errorf("%d requests failed while measuring", failed)
		}
		return float64(n.Load()) / 10
	}
	for _, m := range []struct {
		name string
		do   func(string) func(*http.Client) error
	}{{"create", create}, {"get", get}} {
		// Interleaved twice: direct, proxied, direct, proxied.
		var d, p float64
		for i := 0; i < 2; i++ {
			d += rate(m.do(direct))
			p += rate(m.do(proxied))
		}
		fmt.Printf("proxy cost %-6s: direct %7.0f req/s, through the proxy %7.0f req/s, ratio %.2f (target >= 0.9)\n", m.name, d/2, p/2, p/d)
	}
}

// appActions are the actions up (or rollback) -o json reports for the app
// service's containers.
func appActions(t *testing.T, r localResult) []string {
	t.Helper()
	var out struct {
		Steps []deployer.Step `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("up -o json: %v\n%s", err, r.stdout)
	}
	var actions []string
	for _, s := range out.Steps {
		if s.Service == "app" {
			actions = append(actions, string(s.Action))
		}
	}
	return actions
}
