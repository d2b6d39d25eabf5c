package deployer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRolloutRules(t *testing.T) {
	for _, tt := range []struct {
		name, svc string
		proxy     bool
		why, err  string
	}{
		{"built stateless app", `build: .
    image: x
    ports: ["8080:80"]`, true, "rolled behind the rollout proxy", ""},
		{"image with a health path", `image: x
    ports: ["8080:80"]
    x-invdeploy: {health_path: /up}`, true, "rolled behind the rollout proxy", ""},
		{"image that may not be HTTP", `image: redis:7
    ports: ["6379:6379"]`, false, "runs an image invdeploy does not build", ""},
		{"image opted in", `image: x
    ports: ["8080:80"]
    x-invdeploy: {rollout: proxy}`, true, "rolled behind the rollout proxy", ""},
		{"named volume", `image: x
    ports: ["8080:80"]
    volumes: ["data:/d"]`, false, "never run twice", ""},
		{"bind mount is not state", `build: .
    image: x
    ports: ["8080:80"]
    volumes: ["./conf:/conf:ro"]`, true, "", ""},
		{"no port", `image: x`, false, "publishes no port", ""},
		{"two ports", `image: x
    ports: ["8080:80", "8443:443"]`, false, "publishes 2 ports", ""},
		{"udp", `image: x
    ports: ["5353:53/udp"]`, false, "udp", ""},
		{"scale", `image: x
    ports: ["80"]
    scale: 2`, false, "", ""},
		{"container_name", `image: x
    container_name: fixed
    ports: ["8080:80"]`, false, "container_name", ""},
		{"opt out", `image: x
    ports: ["8080:80"]
    x-invdeploy: {rollout: recreate}`, false, "rollout is recreate", ""},
		{"insist on a stateful one", `image: x
    ports: ["8080:80"]
    volumes: ["data:/d"]
    x-invdeploy: {rollout: proxy}`, false, "", "rollout is proxy, but the service has the named volume data"},
		{"typo", `image: x
    ports: ["8080:80"]
    x-invdeploy: {rolout: proxy}`, false, "", `unknown key "rolout"`},
		{"bad path", `image: x
    ports: ["8080:80"]
    x-invdeploy: {health_path: healthz}`, false, "", "health_path"},
		{"bad drain", `image: x
    ports: ["8080:80"]
    x-invdeploy: {drain_timeout: soon}`, false, "", "drain_timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := loadStack(t, "services:\n  w:\n    "+tt.svc+"\nvolumes: {data: {}}\n", map[string]string{"conf": "x", "Dockerfile": "FROM scratch\n"})
			ro, err := rolloutOf(st.Project.Services["w"], true)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "services.w") {
					t.Fatalf("want error with %q naming services.w, got %v", tt.err, err)
				}
				// Preflight refuses it too (exit 3, nothing changed).
				f := newFakeEngine()
				f.images["x"] = "sha256:x"
				if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{}); !errors.Is(err, ErrPreflight) {
					t.Fatalf("preflight: want ErrPreflight, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ro.Proxy != tt.proxy || !strings.Contains(ro.Why, tt.why) {
				t.Fatalf("got proxy=%v why=%q", ro.Proxy, ro.Why)
			}
			if ro.Proxy {
				if off, _ := rolloutOf(st.Project.Services["w"], false); off.Proxy || !strings.Contains(off.Why, "no rollout proxy") {
					t.Fatalf("without a proxy image: %+v", off)
				}
			}
		})
	}
}

// fakeProxyBinary is a file standing in for invdeploy-proxy whose image
// the fake engine already has (EnsureProxyImage then only inspects).
func fakeProxyBinary(t *testing.T, f *fakeEngine) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "invdeploy-proxy")
	body := []byte("not really a proxy")
	if err := os.WriteFile(p, body, 0o755); err != nil {
		t.Fatal(err)
	}
	f.images[proxyImageRef(body)] = "sha256:proxy"
	return p
}

