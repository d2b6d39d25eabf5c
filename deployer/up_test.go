package deployer

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/container"
)

// writeFiles creates files (name -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// loadStack loads compose (plus files) from a fresh directory.
func loadStack(t *testing.T, compose string, files map[string]string) *Stack {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	writeFiles(t, dir, map[string]string{"compose.yaml": compose})
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

// bundledStack loads the bundled stack with a working directory holding a
// Dockerfile, and isolates generated secrets in a temp config dir.
func bundledStack(t *testing.T, env ...string) (*Stack, string) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":    "FROM golang:1.26-bookworm AS build\nARG VERSION\nFROM scratch\nCOPY --from=build /x /x\n",
		".dockerignore": ".env\n",
	})
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "inv", Env: env})
	if err != nil {
		t.Fatalf("load bundled: %v", err)
	}
	if !st.Bundled {
		t.Fatal("bundled stack not chosen in a directory without a compose file")
	}
	return st, t.TempDir()
}

func fakeWithImages() *fakeEngine {
	f := newFakeEngine()
	f.images["postgres:15"] = "sha256:pg"
	f.images["golang:1.26-bookworm"] = "sha256:go"
	return f
}

func TestUpBundledCreatesThenKeeps(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(port))
	f := fakeWithImages()
	d := New(f, nil)

	res, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("first up: %v", err)
	}
	if got := f.countCalls("create inv-"); got != 2 {
		t.Fatalf("first up created %d containers, want 2: %v", got, f.mutations())
	}
	if f.countCalls("build invoicing-api") != 1 || f.countCalls("network-create invoicing") != 0 || f.countCalls("network-create inv_default") != 1 || f.countCalls("volume-create inv_db-data") != 1 {
		t.Fatalf("unexpected calls: %v", f.mutations())
	}
	// The database starts before the API (depends_on service_healthy).
	calls := strings.Join(f.mutations(), "\n")
	if strings.Index(calls, "start inv-db-1") > strings.Index(calls, "start inv-api-1") {
		t.Fatalf("api started before db:\n%s", calls)
	}
	if !res.Changed() {
		t.Fatal("first up reports no change")
	}
	// Tags of the bundled build.
	if b := f.builds[len(f.builds)-1]; !contains(b.Tags, st.Project.Services["api"].Image) {
		t.Fatalf("build tags %v lack the image the stack names, %s", b.Tags, st.Project.Services["api"].Image)
	}

	before := len(f.mutations())
	res, err = d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	if extra := f.mutations()[before:]; len(extra) != 0 {
		t.Fatalf("second up changed things: %v", extra)
	}
	if res.Changed() {
		t.Fatalf("second up reports a change: %+v", res.Steps)
	}

	// A changed service is recreated, the other kept.
	st2, err := Load(ctx, LoadOptions{WorkingDir: st.Project.WorkingDir, ProjectName: "inv", Env: []string{"INVOICING_API_PORT=" + strconv.Itoa(port), "INVOICING_API_TAG=latest"}})
	if err != nil {
		t.Fatal(err)
	}
	api := st2.Project.Services["api"]
	v := "1"
	api.Environment["EXTRA"] = &v
	st2.Project.Services["api"] = api
	before = len(f.mutations())
	res, err = d.Up(ctx, st2, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("third up: %v", err)
	}
	got := strings.Join(f.mutations()[before:], "\n")
	if !strings.Contains(got, "remove inv-api-1") || !strings.Contains(got, "create inv-api-1") || strings.Contains(got, "inv-db-1") {
		t.Fatalf("changed api: want api recreated and db untouched, got:\n%s", got)
	}
	for _, s := range res.Steps {
		if s.Service == "api" && (s.Action != ActionRecreate || !strings.HasPrefix(s.Reason, "configuration changed; ")) {
			t.Fatalf("api step %+v", s)
		}
	}
}

