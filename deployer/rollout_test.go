package deployer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
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
		{"no port", `image: x`, false, "publishes no port and exposes none", ""},
		{"two ports", `image: x
    ports: ["8080:80", "8443:443"]`, false, "publishes 2 ports", ""},
		{"reached by name on one exposed port", `build: .
    image: x
    expose: ["8080"]`, true, "reached by name on port 8080", ""},
		{"exposes two ports", `build: .
    image: x
    expose: ["8080", "9090"]`, false, "exposes more than one port", ""},
		{"exposes a range", `build: .
    image: x
    expose: ["8080-8081"]`, false, "exposes more than one port", ""},
		{"publishes one, exposes another", `build: .
    image: x
    ports: ["8080:80"]
    expose: ["9090"]`, false, "is reached on port 80 and exposes 9090", ""},
		{"publishes one, exposes the same", `build: .
    image: x
    ports: ["8080:80"]
    expose: ["80"]`, true, "publishes 8080:80", ""},
		{"exposed udp", `build: .
    image: x
    expose: ["53/udp"]`, false, "exposes a udp port", ""},
		{"fixed address", `build: .
    image: x
    ports: ["8080:80"]
    networks: {n: {ipv4_address: 172.31.9.9}}`, false, "has a fixed address on network n", ""},
		{"exposed image with a health path", `image: x
    expose: ["80"]
    x-invdeploy: {health_path: /up}`, true, "reached by name", ""},
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
			st := loadStack(t, "services:\n  w:\n    "+tt.svc+"\nvolumes: {data: {}}\nnetworks: {n: {ipam: {config: [{subnet: 172.31.9.0/24}]}}}\n", map[string]string{"conf": "x", "Dockerfile": "FROM scratch\n"})
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
	for _, want := range []string{"create inv-api-proxy", "create inv-api-1", "exec inv-api-proxy /invdeploy-proxy deploy --target invdeploy-"} {
		if !strings.Contains(calls, want) {
			t.Fatalf("first up: no %q in\n%s", want, calls)
		}
	}
	for _, c := range f.containers {
		if c.name == "inv-api-1" && len(c.host.PortBindings) != 0 {
			t.Fatalf("the api publishes %v itself; the proxy owns the port", c.host.PortBindings)
		}
	}
	assertInStackNames(t, f, "inv-api-proxy", "inv-api-1")

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
	assertInStackNames(t, f, "inv-api-proxy", "inv-api-1")

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

// assertInStackNames: on the stack network the proxy answers the service's
// name (and invdeploy-proxy, for Prometheus), never the bare "proxy" a
// user's service may be called; the app container answers only invdeploy's
// names, so a roll does not move the service's name.
func assertInStackNames(t *testing.T, f *fakeEngine, proxy, app string) {
	t.Helper()
	for _, c := range f.containers {
		for n, as := range c.aliases {
			all := strings.Join(as, ",")
			switch c.name {
			case proxy:
				if !slices.Contains(as, "api") || !slices.Contains(as, proxyDiscoveryAlias) || slices.Contains(as, "proxy") {
					t.Fatalf("proxy aliases on %s: %v; want api and %s, not proxy", n, as, proxyDiscoveryAlias)
				}
			case app:
				if slices.Contains(as, "api") || len(as) != 2 || !slices.Contains(as, backendAlias("api")) || !strings.HasPrefix(c.cfg.Labels[LabelBackend], reservedPrefix) {
					t.Fatalf("app container aliases on %s: %s (label %q); want only invdeploy's", n, all, c.cfg.Labels[LabelBackend])
				}
			}
		}
	}
}

// TestRollMovesTheNameToTheProxy: a stack deployed before the proxy held
// the service's name (its proxy lacks the naming label, its container
// answers "api" with an old-style alias) is planned as a proxy recreation
// that says why, then a roll of the container that says why; up performs
// exactly that, the new proxy learns the old backend before the roll
// switches, and afterwards the name is the proxy's.
func TestRollMovesTheNameToTheProxy(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(port))
	f := fakeWithImages()
	f.probes["api"] = fakeProbe{code: 0}
	d := New(f, nil)
	o := UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second, ProxyBinary: fakeProxyBinary(t, f)}
	if _, err := d.Up(ctx, st, o); err != nil {
		t.Fatal(err)
	}
	// Make it look like an older invdeploy's deployment.
	for _, c := range f.containers {
		switch c.name {
		case "inv-api-proxy":
			delete(c.cfg.Labels, LabelNaming)
		case "inv-api-1":
			c.cfg.Labels[LabelBackend] = "api-0a1b2c3d"
		}
	}
	before := len(f.mutations())
	pl, err := d.Plan(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, op := range pl.Ops {
		kinds = append(kinds, string(op.Kind)+" "+op.Target+": "+op.Reason)
	}
	got := strings.Join(kinds, "\n")
	if !strings.Contains(got, "proxy-recreate inv-api-proxy: it takes over the service's name from") ||
		!strings.Contains(got, "container-roll inv-api-1: answers the service's name on the stack network itself") ||
		strings.Index(got, "proxy-recreate") > strings.Index(got, "container-roll") {
		t.Fatalf("plan:\n%s", got)
	}
	if len(f.mutations()) != before {
		t.Fatalf("dry run changed things: %v", f.mutations()[before:])
	}
	res, err := d.Up(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(f.mutations()[before:], "\n")
	old := strings.Index(calls, "deploy --target api-0a1b2c3d:8000")
	next := strings.Index(calls, "deploy --target invdeploy-")
	if old < 0 || next < old || !strings.Contains(calls, "rename inv-api-1-next-") {
		t.Fatalf("want the new proxy to serve the old backend, then the roll:\n%s", calls)
	}
	var did []string
	for _, op := range res.Ops {
		did = append(did, string(op.Kind)+" "+op.Target+": "+op.Reason)
	}
	if strings.Join(did, "\n") != got {
		t.Fatalf("up did\n%s\nthe plan said\n%s", strings.Join(did, "\n"), got)
	}
	assertInStackNames(t, f, "inv-api-proxy", "inv-api-1")
	if pl, err := d.Plan(ctx, st, o); err != nil || pl.Changes() {
		t.Fatalf("after the move: %v, %+v", err, pl.Ops)
	}
}

// TestReservedNamesRefused: a service, an alias or a container_name in
// invdeploy's names is refused at preflight; a service named proxy is not.
func TestReservedNamesRefused(t *testing.T) {
	for _, tt := range []struct{ compose, refused string }{
		{"services:\n  proxy:\n    image: x\n", ""},
		{"services:\n  invdeploy-proxy:\n    image: x\n", "services.invdeploy-proxy"},
		{"services:\n  web:\n    image: x\n    networks: {default: {aliases: [Invdeploy-Proxy]}}\n", "services.web.networks.default.aliases"},
		{"services:\n  web:\n    image: x\n    container_name: inv-api-proxy\n  api:\n    image: x\n", "services.web.container_name"},
	} {
		st := loadStack(t, tt.compose, nil)
		st.Project.Name = "inv"
		f := newFakeEngine()
		f.images["x"] = "sha256:x"
		rep, err := New(f, nil).Check(context.Background(), st, CheckOptions{})
		if tt.refused == "" {
			if err != nil {
				t.Fatalf("%s: %v", tt.compose, err)
			}
			continue
		}
		if !errors.Is(err, ErrPreflight) || len(rep.Problems) != 1 || rep.Problems[0].Subject != tt.refused {
			t.Fatalf("%s: want one refusal of %s, got %v %+v", tt.compose, tt.refused, err, rep)
		}
	}
}
