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
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "10s", "$__range", "1h")
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["title"].(string); ok {
			at = fmt.Sprintf("panel %q", t)
		}
		if e, ok := x["expr"].(string); ok && e != "" {
			out[fmt.Sprintf("%s %v", at, x["refId"])] = vars.Replace(e)
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
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm", "prom/prometheus:v2.42.0", "prometheuscommunity/postgres-exporter:v0.11.1")
	proj := fmt.Sprintf("wmon%d", time.Now().UnixNano()%1000000)
	apiPort := portInRange(t, 18800, 18899)
	promPort := portInRange(t, 18800, 18899, apiPort)
	e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(apiPort), "INVOICING_PROMETHEUS_PORT=" + strconv.Itoa(promPort)}
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
		if !h.ReadonlyRootfs || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" || ins.Config.User == "" || strings.HasPrefix(ins.Config.User, "0") || h.Resources.Memory == 0 {
			t.Errorf("%s not hardened: readonly %v cap_drop %v user %q memory %d", svc, h.ReadonlyRootfs, h.CapDrop, ins.Config.User, h.Resources.Memory)
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
	traffic := func() {
		for i := 0; i < 5; i++ {
			code, hdr, body := httpDo(t, "POST", api+"/v1/invoices", `{"currency":"EUR","customer":{"name":"Grace Hopper"},"line_items":[{"description":"Talk","quantity":1,"unit_amount":5000}]}`)
			if code != http.StatusCreated {
				t.Fatalf("create invoice: %d %s", code, body)
			}
			httpDo(t, "GET", api+hdr.Get("Location"), "")
			httpDo(t, "POST", api+hdr.Get("Location")+"/finalize", "")
		}
		httpDo(t, "GET", api+"/v1/invoices?limit=5", "")
		httpDo(t, "GET", api+"/v1/invoices/inv_doesnotexist", "")   // 404
		httpDo(t, "POST", api+"/v1/invoices", `{"currency":`)       // 400
		httpDo(t, "POST", api+"/v1/invoices", `{"currency":"EUR"}`) // 422
	}
	traffic()

	prom := "http://127.0.0.1:" + strconv.Itoa(promPort)
	deadline := time.Now().Add(2 * time.Minute)
	for _, target := range []string{`up{job="api"} == 1`, `up{job="postgres"} == 1`, `pg_up == 1`} {
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
	t.Logf("targets api and postgres up after %s", time.Since(start).Round(time.Second))

	// Every dashboard query returns data once rates have two samples.
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
	annotations := map[string]string{}
	for _, a := range dash.Annotations.List {
		exprsIn(a, fmt.Sprintf("annotation %q", a["name"]), annotations)
	}
	if len(annotations) == 0 {
		t.Fatal("the dashboard has no query annotation (release / restart markers)")
	}
	if len(queries) < 10 {
		t.Fatalf("found %d queries in the dashboard, want its dozen or so", len(queries))
	}
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

	// The release/restart markers: nothing while the API process is the
	// same; a mark once a new one runs (here a restart; a release's new
	// container looks the same to Prometheus).
	for where, q := range annotations {
		if n, err := promQuery(prom, q); err != nil || n != 0 {
			t.Fatalf("%s: %q before any restart: %d series, %v; want none", where, q, n, err)
		}
	}
	if err := e.docker.ContainerRestart(ctx, ids[proj+"-api-1"], container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	marked := time.Now().Add(90 * time.Second)
	for where, q := range annotations {
		for {
			n, err := promQuery(prom, q)
			if err == nil && n > 0 {
				break
			}
			if time.Now().After(marked) {
				t.Fatalf("%s: %q shows no mark within 90s of an API restart (%d series, %v)", where, q, n, err)
			}
			time.Sleep(2 * time.Second)
		}
	}

	// Every alert rule is loaded and evaluates without error.
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
			if r.Name == "InvoicingAPIDown" || r.Name == "InvoicingDatabaseNotReady" {
				if r.State != "inactive" {
					t.Errorf("alert %s is %s on a healthy stack", r.Name, r.State)
				}
			}
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "InvoicingAPIDown InvoicingAPIHighErrorRatio InvoicingAPIHighLatencyP99 InvoicingDatabaseNotReady" {
		t.Fatalf("Prometheus loaded alert rules %v", names)
	}
	pw, _ := os.ReadFile(filepath.Join(e.xdg, "invdeploy", proj, "db_password"))
	e.run(root, "logs", "-p", proj, "--tail", "50")
	e.assertNoSecret(proj, string(pw))
}

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