func TestUpDeliversSecretsBeforeStartNeverInEnvOrLabels(t *testing.T) {
	ctx := context.Background()
	const canary = "canary-Zq8vN3xK-secret-value"
	st, cfgDir := bundledStack(t, "INVOICING_DB_PASSWORD="+canary, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	for _, c := range f.containers {
		file, ok := f.delivered(c, "/run/secrets/db_password")
		if !ok {
			t.Fatalf("%s: no /run/secrets/db_password delivered", c.name)
		}
		wantUID := map[string]int{"inv-api-1": 65532, "inv-db-1": 999}[c.name]
		if file.content != canary || file.hdr.Mode != 0o400 || file.hdr.Uid != wantUID || file.opts.CopyUIDGID {
			t.Fatalf("%s: secret delivered with mode %o, owner %d (want %d), CopyUIDGID %v, right content %v", c.name, file.hdr.Mode, file.hdr.Uid, wantUID, file.opts.CopyUIDGID, file.content == canary)
		}
		if !secretsMountReadOnly(f, c) {
			t.Fatalf("%s: /run/secrets is not a ro,noexec,nosuid volume (mounts %+v)", c.name, c.host.Mounts)
		}
		for _, e := range c.cfg.Env {
			if strings.Contains(e, canary) {
				t.Fatalf("%s: secret value in env", c.name)
			}
		}
		for k, v := range c.cfg.Labels {
			if strings.Contains(k+v, canary) {
				t.Fatalf("%s: secret value in labels", c.name)
			}
		}
	}
}

func TestUpGeneratesPasswordOnceMode0600(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	path := filepath.Join(cfgDir, "db_password")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("generated password not stored: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored with mode %o, want 0600", fi.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	if len(first) < 32 {
		t.Fatalf("generated password has %d characters, want >= 32", len(first))
	}
	var delivered string
	for _, c := range f.containers {
		if file, ok := f.delivered(c, "/run/secrets/db_password"); ok {
			delivered = file.content
		}
	}
	if delivered != string(first) {
		t.Fatal("delivered secret differs from the stored one")
	}
	// Down, up again: the same password is reused.
	if _, err := d.Down(ctx, "inv", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("second up: %v", err)
	}
	second, _ := os.ReadFile(path)
	if string(first) != string(second) {
		t.Fatal("password regenerated on the second up")
	}
	for _, c := range f.containers {
		if file, ok := f.delivered(c, "/run/secrets/db_password"); ok && file.content != string(first) {
			t.Fatal("second up delivered another password")
		}
	}
}

func TestUpUnhealthyExits4WithLogs(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	f.health["db"] = "unhealthy"
	_, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	var ue *UnhealthyError
	if !errors.Is(err, ErrUnhealthy) || !errors.As(err, &ue) {
		t.Fatalf("want ErrUnhealthy, got %v", err)
	}
	if ue.Container != "inv-db-1" || !strings.Contains(err.Error(), "last 20 log lines") {
		t.Fatalf("error does not name the container and its logs: %v", err)
	}
	if f.countCalls("start inv-api-1") != 0 {
		t.Fatal("api was started although its dependency db never became healthy")
	}
}

func TestUpWaitTimeout(t *testing.T) {
	// Virtual time (testing/synctest): the waits, probe pauses and the
	// fake engine's health changes run on the bubble's clock.
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
		f := fakeWithImages()
		f.health["api"] = "starting"
		start := time.Now()
		_, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 1 * time.Second})
		if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "inv-api-1") {
			t.Fatalf("want ErrUnhealthy naming inv-api-1, got %v", err)
		}
		if time.Since(start) > 4*time.Second {
			t.Fatalf("timeout of 1s took %v", time.Since(start))
		}
	})
}

// upBundled brings the bundled stack up on a fake engine.
func upBundled(t *testing.T) (*Deployer, *fakeEngine, *Stack, UpOptions) {
	t.Helper()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	d := New(f, nil)
	o := UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}
	if _, err := d.Up(context.Background(), st, o); err != nil {
		t.Fatal(err)
	}
	return d, f, st, o
}

