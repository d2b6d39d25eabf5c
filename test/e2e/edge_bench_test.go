package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/testacme"
)

// TestBenchEdge is make bench-edge: a trivial service (rollapp, GET
// /version: the worst case for the edge's share) and the bundled Invoicing
// API (GET of an invoice), each behind its rollout proxy and the engine's
// edge; requests/s, p99 and CPU per request over
// HTTPS through the edge against plain HTTP through the rollout proxy
// alone (its published port), in the same run, 16 keep-alive clients,
// interleaved twice, 10 s each; and the time from the first up to the
// first HTTPS answer (the first certificate, from pebble).
func TestBenchEdge(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_EDGE") == "" {
		t.Skip("make bench-edge runs this (INVDEPLOY_BENCH_EDGE=1)")
	}
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	bed := newEdgeBed(t, e)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(edgeStack), 0o644); err != nil {
		t.Fatal(err)
	}
	proj := project(t, "edgebench")
	e.cleanup(proj)
	port := freePort(t)
	host := "bench.edge-e2e.test"
	e.extra = append(e.extra, "APP_IMAGE=rollapp:e2e-v1", "APP_PORT="+strconv.Itoa(port), "APP_HOST="+host)
	start := time.Now()
	e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
	upDone := time.Since(start)
	c := bed.client(true)
	if !testacme.WaitFor(context.Background(), 60*time.Second, func() bool { _, err := getOK(c, bed.url(host, "/version")); return err == nil }) {
		t.Fatal("no HTTPS answer within 60s")
	}
	fmt.Printf("edge: time to first certificate: %.2f s from the start of the first up (the up itself: %.2f s, edge created and started within it)\n",
		time.Since(start).Seconds(), upDone.Seconds())

	// CPU time of the containers per request: independent of what else
	// the machine runs (the wall-clock rates are not, on a shared one).
	cpu := func(name string) float64 {
		st, err := e.docker.ContainerStatsOneShot(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Body.Close()
		var v struct {
			CPU struct {
				Usage struct {
					Total uint64 `json:"total_usage"`
				} `json:"cpu_usage"`
			} `json:"cpu_stats"`
		}
		if err := json.NewDecoder(st.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return float64(v.CPU.Usage.Total)
	}
	type result struct {
		rps, p99 float64
		cpu      [3]float64 // µs of CPU per request: app, rollout proxy, edge
	}
	measure := func(url string, h2 bool, parts []string) result {
		var before [3]float64
		for i, n := range parts {
			before[i] = cpu(n)
		}
		var mu sync.Mutex
		var lat []time.Duration
		var failed int
		stop := time.Now().Add(10 * time.Second)
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
					_, p, _ := net.SplitHostPort(addr)
					var d net.Dialer
					return d.DialContext(ctx, network, "127.0.0.1:"+p)
				}
				tr := &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: bed.roots}, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: h2}
				if !h2 {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				defer tr.CloseIdleConnections()
				var mine []time.Duration
				bad := 0
				for time.Now().Before(stop) {
					t0 := time.Now()
					if _, err := getOK(cl, url); err != nil {
						bad++
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				failed += bad
				mu.Unlock()
			}()
		}
		wg.Wait()
		if failed > 0 {
			t.Errorf("%s: %d requests failed", url, failed)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p99 := lat[len(lat)*99/100]
		r := result{rps: float64(len(lat)) / 10, p99: float64(p99.Microseconds()) / 1000}
		for i, n := range parts {
			r.cpu[i] = (cpu(n) - before[i]) / 1000 / float64(len(lat))
		}
		return r
	}
	compare := func(label, plain, secure string, parts []string) {
		var plainR, httpsR, h2R result
		for i := 0; i < 2; i++ {
			for _, m := range []struct {
				r   *result
				url string
				h2  bool
			}{{&plainR, plain, false}, {&httpsR, secure, false}, {&h2R, secure, true}} {
				got := measure(m.url, m.h2, parts)
				m.r.rps += got.rps / 2
				m.r.p99 += got.p99 / 2
				for k := range got.cpu {
					m.r.cpu[k] += got.cpu[k] / 2
				}
			}
		}
		fmt.Printf("edge: %s: plain HTTP/1.1 through the rollout proxy: %7.0f req/s, p99 %6.2f ms (16 keep-alive clients, 2 x 10 s interleaved)\n", label, plainR.rps, plainR.p99)
		fmt.Printf("edge: %s: HTTPS HTTP/1.1 through edge + proxy:      %7.0f req/s, p99 %6.2f ms, ratio %.2f (target >= 0.8)\n", label, httpsR.rps, httpsR.p99, httpsR.rps/plainR.rps)
		fmt.Printf("edge: %s: HTTPS HTTP/2 through edge + proxy:        %7.0f req/s, p99 %6.2f ms, ratio %.2f\n", label, h2R.rps, h2R.p99, h2R.rps/plainR.rps)
		for _, m := range []struct {
			name string
			r    result
		}{{"plain HTTP/1.1", plainR}, {"HTTPS HTTP/1.1", httpsR}, {"HTTPS HTTP/2  ", h2R}} {
			fmt.Printf("edge: %s: CPU per request, %s: app %5.0f µs, rollout proxy %5.0f µs, edge %5.0f µs (server side %5.0f µs)\n",
				label, m.name, m.r.cpu[0], m.r.cpu[1], m.r.cpu[2], m.r.cpu[0]+m.r.cpu[1]+m.r.cpu[2])
		}
	}
	compare("rollapp GET /version", "http://127.0.0.1:"+strconv.Itoa(port)+"/version", bed.url(host, "/version"),
		[]string{proj + "-app-1", deployer.ProxyName(proj, "app"), bed.name})

	// The bundled Invoicing API (GET of one invoice from PostgreSQL), made
	// an edge service by a second compose file.
	apiProj := project(t, "edgebenchapi")
	e.cleanup(apiProj)
	apiPort, apiHost := freePort(t), "api.edge-e2e.test"
	override := filepath.Join(t.TempDir(), "https.yaml")
	// Its build context is the repository (the first file's directory is
	// stacks/invoicing); an API image already here is used as it is.
	tag := "edge-bench"
	if imgs, err := e.docker.ImageList(context.Background(), image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", "invoicing-api:*"))}); err == nil {
		for _, im := range imgs {
			for _, rt := range im.RepoTags {
				if _, tg, ok := strings.Cut(rt, ":"); ok && tag == "edge-bench" {
					tag = tg
				}
			}
		}
	}
	if err := os.WriteFile(override, []byte("services:\n  api:\n    build:\n      context: "+localRoot()+"\n    x-invdeploy:\n      health_path: /readyz\n      hosts: [\""+apiHost+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.extra = append(e.extra, "INVOICING_API_PORT="+strconv.Itoa(apiPort), "INVOICING_API_TAG="+tag)
	e.mustRun(localRoot(), "up", "-f", "stacks/invoicing/compose.yaml", "-f", override, "-p", apiProj, "--wait-timeout", "5m")
	body := `{"currency":"EUR","customer":{"name":"Bench"},"line_items":[{"description":"x","quantity":1,"unit_amount":100}]}`
	resp, err := http.Post("http://127.0.0.1:"+strconv.Itoa(apiPort)+"/v1/invoices", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	if !testacme.WaitFor(context.Background(), 60*time.Second, func() bool { _, err := getOK(c, bed.url(apiHost, loc)); return err == nil }) {
		t.Fatal("the API answers no HTTPS within 60s")
	}
	compare("Invoicing API GET invoice", "http://127.0.0.1:"+strconv.Itoa(apiPort)+loc, bed.url(apiHost, loc),
		[]string{apiProj + "-api-1", deployer.ProxyName(apiProj, "api"), bed.name})
	if out, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("edge: load average during the run: %s", out)
	}
}
