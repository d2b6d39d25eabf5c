package stacks_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestMonitoringProfilesOfTheBundledStack: the profiles decide what runs (a
// plain up has no monitoring service, volume or secret), every Prometheus
// scrape target is a service of the stack, and nothing of the profiles is
// published beyond 127.0.0.1 even when the API is (as on a remote host).
func TestMonitoringProfilesOfTheBundledStack(t *testing.T) {
	t.Setenv("INVOICING_API_BIND", "0.0.0.0")
	t.Setenv("COMPOSE_PROFILES", "")
	load := func(profiles ...string) *deployer.Stack {
		st, err := deployer.Load(context.Background(), deployer.LoadOptions{WorkingDir: t.TempDir(), Profiles: profiles})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	plain := load().Project
	if _, ok := plain.Services["prometheus"]; ok || len(plain.Services) != 2 {
		t.Fatalf("plain: services %v, want api and db only", plain.ServiceNames())
	}
	if len(plain.Volumes) != 1 || len(plain.Secrets) != 1 || len(plain.Configs) != 0 {
		t.Fatalf("plain: volumes %v secrets %v configs %v, want db-data and db_password only", plain.Volumes, plain.Secrets, plain.Configs)
	}

	all := load("monitoring", "dashboards").Project
	for _, name := range []string{"prometheus", "postgres-exporter", "grafana"} {
		s, ok := all.Services[name]
		if !ok {
			t.Fatalf("monitoring+dashboards: no service %s", name)
		}
		for _, p := range s.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q, want 127.0.0.1 only", name, p.Published, p.HostIP)
			}
		}
		if !s.ReadOnly || len(s.CapDrop) != 1 || s.CapDrop[0] != "ALL" || s.User == "" || s.User[0] == '0' {
			t.Errorf("%s not hardened: read_only %v cap_drop %v user %q", name, s.ReadOnly, s.CapDrop, s.User)
		}
	}
	if _, ok := all.Secrets["grafana_admin"]; !ok {
		t.Error("dashboards: no grafana_admin secret")
	}
	// PostgreSQL's start time (restarts without cAdvisor) comes from the
	// exporter's extra query, delivered as a config where its env points.
	exp := all.Services["postgres-exporter"]
	q, ok := all.Configs["postgres_exporter_queries"]
	if !ok || len(exp.Configs) != 1 || exp.Configs[0].Source != "postgres_exporter_queries" ||
		exp.Environment["PG_EXPORTER_EXTEND_QUERY_PATH"] == nil || *exp.Environment["PG_EXPORTER_EXTEND_QUERY_PATH"] != exp.Configs[0].Target ||
		!strings.Contains(q.Content, "pg_postmaster_start_time()") {
		t.Errorf("postgres-exporter: configs %v, env %v, queries %q: want the pg_postmaster query at PG_EXPORTER_EXTEND_QUERY_PATH", exp.Configs, exp.Environment, q.Content)
	}

	cfg, err := os.ReadFile("invoicing/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`"([a-z0-9-]+):\d+"`).FindAllSubmatch(cfg, -1)
	if len(targets) < 2 {
		t.Fatalf("found %d scrape targets in prometheus.yml", len(targets))
	}
	for _, m := range targets {
		if host := string(m[1]); host != "localhost" {
			if _, ok := all.Services[host]; !ok {
				t.Errorf("prometheus.yml scrapes %s, which is not a service of the stack", m[0])
			}
		}
	}
}
