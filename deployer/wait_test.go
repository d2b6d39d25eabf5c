package deployer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// probeStack is a database with a CMD healthcheck run as its own user, and
// a web service with a CMD-SHELL one that waits for it to be healthy. The
// engine's interval (30 s) is far beyond every test's wait: only a probe or
// a scripted health change can make them ready.
const probeStack = `services:
  db:
    image: postgres:15
    user: postgres
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "x"]
      interval: 30s
      timeout: %TIMEOUT%
  web:
    image: postgres:15
    user: "1000:1000"
    working_dir: /srv
    depends_on:
      db: {condition: service_healthy}
    healthcheck:
      test: wget -q -O- http://127.0.0.1/ || exit 1
      interval: 30s
`

func upProbeStack(t *testing.T, f *fakeEngine, timeout string) (*UpResult, error) {
	t.Helper()
	st := loadStack(t, strings.ReplaceAll(probeStack, "%TIMEOUT%", timeout), nil)
	return New(f, nil).Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
}

func readyOf(t *testing.T, res *UpResult, service string) Readiness {
	t.Helper()
	for _, r := range res.Ready {
		if r.Service == service {
			return r
		}
	}
	t.Fatalf("no readiness recorded for %s: %+v", service, res.Ready)
	return Readiness{}
}

// The engine never reports either service healthy; their probes pass, so up
// succeeds, and says the probe saw them first. The probes are the
// healthcheck commands as the engine runs them, as the container's user.
func TestProbeReadyBeforeEngine(t *testing.T) {
	// Virtual time (testing/synctest): the waits, probe pauses and the
	// fake engine's health changes run on the bubble's clock.
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithImages()
		f.health["db"], f.health["web"] = "starting", "starting"
		f.probes["db"] = fakeProbe{code: 0, took: 10 * time.Millisecond}
		// In virtual time only what takes time separates two instants: web's
		// probe takes some, so "after its dependency" is strict below.
		f.probes["web"] = fakeProbe{code: 0, took: 10 * time.Millisecond}
		start := time.Now()
		res, err := upProbeStack(t, f, "2s")
		if err != nil {
			t.Fatalf("up: %v", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("up took %v with passing probes", el)
		}
		for _, svc := range []string{"db", "web"} {
			if r := readyOf(t, res, svc); r.By != ReadyByProbe || r.State != "healthy" || r.AfterSeconds <= 0 {
				t.Errorf("%s readiness %+v, want healthy by probe", svc, r)
			}
		}
		if db, web := readyOf(t, res, "db"), readyOf(t, res, "web"); !db.At.Before(web.At) {
			t.Errorf("db ready at %v, web at %v: web must come after its dependency", db.At, web.At)
		}
		execs := f.execList()
		if len(execs) != 2 {
			t.Fatalf("%d execs, want one per container: %+v", len(execs), execs)
		}
		want := map[string]string{
			"postgres":  "pg_isready -U x",
			"1000:1000": "/bin/sh -c wget -q -O- http://127.0.0.1/ || exit 1",
		}
		for _, ex := range execs {
			cmd, ok := want[ex.opts.User]
			if !ok || strings.Join(ex.opts.Cmd, " ") != cmd {
				t.Errorf("exec as %q of %q, want one of %v", ex.opts.User, ex.opts.Cmd, want)
			}
			if ex.opts.Privileged || ex.opts.Tty || ex.opts.AttachStdin {
				t.Errorf("exec %+v asks for more than the engine's own healthcheck", ex.opts)
			}
			if ex.opts.User == "1000:1000" && ex.opts.WorkingDir != "/srv" {
				t.Errorf("exec in %q, want the container's working dir /srv", ex.opts.WorkingDir)
			}
		}
		// Status still reports the engine's word.
		sts, err := New(f, nil).Status(context.Background(), "t")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sts {
			if s.Health != "starting" {
				t.Errorf("status of %s says %q, want the engine's starting", s.Name, s.Health)
			}
		}
	})
}

// Probes that keep failing do not hold up what the engine reports healthy.
func TestProbeFailsEngineHealthy(t *testing.T) {
	// Virtual time (testing/synctest): the waits, probe pauses and the
	// fake engine's health changes run on the bubble's clock.
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithImages()
		f.health["db"] = "starting"
		f.healthyAfter["db"] = 400 * time.Millisecond
		res, err := upProbeStack(t, f, "2s")
		if err != nil {
			t.Fatalf("up: %v", err)
		}
		if r := readyOf(t, res, "db"); r.By != ReadyByEngine || r.State != "healthy" {
			t.Fatalf("db readiness %+v, want healthy by engine", r)
		}
		if n := len(f.execList()); n < 2 {
			t.Fatalf("%d probes of db in 400 ms, want several", n)
		}
	})
}

// An engine that says unhealthy wins over a passing probe.
func TestProbeDoesNotOverruleUnhealthy(t *testing.T) {
	// Virtual time (testing/synctest): the waits, probe pauses and the
	// fake engine's health changes run on the bubble's clock.
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithImages()
		f.health["db"] = "unhealthy"
		f.probes["db"] = fakeProbe{code: 0}
		_, err := upProbeStack(t, f, "2s")
		var ue *UnhealthyError
		if !errors.As(err, &ue) || ue.Service != "db" {
			t.Fatalf("want db unhealthy, got %v", err)
		}
	})
}