// TestUpRollsBehindTheProxy: the planner and the apply steps of a roll on
// the fake engine: the first up creates the proxy, then the api behind it;
// a change is planned as roll (dry run changes nothing) and rolled: new
// container, switch, old removed, new renamed; db untouched. A switch the
// proxy refuses removes the new container and keeps the old one (exit 4).
func TestUpRollsBehindTheProxy(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(port))
	f := fakeWithImages()
	f.probes["api"] = fakeProbe{code: 0}
	bin := fakeProxyBinary(t, f)
	d := New(f, nil)
	o := UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second, ProxyBinary: bin}

	plan, err := d.Plan(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.mutations()) != 0 {
		t.Fatalf("dry run changed things: %v", f.mutations())
	}
	for _, s := range plan.Services {
		want := map[string]Action{"db": ActionCreate, "api": ActionCreate}[s.Service]
		if s.Action != want || (s.Service == "api") != (s.Rollout == "proxy") || (s.Service == "api" && s.Proxy != ActionCreate) {
			t.Fatalf("first plan: %+v", s)
		}
	}

	if _, err := d.Up(ctx, st, o); err != nil {
		t.Fatalf("first up: %v", err)
	}
	calls := strings.Join(f.mutations(), "\n")
	for _, want := range []string{"create inv-api-proxy", "create inv-api-1", "exec inv-api-proxy /invdeploy-proxy deploy --target api-"} {
		if !strings.Contains(calls, want) {
			t.Fatalf("first up: no %q in\n%s", want, calls)
		}
	}
	for _, c := range f.containers {
		if c.name == "inv-api-1" && len(c.host.PortBindings) != 0 {
			t.Fatalf("the api publishes %v itself; the proxy owns the port", c.host.PortBindings)
		}
	}

	// A change: planned as roll, then rolled.
	st2, err := Load(ctx, LoadOptions{WorkingDir: st.Project.WorkingDir, ProjectName: "inv", Env: []string{"INVOICING_API_PORT=" + strconv.Itoa(port)}})
	if err != nil {
		t.Fatal(err)
	}
	api := st2.Project.Services["api"]
	v := "1"
	api.Environment["EXTRA"] = &v
	st2.Project.Services["api"] = api
	before := len(f.mutations())
	plan, err = d.Plan(ctx, st2, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.mutations()) != before {
		t.Fatalf("dry run changed things: %v", f.mutations()[before:])
	}
	for _, s := range plan.Services {
		want := map[string]Action{"db": ActionKeep, "api": ActionRoll}[s.Service]
		if s.Action != want || (s.Service == "api" && (s.Proxy != ActionKeep || s.Containers[0].Reason != "configuration changed")) {
			t.Fatalf("second plan: %+v", s)
		}
	}
	res, err := d.Up(ctx, st2, o)
	if err != nil {
		t.Fatalf("roll: %v", err)
	}
	got := strings.Join(f.mutations()[before:], "\n")
	next := strings.Index(got, "create inv-api-1-next-")
	sw := strings.Index(got, "/invdeploy-proxy deploy")
	stop := strings.Index(got, "stop inv-api-1\n")
	if next < 0 || sw < next || stop < sw || !strings.Contains(got, "rename inv-api-1-next-") || strings.Contains(got, "inv-db-1") || strings.Contains(got, "create inv-api-proxy") {
		t.Fatalf("roll: want new beside old, switch, then old stopped and new renamed, db and proxy untouched:\n%s", got)
	}
	if len(res.Switches) != 1 || res.Switches[0].Container != "inv-api-1" {
		t.Fatalf("switches %+v", res.Switches)
	}

	// The proxy refuses the next one: the new container goes, the old stays.
	v2 := "2"
	api.Environment["EXTRA"] = &v2
	st2.Project.Services["api"] = api
	f.probes["api"] = fakeProbe{code: 1}
	before = len(f.mutations())
	_, err = d.Up(ctx, st2, o)
	var ue *UnhealthyError
	if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "rolled back: inv-api-1 keeps serving") {
		t.Fatalf("refused switch: want UnhealthyError naming the old container, got %v", err)
	}
	got = strings.Join(f.mutations()[before:], "\n")
	if strings.Contains(got, "stop inv-api-1\n") || !strings.Contains(got, "remove inv-api-1-next-") {
		t.Fatalf("refused switch: want the new one removed and the old one kept:\n%s", got)
	}
}

// TestRollbackRollsOnlyWhatChanged: a rollback to the release before puts
// the api's earlier image back through the proxy and leaves the database,
// whose image is the same, exactly as it runs.
func TestRollbackRollsOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	env := []string{"INVOICING_API_PORT=" + strconv.Itoa(port)}
	st, cfgDir := bundledStack(t, append(env, "INVOICING_API_TAG=one")...)
	f := fakeWithImages()
	f.probes["api"] = fakeProbe{code: 0}
	d := New(f, nil)
	o := UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second, ProxyBinary: fakeProxyBinary(t, f), RecordCommand: "up"}
	if _, err := d.Up(ctx, st, o); err != nil {
		t.Fatalf("release 1: %v", err)
	}
	one := f.images["invoicing-api:one"]
	st2, err := Load(ctx, LoadOptions{WorkingDir: st.Project.WorkingDir, ProjectName: "inv", Env: append(env, "INVOICING_API_TAG=two")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Up(ctx, st2, o); err != nil {
		t.Fatalf("release 2: %v", err)
	}
	if f.images["invoicing-api:two"] == one {
		t.Fatal("the fake built the same image twice")
	}
	before := len(f.mutations())
	// A release that does not exist is a wrong argument (exit 2), and
	// nothing is changed.
	if _, _, err := d.Rollback(ctx, st2, RollbackOptions{To: 99, Up: o}); !IsInvalid(err) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "kept: 2, 1") {
		t.Fatalf("rollback --to 99: want an invalid request naming the kept releases, got %v", err)
	}
	if n := len(f.mutations()); n != before {
		t.Fatalf("rollback --to 99 changed the engine: %v", f.mutations()[before:])
	}
	o.RecordCommand = ""
	rel, res, err := d.Rollback(ctx, st2, RollbackOptions{Up: o})
	if err != nil || rel.Number != 1 {
		t.Fatalf("rollback: release %+v, %v", rel, err)
	}
	got := strings.Join(f.mutations()[before:], "\n")
	if strings.Contains(got, "inv-db-1") {
		t.Fatalf("rollback touched the database:\n%s", got)
	}
	for _, s := range res.Steps {
		want := map[string]Action{"db": ActionKeep, "api": ActionRoll}[s.Service]
		if s.Action != want {
			t.Fatalf("rollback step %+v, want db kept and api rolled", s)
		}
	}
	for _, c := range f.containers {
		if c.name == "inv-api-1" && c.imageID != one {
			t.Fatalf("after rollback the api runs %s, want release 1's %s", c.imageID, one)
		}
	}
}