func TestDownKeepsVolumesUnlessAsked(t *testing.T) {
	ctx := context.Background()
	d, f, _, _ := upBundled(t)
	res, err := d.Down(ctx, "inv", DownOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Containers != 2 || res.Networks != 1 || res.Volumes != 0 || len(f.volumes) != 1 {
		t.Fatalf("down: %+v, volumes left %d", res, len(f.volumes))
	}
	res, err = d.Down(ctx, "inv", DownOptions{Volumes: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Volumes != 1 || len(f.volumes) != 0 {
		t.Fatalf("down --volumes: %+v, volumes left %d", res, len(f.volumes))
	}
}

// down stops what depends on others first: the API drains while its
// database still answers.
func TestDownStopsDependentsFirst(t *testing.T) {
	ctx := context.Background()
	d, f, st, o := upBundled(t)
	for _, c := range f.containers {
		if c.name == "inv-api-1" && !strings.HasPrefix(c.cfg.Labels[LabelDependsOn], "db:service_healthy:") {
			t.Errorf("api depends_on label %q", c.cfg.Labels[LabelDependsOn])
		}
	}
	for range 5 { // the order must not depend on map or goroutine order
		if _, err := d.Down(ctx, "inv", DownOptions{}); err != nil {
			t.Fatal(err)
		}
		var stops []string
		for _, c := range f.mutations() {
			if strings.HasPrefix(c, "stop ") {
				stops = append(stops, c)
			}
		}
		if len(stops) != 2 || stops[0] != "stop inv-api-1" || stops[1] != "stop inv-db-1" {
			t.Fatalf("stop order %v, want api then db", stops)
		}
		f.calls = nil
		if _, err := d.Up(ctx, st, o); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStopWavesCycle(t *testing.T) {
	c := func(svc, deps string) container.Summary {
		return container.Summary{Labels: map[string]string{LabelService: svc, LabelDependsOn: deps}}
	}
	waves := stopWaves([]container.Summary{c("a", "b:service_started:false"), c("b", "a:service_started:false"), c("web", "a:service_started:false")})
	if len(waves) != 2 || len(waves[0]) != 1 || waves[0][0].Labels[LabelService] != "web" || len(waves[1]) != 2 {
		t.Fatalf("waves %v: want web, then the a-b cycle together", waves)
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(port))
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	sts, err := d.Status(ctx, "inv")
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 2 || sts[0].Service != "api" || sts[1].Service != "db" {
		t.Fatalf("status %+v", sts)
	}
	want := "127.0.0.1:" + strconv.Itoa(port) + "->8000/tcp"
	if sts[0].Health != "healthy" || sts[0].State != "running" || len(sts[0].Ports) != 1 || sts[0].Ports[0] != want {
		t.Fatalf("api status %+v, want running healthy %s", sts[0], want)
	}
}

func TestPlan(t *testing.T) {
	st := loadStack(t, "services:\n  web:\n    image: nginx\n    scale: 2\n", nil)
	s := st.Project.Services["web"]
	mk := func(n int, hash, imageID, state string) container.Summary {
		return container.Summary{Names: []string{"/t-web-" + strconv.Itoa(n)}, ImageID: imageID, State: state,
			Labels: map[string]string{LabelContainerNumber: strconv.Itoa(n), LabelConfigHash: hash}}
	}
	tests := []struct {
		name     string
		existing []container.Summary
		want     []Action
	}{
		{"nothing yet", nil, []Action{ActionCreate, ActionCreate}},
		{"unchanged", []container.Summary{mk(1, "h", "img", "running"), mk(2, "h", "img", "running")}, []Action{ActionKeep, ActionKeep}},
		{"config changed", []container.Summary{mk(1, "old", "img", "running"), mk(2, "h", "img", "running")}, []Action{ActionRecreate, ActionKeep}},
		{"image changed", []container.Summary{mk(1, "h", "img0", "running"), mk(2, "h", "img", "running")}, []Action{ActionRecreate, ActionKeep}},
		{"stopped", []container.Summary{mk(1, "h", "img", "exited"), mk(2, "h", "img", "running")}, []Action{ActionStart, ActionKeep}},
		{"one missing", []container.Summary{mk(2, "h", "img", "running")}, []Action{ActionCreate, ActionKeep}},
		{"scaled down", []container.Summary{mk(1, "h", "img", "running"), mk(2, "h", "img", "running"), mk(3, "h", "img", "running")}, []Action{ActionKeep, ActionKeep, ActionRemove}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := planContainers(st.Project, s, "h", imageState{id: "img"}, tt.existing, rollout{}, nil)
			var got []Action
			for _, s := range steps {
				got = append(got, s.Action)
			}
			if strings.Join(actionStrings(got), ",") != strings.Join(actionStrings(tt.want), ",") {
				t.Fatalf("plan %v, want %v", got, tt.want)
			}
		})
	}
}

func actionStrings(as []Action) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(a)
	}
	return out
}

func TestDependencyOrder(t *testing.T) {
	st := loadStack(t, `services:
  a: {image: x, depends_on: [b, c]}
  b: {image: x, depends_on: [c]}
  c: {image: x}
  d: {image: x}
`, nil)
	order, err := dependencyOrder(st.Project)
	if err != nil {
		t.Fatal(err)
	}
	// By level, then by name: c and d have no dependencies, b needs c, a
	// needs b.
	if got := strings.Join(order, ","); got != "c,d,b,a" {
		t.Fatalf("order %s, want c,d,b,a", got)
	}
}

// TestDependencyOrderFollowsTheFile: within a level, services start in the
// order the file lists them (a server listed before its clients starts
// first, as with docker-compose), whatever their names.
func TestDependencyOrderFollowsTheFile(t *testing.T) {
	st := loadStack(t, `services:
  server: {image: x}
  client: {image: x}
  worker: {image: x, depends_on: [server]}
  aaa: {image: x}
`, nil)
	order, err := dependencyOrder(st.Project)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "server,client,aaa,worker" {
		t.Fatalf("order %s, want server,client,aaa,worker", got)
	}
	if got := serviceKeys([]byte("services: [1]")); got != nil {
		t.Fatalf("keys of a malformed file: %v", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// freePort returns a TCP port that is free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
