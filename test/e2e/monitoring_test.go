package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/deployer"
)

// portInRange returns a free 127.0.0.1 port in [lo, hi], so that tests on the
// shared engine stay in the range assigned to them.
func portInRange(t *testing.T, lo, hi int, taken ...int) int {
	t.Helper()
next:
	for p := lo; p <= hi; p++ {
		for _, q := range taken {
			if p == q {
				continue next
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// promQuery runs an instant query against Prometheus' HTTP API; it returns
// the number of series in the result and the error Prometheus reported.
func promQuery(base, expr string) (int, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("decode answer: %w", err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	var series []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return 1, nil // a scalar or a string: data
	}
	return len(series), nil
}

// exprsIn collects every "expr" string of a JSON document (a Grafana
// dashboard's panels, nested rows included), so a new panel is checked
// without a new test. Grafana's interval variables are expanded as Grafana
// would before Prometheus sees the query. at names where v is.
func exprsIn(v any, at string, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["title"].(string); ok {
			at = fmt.Sprintf("panel %q", t)
		}
		if e, ok := x["expr"].(string); ok && e != "" {
			out[fmt.Sprintf("%s %v", at, x["refId"])] = grafanaVars.Replace(e)
		}
		for _, child := range x {
			exprsIn(child, at, out)
		}
	case []any:
		for _, child := range x {
			exprsIn(child, at, out)
		}
	}
}

// TestMonitoringProfile: a plain up of the bundled stack starts no monitoring
// service and creates no monitoring volume; up --profile monitoring adds
// Prometheus and postgres_exporter, bound to 127.0.0.1 and hardened; after
// some traffic (creates, reads, 4xx) Prometheus has the api and postgres
// targets up, every alert rule evaluates without error, and every query of
// the Grafana dashboard runs and returns data.
func TestMonitoringProfile(t *testing.T) {
	t.Parallel() // its own project and port range; nothing shared but the engine
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm", "prom/prometheus:v2.42.0", "prometheuscommunity/postgres-exporter:v0.11.1", "debian:bookworm")
	proj := fmt.Sprintf("mon%d", time.Now().UnixNano()%1000000)
	apiPort := portInRange(t, 18800, 18899)
	promPort := portInRange(t, 18800, 18899, apiPort)
	// No proxy from up: the test runs its own in front of the API, to name
	// releases and switch by hand (INVDEPLOY_PROXY_BINARY=none).
	e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(apiPort), "INVOICING_PROMETHEUS_PORT=" + strconv.Itoa(promPort), "INVDEPLOY_PROXY_BINARY=none"}
	// One api image for both ups, even if a commit lands in between (the
	// tag is otherwise the checkout's commit at each up).
	if _, set := os.LookupEnv("INVOICING_API_TAG"); !set {
		if rev, err := exec.Command("git", "-C", localRoot(), "rev-parse", "--short=12", "HEAD").Output(); err == nil {
			e.extra = append(e.extra, "INVOICING_API_TAG="+strings.TrimSpace(string(rev)))
		}
	}
	e.cleanup(proj)
	root := localRoot()

	e.mustRun(root, "up", "-p", proj)
	if got := e.services(proj); got != "api db" {
		t.Fatalf("plain up started %q, want only api db", got)
	}
	if n := e.objects(proj) - e.deliveryVolumes(proj); n != 2+1+1 { // api, db, the network, db-data
		t.Fatalf("plain up created %d containers/networks/volumes (besides secret delivery), want 4 (no monitoring volume)", n)
	}
	if _, err := os.Stat(filepath.Join(e.xdg, "invdeploy", proj, "grafana_admin")); err == nil {
		t.Fatal("plain up generated Grafana's admin password; only the dashboards profile needs it")
	}

	start := time.Now()
	r := e.mustRun(root, "up", "-p", proj, "--profile", "monitoring")
	t.Logf("up --profile monitoring: %s", time.Since(start).Round(time.Second))
	if got := e.services(proj); got != "api db postgres-exporter prometheus" {
		t.Fatalf("up --profile monitoring: services %q\n%s", got, r.stdout)
	}
	ctx := context.Background()
	ids := e.containerIDs(proj)
	for _, svc := range []string{"prometheus", "postgres-exporter"} {
		ins, err := e.docker.ContainerInspect(ctx, ids[proj+"-"+svc+"-1"])
		if err != nil {
			t.Fatal(err)
		}
		h := ins.HostConfig
		if !h.ReadonlyRootfs || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" || ins.Config.User == "" || strings.HasPrefix(ins.Config.User, "0") || h.Resources.Memory == 0 || h.Resources.NanoCPUs == 0 {
			t.Errorf("%s not hardened: readonly %v cap_drop %v user %q memory %d cpus %d", svc, h.ReadonlyRootfs, h.CapDrop, ins.Config.User, h.Resources.Memory, h.Resources.NanoCPUs)
		}
		for port, bs := range h.PortBindings {
			for _, b := range bs {
				if b.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %s on %q, want 127.0.0.1 only", svc, port, b.HostIP)
				}
			}
		}
	}

	api := "http://127.0.0.1:" + strconv.Itoa(apiPort)
	front := api // the proxy's URL once it runs
	var paid, voided int
	// traffic creates, reads and finalizes invoices, pays two and voids
	// one, sends some 4xx, half of it through the proxy once it runs.
	traffic := func() {
		for i := 0; i < 5; i++ {
			base := api
			if i%2 == 1 {
				base = front
			}
			code, hdr, body := httpDo(t, "POST", base+"/v1/invoices", `{"currency":"EUR","customer":{"name":"Grace Hopper"},"line_items":[{"description":"Talk","quantity":1,"unit_amount":5000}]}`)
			if code != http.StatusCreated {
				t.Fatalf("create invoice through %s: %d %s", base, code, body)
			}
			inv := base + hdr.Get("Location")
			httpDo(t, "GET", inv, "")
			if code, _, body := httpDo(t, "POST", inv+"/finalize", ""); code != http.StatusOK {
				t.Fatalf("finalize: %d %s", code, body)
			}
			switch i {
			case 0, 1:
				if code, _, body := httpDo(t, "POST", inv+"/payments", `{"amount":5000}`); code != http.StatusOK || !strings.Contains(string(body), `"status":"paid"`) {
					t.Fatalf("pay: %d %s", code, body)
				}
				paid++
			case 2:
				if code, _, body := httpDo(t, "POST", inv+"/void", ""); code != http.StatusOK || !strings.Contains(string(body), `"status":"void"`) {
					t.Fatalf("void: %d %s", code, body)
				}
				voided++
			}
		}
		httpDo(t, "GET", api+"/v1/invoices?limit=5", "")
		httpDo(t, "GET", front+"/v1/invoices?limit=5", "")
		httpDo(t, "GET", api+"/v1/invoices/inv_doesnotexist", "")   // 404
		httpDo(t, "POST", front+"/v1/invoices", `{"currency":`)     // 400
		httpDo(t, "POST", api+"/v1/invoices", `{"currency":"EUR"}`) // 422
	}
	traffic()

	prom := "http://127.0.0.1:" + strconv.Itoa(promPort)
	deadline := time.Now().Add(2 * time.Minute)
	waitUp := func(targets ...string) {
		for _, target := range targets {
			for {
				n, err := promQuery(prom, target)
				if err == nil && n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Prometheus: %s not true within 2m (%d series, %v)", target, n, err)
				}
				time.Sleep(2 * time.Second)
			}
		}
	}
	waitUp(`up{job="api"} == 1`, `up{job="postgres"} == 1`, `pg_up == 1`)
	// No proxy yet: the DNS-discovered job has no target, so there is no
	// down series to show or alert on.
	if n, err := promQuery(prom, `up{job="proxy"}`); err != nil || n != 0 {
		t.Fatalf(`up{job="proxy"} without a proxy: %d series, %v; want none`, n, err)
	}

	// A rollout proxy on the stack's network in front of the API, as up
	// runs one for a rolled service, named release 1 by the same exec.
	proxyPort := portInRange(t, 18800, 18899, apiPort, promPort)
	px := startMonProxy(t, e, proj, proxyPort)
	rev1, rev2 := "monrev1"+strconv.Itoa(apiPort), "monrev2"+strconv.Itoa(apiPort)
	if code, out := px.deploy(t, "--target", "api:8000", "--health-path", "/readyz", "--health-interval", "100ms",
		"--project", proj, "--service", "api", "--release", "1", "--revision", rev1); code != 0 {
		t.Fatalf("proxy deploy of release 1: exit %d: %s", code, out)
	}
	front = px.URL
	traffic()
	waitUp(`up{job="proxy"} == 1`)
	t.Logf("targets api, postgres and proxy (found by DNS) up after %s", time.Since(start).Round(time.Second))

	raw, err := os.ReadFile(filepath.Join(root, "stacks/invoicing/grafana/dashboards/invoicing.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels      []any `json:"panels"`
		Annotations struct {
			List []map[string]any `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	queries := map[string]string{}
	exprsIn(dash.Panels, "dashboard", queries)
	annotation := map[string]string{} // by name
	for _, a := range dash.Annotations.List {
		if e, _ := a["expr"].(string); e != "" {
			annotation[fmt.Sprint(a["name"])] = grafanaVars.Replace(e)
		}
	}
	restartMark, releaseMark, switchMark := annotation["API (re)started: release or restart"], annotation["Release"], annotation["Rollout proxy switch"]
	if restartMark == "" || releaseMark == "" || switchMark == "" || len(annotation) != 3 {
		t.Fatalf("dashboard annotations %v: want the API restart, release and proxy switch marks (a new one needs a check here)", annotation)
	}
	if len(queries) < 10 {
		t.Fatalf("found %d queries in the dashboard, want its dozen or so", len(queries))
	}

	// Releases on the time axis: release 1 is marked when Prometheus first
	// sees it.
	isRev := func(rev string) func(promSample) bool {
		return func(s promSample) bool {
			return s.Metric["revision"] == rev && s.Metric["project"] == proj && s.Metric["service"] == "api"
		}
	}
	m := waitSeries(t, prom, "release 1 mark", releaseMark, 50*time.Second, isRev(rev1))
	if m.Metric["release"] != "1" {
		t.Fatalf("release mark %v, want release 1", m.Metric)
	}
	// Release 2 switches to the same API by its container name (a new
	// backend address, as a rollout's new container has); a refused deploy
	// leaves it serving and is marked as unhealthy.
	if code, out := px.deploy(t, "--target", proj+"-api-1:8000", "--health-path", "/readyz", "--health-interval", "100ms",
		"--project", proj, "--service", "api", "--release", "2", "--revision", rev2); code != 0 {
		t.Fatalf("proxy deploy of release 2: exit %d: %s", code, out)
	}
	if code, out := px.deploy(t, "--target", "127.0.0.1:1", "--health-timeout", "1s", "--release", "3"); code == 0 {
		t.Fatalf("proxy deploy to a dead target succeeded: %s", out)
	}
	traffic()
	m = waitSeries(t, prom, "release 2 mark", releaseMark, 50*time.Second, isRev(rev2))
	if m.Metric["release"] != "2" {
		t.Fatalf("release mark %v, want release 2", m.Metric)
	}
	// (Only this test's proxy: a proxy that up runs names other revisions.)
	mine := fmt.Sprintf(`invdeploy_release_info{project=%q, revision=~"monrev.*"}`, proj)
	if ss, err := promSamples(prom, mine); err != nil || len(ss) != 1 || ss[0].Metric["release"] != "2" {
		t.Fatalf("%s after release 2 and a refused 3: %v %v, want release 2 alone", mine, ss, err)
	}
	for _, result := range []string{"switched", "unhealthy"} {
		waitSeries(t, prom, result+" switch mark", switchMark, 50*time.Second, func(s promSample) bool { return s.Metric["result"] == result && s.Value > 0 })
	}
	t.Logf("releases 1 and 2 and the switch events are marked")

	// Every dashboard query returns data once rates have two samples.
	pending := queries
	for len(pending) > 0 {
		traffic()
		failed := map[string]string{}
		var why []string
		for where, q := range pending {
			n, err := promQuery(prom, q)
			if err != nil && strings.Contains(err.Error(), "parse error") {
				t.Errorf("%s: %q does not parse: %v", where, q, err)
				continue
			}
			if err != nil || n == 0 {
				failed[where] = q
				why = append(why, fmt.Sprintf("%s: %q: %d series, %v", where, q, n, err))
			}
		}
		pending = failed
		if len(pending) > 0 && time.Now().After(deadline) {
			sort.Strings(why)
			t.Fatalf("dashboard queries without data after 2m:\n%s", strings.Join(why, "\n"))
		}
		if len(pending) > 0 {
			time.Sleep(5 * time.Second)
		}
	}
	t.Logf("%d dashboard queries return data", len(queries))

	// The business panels show the payments and voids the traffic made (a
	// query that returns zeros would pass the walk above).
	for _, c := range []struct{ where, what string }{
		{`panel "Invoices per minute: created, finalized, paid, voided, uncollectible" C`, "paid"},
		{`panel "Invoices per minute: created, finalized, paid, voided, uncollectible" D`, "voided"},
		{`panel "Paid amount by currency (minor units per minute)" A`, "paid EUR"},
		{`panel "Proxy: requests by backend and status class" A`, "requests through the proxy"},
	} {
		q, ok := queries[c.where]
		if !ok {
			t.Fatalf("the dashboard has no %s", c.where)
		}
		waitSeries(t, prom, c.what+" ("+c.where+")", q, 30*time.Second, func(s promSample) bool {
			return s.Value > 0 && (c.what != "paid EUR" || s.Metric["currency"] == "EUR")
		})
	}
	for metric, want := range map[string]int{"invoicing_invoices_paid_total": paid, "invoicing_invoices_voided_total": voided} {
		waitSeries(t, prom, metric, "sum("+metric+")", 30*time.Second, func(s promSample) bool { return s.Value == float64(want) })
	}
	t.Logf("paid %d and voided %d invoices show on the business panels", paid, voided)

	// Every alert rule is loaded and evaluates without error; nothing fires
	// on a healthy stack.
	resp, err := http.Get(prom + "/api/v1/rules?type=alert")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					State     string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rules); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Name)
			if r.Health == "err" || r.LastError != "" {
				t.Errorf("alert %s: health %s, %s", r.Name, r.Health, r.LastError)
			}
			if r.State != "inactive" && r.Name != "InvoicingAPIHighErrorRatio" && r.Name != "InvoicingAPIHighLatencyP99" {
				t.Errorf("alert %s is %s on a healthy stack", r.Name, r.State)
			}
		}
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "EdgeCertificateExpiresSoon EdgeCertificateRenewalFailing InvoicingAPIDown InvoicingAPIHighErrorRatio InvoicingAPIHighLatencyP99 InvoicingAPIRestarting InvoicingBackupArchiveBehind InvoicingDatabaseNotReady InvoicingDatabaseRestarting InvoicingProxyDown" {
		t.Fatalf("Prometheus loaded alert rules %s", got)
	}

	// Restarts without cAdvisor: nothing marked while the API process is
	// the same; a restarted API container shows as a restart mark, a count
	// on the restarts panel and an uptime that starts again; a restarted
	// PostgreSQL container as a new postmaster start time.
	if n, err := promQuery(prom, restartMark); err != nil || n != 0 {
		t.Fatalf("restart mark %q before any restart: %d series, %v; want none", restartMark, n, err)
	}
	restartsAPI := queries[`panel "Restarts in the time range" A`]
	restartsDB := queries[`panel "Restarts in the time range" B`]
	if restartsAPI == "" || restartsDB == "" {
		t.Fatalf("the dashboard has no restarts panel with API (A) and PostgreSQL (B) counts: %v", queries)
	}
	for _, q := range []string{restartsAPI, restartsDB} {
		waitSeries(t, prom, "no restart yet", q, 10*time.Second, func(s promSample) bool { return s.Value == 0 })
	}
	if err := e.docker.ContainerRestart(ctx, ids[proj+"-api-1"], container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	waitSeries(t, prom, "API restart mark", restartMark, 90*time.Second, func(promSample) bool { return true })
	waitSeries(t, prom, "API restart count", restartsAPI, 30*time.Second, func(s promSample) bool { return s.Value >= 1 })
	waitSeries(t, prom, "API uptime after the restart", `time() - process_start_time_seconds{job="api"}`, 30*time.Second,
		func(s promSample) bool { return s.Value < time.Since(restarted).Seconds()+5 })
	if err := e.docker.ContainerRestart(ctx, ids[proj+"-db-1"], container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSeries(t, prom, "PostgreSQL restart count", restartsDB, 90*time.Second, func(s promSample) bool { return s.Value >= 1 })
	t.Logf("API and PostgreSQL restarts seen by Prometheus within %s", time.Since(restarted).Round(time.Second))

	pw, _ := os.ReadFile(filepath.Join(e.xdg, "invdeploy", proj, "db_password"))
	e.run(root, "logs", "-p", proj, "--tail", "50")
	e.assertNoSecret(proj, string(pw))
}

// grafanaVars stands in for the variables Grafana expands in a query before
// Prometheus sees it.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "10s", "$__range", "1h")

// deliveryVolumes counts the project's secret and config delivery volumes
// (two per container that gets files), which objects counts too.
func (e *localEnv) deliveryVolumes(project string) int {
	e.t.Helper()
	f := filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project), filters.Arg("label", deployer.LabelDeliveryFor))
	vs, err := e.docker.VolumeList(context.Background(), volume.ListOptions{Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(vs.Volumes)
}
