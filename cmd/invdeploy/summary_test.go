package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestSummaryGolden holds up's and down's summary lines to
// testdata/summary.golden (go test -run TestSummaryGolden -update rewrites
// it): the parts add up to the containers running, plurals are right, and
// a container up's probe saw healthy is healthy, with the engine's view
// noted.
func TestSummaryGolden(t *testing.T) {
	c := func(service, state, health string) deployer.ContainerStatus {
		return deployer.ContainerStatus{Name: "shop-" + service + "-1", Service: service, State: state, Health: health}
	}
	proxy := c("api", "running", "")
	proxy.Role = "proxy"
	ready := func(services ...string) []deployer.Readiness {
		var out []deployer.Readiness
		for _, s := range services {
			out = append(out, deployer.Readiness{Service: s, State: "healthy", By: deployer.ReadyByProbe})
		}
		return out
	}
	var b strings.Builder
	for _, tc := range []struct {
		name  string
		sts   []deployer.ContainerStatus
		ready []deployer.Readiness
	}{
		{"one healthy", []deployer.ContainerStatus{c("db", "running", "healthy")}, nil},
		{"all healthy", []deployer.ContainerStatus{c("db", "running", "healthy"), c("api", "running", "healthy")}, nil},
		{"engine lags up's probe", []deployer.ContainerStatus{c("db", "running", "starting"), c("api", "running", "starting"), proxy}, ready("db", "api")},
		{"mixed, adds up", []deployer.ContainerStatus{c("db", "running", "healthy"), c("api", "running", "healthy"), c("prometheus", "running", "healthy"), c("exporter", "running", "starting"), proxy}, nil},
		{"one without a healthcheck", []deployer.ContainerStatus{c("web", "running", "")}, nil},
		{"one-shot completed", []deployer.ContainerStatus{c("db", "running", "healthy"), c("migrate", "completed", "")}, nil},
		{"unhealthy stays unhealthy", []deployer.ContainerStatus{c("db", "running", "unhealthy")}, ready("db")},
		{"a restarting container", []deployer.ContainerStatus{c("db", "running", "healthy"), c("worker", "restarting", "")}, nil},
		{"none", nil, nil},
	} {
		fmt.Fprintf(&b, "%s: %s\n", tc.name, containerSummary(deployer.WithReadiness(tc.sts, tc.ready)))
	}
	for _, r := range []deployer.DownResult{{Containers: 1, Networks: 1}, {Containers: 3, Networks: 2, Volumes: 1}, {}} {
		fmt.Fprintf(&b, "down %d/%d/%d: %s\n", r.Containers, r.Networks, r.Volumes, removedSummary(&r))
	}
	got := b.String()
	const file = "testdata/summary.golden"
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("summary lines differ from %s (-update rewrites it)\n got:\n%s\nwant:\n%s", file, got, want)
	}
}
