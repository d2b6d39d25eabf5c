package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/deployer"
)

// The waiting logic of up on the real engine: readiness probes (issue 14),
// one-shot services and the start order (issue 10). The stacks are small
// debian:bookworm services; `sleep` as PID 1 ignores SIGTERM, hence the
// short stop_grace_period.

// statusWhenHealthy polls status until no container's health is still
// "starting" in the engine's own status (at most 30 s): up returns as soon as
// invdeploy's run of a healthcheck passes, up to one interval before the
// engine's schedule says healthy.
func (e *localEnv) statusWhenHealthy(dir, proj string) []deployer.ContainerStatus {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sts := statusJSON(e.t, e.mustRun(dir, "status", "-p", proj, "-o", "json"))
		starting := false
		for _, s := range sts {
			starting = starting || s.Health == "starting"
		}
		if !starting || time.Now().After(deadline) {
			return sts
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wreadyProject is a project name of these tests (prefix wready).
func wreadyProject(name string) string {
	return fmt.Sprintf("wready-%s-%d-%d", name, os.Getpid(), time.Now().UnixNano()%100000)
}

// composeDir writes a compose file into a fresh directory.
func composeDir(t *testing.T, compose string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// upReady runs up --output json and returns its readiness by service.
func (e *localEnv) upReady(dir, proj string) (map[string]deployer.Readiness, localResult) {
	e.t.Helper()
	r := e.mustRun(dir, "up", "-p", proj, "--output", "json", "--wait-timeout", "45s")
	var out struct {
		Ready []deployer.Readiness `json:"ready"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		e.t.Fatalf("up --output json: %v\n%s", err, r.stdout)
	}
	by := map[string]deployer.Readiness{}
	for _, rd := range out.Ready {
		by[rd.Service] = rd
	}
	return by, r
}

// TestProbeReadyBeforeEngineStatus: with a healthcheck interval of 60 s the
// engine says "starting" for a minute; invdeploy's own runs of the
// healthchecks (CMD-SHELL as the container's user 1000, and CMD) see both
// services ready within seconds, up reports that the probe saw them first,
// and status still reports the engine's word.
func TestProbeReadyBeforeEngineStatus(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	dir := composeDir(t, `services:
  slow:
    image: debian:bookworm
    user: "1000:1000"
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready && test \"$$(id -u)\" = 1000"]
      interval: 60s
      timeout: 5s
    stop_grace_period: 1s
  next:
    image: debian:bookworm
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 300"]
    depends_on:
      slow: {condition: service_healthy}
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 60s
    stop_grace_period: 1s
`)
	proj := wreadyProject("probe")
	e.cleanup(proj)
	start := time.Now()
	ready, _ := e.upReady(dir, proj)
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("up took %v: it waited for the engine's 60 s interval", el)
	}
	for _, svc := range []string{"slow", "next"} {
		if rd := ready[svc]; rd.By != deployer.ReadyByProbe || rd.State != "healthy" {
			t.Fatalf("%s readiness %+v, want healthy, seen first by the probe", svc, rd)
		}
	}
	if ready["slow"].AfterSeconds < 1 || !ready["slow"].At.Before(ready["next"].At) {
		t.Fatalf("readiness %+v: slow is ready only after its 1 s sleep, and next after slow", ready)
	}
	for _, s := range statusJSON(t, e.mustRun(dir, "status", "-p", proj, "-o", "json")) {
		if s.State != "running" || s.Health != "starting" {
			t.Fatalf("status of %s: %s/%s, want running/starting (the engine's own word)", s.Name, s.State, s.Health)
		}
	}
}

// TestOneShotServices: services that run to completion (exit 0) do not fail
// up, whether others wait for them with service_completed_successfully or
// service_started or nobody waits; up and status say completed. A one-shot
// that fails exits 4 and its dependant never starts.
func TestOneShotServices(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	const stack = `services:
  migrate:
    image: debian:bookworm
    command: ["sh", "-c", "sleep 1; echo migrated; exit ${MIGRATE_EXIT:-0}"]
  init:
    image: debian:bookworm
    command: ["true"]
  lonely:
    image: debian:bookworm
    command: ["sh", "-c", "exit 0"]
  app:
    image: debian:bookworm
    command: ["sleep", "300"]
    stop_grace_period: 1s
    depends_on:
      migrate: {condition: service_completed_successfully}
      init: {condition: service_started}
`
	dir := composeDir(t, stack)
	proj := wreadyProject("oneshot")
	e.cleanup(proj)
	ready, r := e.upReady(dir, proj)
	if rd := ready["migrate"]; rd.State != "completed" {
		t.Fatalf("migrate readiness %+v, want completed", rd)
	}
	if rd := ready["app"]; rd.State != "running" {
		t.Fatalf("app readiness %+v, want running", rd)
	}
	if !strings.Contains(r.stderr, "Container "+proj+"-migrate-1 completed (exited 0)") {
		t.Fatalf("up does not say migrate completed:\n%s", r.stderr)
	}
	sts := statusJSON(t, e.mustRun(dir, "status", "-p", proj, "-o", "json"))
	if len(sts) != 4 {
		t.Fatalf("status %+v, want 4 containers", sts)
	}
	for _, s := range sts {
		want := "completed"
		if s.Service == "app" {
			want = "running"
		}
		if s.State != want {
			t.Errorf("status of %s: %s, want %s", s.Name, s.State, want)
		}
	}
	text := e.mustRun(dir, "status", "-p", proj).stdout
	if !regexp.MustCompile(proj + `-migrate-1\s+migrate\s+completed`).MatchString(text) {
		t.Errorf("status text does not say migrate completed:\n%s", text)
	}

	failing := wreadyProject("oneshot-fail")
	e.cleanup(failing)
	e.extra = []string{"MIGRATE_EXIT=3"}
	r = e.run(dir, "up", "-p", failing, "--wait-timeout", "45s")
	if r.code != 4 || !strings.Contains(r.stderr, failing+"-migrate-1 (service migrate) exited with code 3") || !strings.Contains(r.stderr, "migrated") {
		t.Fatalf("exit %d, want 4 naming migrate's exit code 3 with its logs:\n%s", r.code, r.stderr)
	}
	ins, err := e.docker.ContainerInspect(context.Background(), e.containerIDs(failing)[failing+"-app-1"])
	if err != nil || ins.State.StartedAt != "0001-01-01T00:00:00Z" {
		t.Fatalf("app of the failed one-shot: %v, started at %v; want never started", err, ins.State)
	}
}

// TestStartOrder: services start by dependency level, by name within a
// level, each after its dependencies' containers run; up returns when every
// container runs and the one with a healthcheck passes it.
func TestStartOrder(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	svc := func(deps string) string {
		return `{image: debian:bookworm, command: ["sleep", "300"], stop_grace_period: 1s` + deps + `}`
	}
	dir := composeDir(t, `services:
  a: `+svc(", depends_on: [b, c]")+`
  b: `+svc(", depends_on: [c]")+`
  c:
    image: debian:bookworm
    command: ["sh", "-c", "sleep 1; touch /tmp/up; exec sleep 300"]
    stop_grace_period: 1s
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/up"], interval: 60s}
  e: `+svc(", depends_on: [d]")+`
  d: `+svc("")+`
`)
	proj := wreadyProject("order")
	e.cleanup(proj)
	ready, r := e.upReady(dir, proj)
	var started []string
	for _, m := range regexp.MustCompile(`Container `+regexp.QuoteMeta(proj)+`-(\w)-1 created and started`).FindAllStringSubmatch(r.stderr, -1) {
		started = append(started, m[1])
	}
	if got := strings.Join(started, ","); got != "c,d,b,e,a" {
		t.Fatalf("start order %s, want c,d,b,e,a:\n%s", got, r.stderr)
	}
	if rd := ready["c"]; rd.State != "healthy" {
		t.Fatalf("up returned with c %+v, want healthy", rd)
	}
	ctx := context.Background()
	startedAt := map[string]time.Time{}
	for name, id := range e.containerIDs(proj) {
		ins, err := e.docker.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !ins.State.Running {
			t.Fatalf("%s is %s after up returned", name, ins.State.Status)
		}
		at, err := time.Parse(time.RFC3339Nano, ins.State.StartedAt)
		if err != nil {
			t.Fatal(err)
		}
		startedAt[strings.TrimSuffix(strings.TrimPrefix(name, proj+"-"), "-1")] = at
	}
	for _, pair := range [][2]string{{"c", "b"}, {"b", "a"}, {"c", "a"}, {"d", "e"}, {"c", "d"}, {"b", "e"}} {
		if !startedAt[pair[0]].Before(startedAt[pair[1]]) {
			t.Errorf("%s started at %v, not before %s at %v", pair[0], startedAt[pair[0]], pair[1], startedAt[pair[1]])
		}
	}
}