// A probe that outlives its timeout is a failure even when it exits 0
// later, and the next probe waits for it to end: never two at once.
func TestProbeHangsPastTimeout(t *testing.T) {
	// Virtual time (testing/synctest): the waits, probe pauses and the
	// fake engine's health changes run on the bubble's clock.
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithImages()
		f.health["db"] = "starting"
		f.healthyAfter["db"] = 1600 * time.Millisecond
		f.probes["db"] = fakeProbe{code: 0, took: 700 * time.Millisecond}
		res, err := upProbeStack(t, f, "200ms")
		if err != nil {
			t.Fatalf("up: %v", err)
		}
		if r := readyOf(t, res, "db"); r.By != ReadyByEngine {
			t.Fatalf("db readiness %+v: a probe past its timeout counted as a pass", r)
		}
		if f.execOverlaps() {
			t.Fatal("two probes of one container ran at once")
		}
		// 1.6 s of 0.7 s probes, each followed by a pause: two or three.
		var db int
		for _, ex := range f.execList() {
			if strings.Contains(strings.Join(ex.opts.Cmd, " "), "pg_isready") {
				db++
			}
		}
		if db < 2 || db > 3 {
			t.Fatalf("%d probes of db, want 2 or 3 (probing resumes after a hung probe ends, and only then)", db)
		}
		// The fake's last hung probe ends on its own (in virtual time): the
		// bubble ends only when every goroutine has.
		time.Sleep(f.probes["db"].took)
	})
}

// No healthcheck, no probe: readiness is the engine's running state.
func TestNoHealthcheckNoProbe(t *testing.T) {
	f := fakeWithImages()
	st := loadStack(t, "services:\n  a:\n    image: postgres:15\n  b:\n    image: postgres:15\n    depends_on: [a]\n", nil)
	res, err := New(f, nil).Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.execList()); n != 0 {
		t.Fatalf("%d execs in containers without a healthcheck", n)
	}
	for _, svc := range []string{"a", "b"} {
		if r := readyOf(t, res, svc); r.By != ReadyByEngine || r.State != "running" {
			t.Errorf("%s readiness %+v, want running by engine", svc, r)
		}
	}
}

const oneShotStack = `services:
  migrate:
    image: postgres:15
  app:
    image: postgres:15
    depends_on:
      migrate: {condition: service_completed_successfully}
  seed:
    image: postgres:15
  web:
    image: postgres:15
    depends_on: [seed]
`

// A one-shot service that exits 0 is completed: it does not fail up, whether
// others wait for it with service_completed_successfully, service_started,
// or nobody does; status says completed.
func TestOneShotCompleted(t *testing.T) {
	f := fakeWithImages()
	f.exits["migrate"], f.exits["seed"] = 0, 0
	st := loadStack(t, oneShotStack, nil)
	d := New(f, nil)
	res, err := d.Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	for svc, want := range map[string]string{"migrate": "completed", "seed": "completed", "app": "running", "web": "running"} {
		if r := readyOf(t, res, svc); r.State != want {
			t.Errorf("%s readiness %+v, want %s", svc, r, want)
		}
	}
	sts, err := d.Status(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		want := "running"
		if s.Service == "migrate" || s.Service == "seed" {
			want = "completed"
		}
		if s.State != want {
			t.Errorf("status of %s: %s, want %s", s.Name, s.State, want)
		}
	}
}

// A one-shot that fails fails up, and what waits for it is never started.
func TestOneShotFailed(t *testing.T) {
	f := fakeWithImages()
	f.exits["migrate"], f.exits["seed"] = 3, 0
	st := loadStack(t, oneShotStack, nil)
	_, err := New(f, nil).Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
	var ue *UnhealthyError
	if !errors.As(err, &ue) || ue.Service != "migrate" || !strings.Contains(ue.Reason, "exited with code 3") {
		t.Fatalf("want migrate exited with code 3, got %v", err)
	}
	if f.countCalls("start t-app-1") != 0 {
		t.Fatal("app started although migrate failed")
	}
}

// A service with a healthcheck that exits 0 did not become healthy: up fails.
func TestHealthcheckedServiceExitingIsNotCompleted(t *testing.T) {
	f := fakeWithImages()
	f.exits["db"] = 0
	_, err := upProbeStack(t, f, "2s")
	var ue *UnhealthyError
	if !errors.As(err, &ue) || ue.Service != "db" {
		t.Fatalf("want db to fail up, got %v", err)
	}
}

// Services start by level and by name within a level, the same on every
// run, each after its dependencies run; a dependency that crashes stops
// its dependants from starting.
func TestStartOrderDeterministic(t *testing.T) {
	const stack = `services:
  a: {image: postgres:15, depends_on: [b, c]}
  b: {image: postgres:15, depends_on: [c]}
  c: {image: postgres:15}
  e: {image: postgres:15, depends_on: [d]}
  d: {image: postgres:15}
`
	st := loadStack(t, stack, nil)
	f := fakeWithImages()
	d := New(f, nil)
	o := UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second}
	for range 5 {
		f.calls = nil
		if _, err := d.Up(context.Background(), st, o); err != nil {
			t.Fatal(err)
		}
		var starts []string
		for _, c := range f.mutations() {
			if strings.HasPrefix(c, "start ") {
				starts = append(starts, strings.TrimPrefix(c, "start t-"))
			}
		}
		if got := strings.Join(starts, ","); got != "c-1,d-1,b-1,e-1,a-1" {
			t.Fatalf("start order %s, want c-1,d-1,b-1,e-1,a-1", got)
		}
		if _, err := d.Down(context.Background(), "t", DownOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	f.exits["c"] = 1
	f.calls = nil
	_, err := d.Up(context.Background(), st, o)
	var ue *UnhealthyError
	if !errors.As(err, &ue) || ue.Service != "c" {
		t.Fatalf("want c to fail up, got %v", err)
	}
	if f.countCalls("start t-b-1") != 0 || f.countCalls("start t-a-1") != 0 {
		t.Fatalf("a dependant of a crashed service started: %v", f.mutations())
	}
}
