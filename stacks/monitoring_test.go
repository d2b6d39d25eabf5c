package stacks

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// The monitoring profile's files (stacks/invoicing/prometheus, .../grafana).
const (
	prometheusDir = "invoicing/prometheus"
	grafanaDir    = "invoicing/grafana"
	dashboardFile = grafanaDir + "/dashboards/invoicing.json"
)

// promtool runs Debian's promtool (scripts/deps.sh installs it) in dir.
func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	bin := testenv.NeedCommand(t, "promtool")
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPrometheusConfigAndAlertRules: the config and rules baked into the
// Prometheus image are valid, and the alerts fire when they should (and not
// before): promtool check config, check rules, test rules.
func TestPrometheusConfigAndAlertRules(t *testing.T) {
	promtool(t, prometheusDir, "check", "config", "prometheus.yml")
	promtool(t, prometheusDir, "check", "rules", "alerts.yml")
	promtool(t, prometheusDir, "test", "rules", "alerts_test.yml")
}

// dashboard is the part of a Grafana dashboard model the checks read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Annotations   struct {
		List []struct {
			Name        string     `json:"name"`
			Datasource  datasource `json:"datasource"`
			Expr        string     `json:"expr"`
			TitleFormat string     `json:"titleFormat"`
		} `json:"list"`
	} `json:"annotations"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource datasource               `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// grafanaVars stands in for the variables Grafana expands in a query before
// Prometheus sees it.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "10s", "$__range", "1h")

// dashboardQueries returns every PromQL expression of the dashboard (panel
// targets, nested row panels, annotations) by where it is, with Grafana's
// variables expanded.
func dashboardQueries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID)] = grafanaVars.Replace(tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out[fmt.Sprintf("annotation %q", a.Name)] = grafanaVars.Replace(a.Expr)
		}
	}
	return out
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// TestDashboardStructure: what Grafana would reject or show broken, checked
// without Grafana (which cannot run on these machines): the schema version,
// unique panel ids and refIds, panels inside the 24-column grid, every query
// on the provisioned data source's uid, and the provisioning provider's path
// being where the Dockerfile copies the dashboards.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Fatalf("dashboard uid %q title %q schemaVersion %d: want a uid, a title and schemaVersion >= 36", d.UID, d.Title, d.SchemaVersion)
	}
	ds, err := os.ReadFile(filepath.Join(grafanaDir, "provisioning/datasources/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+uid:\s*(\S+)`).FindSubmatch(ds)
	if m == nil {
		t.Fatal("the provisioned data source has no uid: dashboards could not reference it")
	}
	dsUID := string(m[1])

	ids := map[int]bool{}
	queries := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
			}
			if p.Type != "row" && p.Type != "text" {
				if p.Datasource.UID != dsUID || len(p.Targets) == 0 {
					t.Errorf("panel %q: data source uid %q (want %q), %d targets", p.Title, p.Datasource.UID, dsUID, len(p.Targets))
				}
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				queries++
				if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" || tg.Datasource.UID != dsUID {
					t.Errorf("panel %q: target %q: want a unique refId, an expr and data source %q", p.Title, tg.RefID, dsUID)
				}
				refs[tg.RefID] = true
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if queries < 10 {
		t.Errorf("dashboard has %d queries; the issue asks for about a dozen panels", queries)
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" && a.Datasource.UID != dsUID {
			t.Errorf("annotation %q: data source uid %q, want %q", a.Name, a.Datasource.UID, dsUID)
		}
	}

	prov, err := os.ReadFile(filepath.Join(grafanaDir, "provisioning/dashboards/invoicing.yml"))
	if err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile(filepath.Join(grafanaDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	pm := regexp.MustCompile(`(?m)^\s+path:\s*(\S+)`).FindSubmatch(prov)
	if pm == nil || !strings.Contains(string(docker), "COPY dashboards "+string(pm[1])) {
		t.Errorf("the dashboard provider reads %q, but the Dockerfile does not copy dashboards there", pm)
	}
}

// TestDashboardQueriesParse: every PromQL expression of the dashboard parses,
// by Prometheus' own parser (promtool check rules on a file of recording
// rules made from them). The end-to-end test also runs them against a real
// Prometheus.
func TestDashboardQueriesParse(t *testing.T) {
	qs := dashboardQueries(t, loadDashboard(t))
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for _, q := range qs {
		i++
		e, _ := json.Marshal(q) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:q%d\n        expr: %s\n", i, e)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, dir, "check", "rules", "rules.yml")
}

// TestDashboardMarksReleasesAndRestarts: the time-axis marks and panels the
// rollout proxy and the start-time series feed are there and read the
// series those export (the end-to-end test runs them against Prometheus).
func TestDashboardMarksReleasesAndRestarts(t *testing.T) {
	d := loadDashboard(t)
	exprs := dashboardQueries(t, d)
	has := func(where, metric string) bool {
		for w, e := range exprs {
			if strings.HasPrefix(w, where) && strings.Contains(e, metric) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct{ where, metric string }{
		{`annotation "Release"`, "invdeploy_release_info"},
		{`annotation "Rollout proxy switch"`, "invdeploy_proxy_switch_events_total"},
		{`annotation "API (re)started`, "process_start_time_seconds"},
		{`panel 22 "Release serving"`, "invdeploy_release_info"},
		{`panel 23 "Proxy: requests`, "invdeploy_proxy_requests_total"},
		{`panel 24 "Proxy: switch events`, "invdeploy_proxy_upstream_errors_total"},
		{`panel 25 "Restarts in the time range" target B`, "pg_postmaster_start_time_seconds"},
		{`panel 9 "Uptime`, "pg_postmaster_start_time_seconds"},
	} {
		if !has(c.where, c.metric) {
			t.Errorf("no %s reading %s", c.where, c.metric)
		}
	}
	// Marks are titled from the series' labels, which must be ones the
	// series has.
	for _, a := range d.Annotations.List {
		if a.Name == "Release" && !strings.Contains(a.TitleFormat, "{{release}}") {
			t.Errorf("release mark titled %q: want the release number", a.TitleFormat)
		}
	}
}
