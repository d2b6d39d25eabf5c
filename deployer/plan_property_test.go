package deployer

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// planModel is one state of a compose model the property test deploys:
// each field is something a user changes between two ups.
type planModel struct {
	appBuild   bool   // app has a build section (else it runs app:v1)
	appEnv     string // an environment value of app
	port       int    // app's published port
	appVolume  bool   // app mounts a named volume (then it is recreated, not rolled)
	dbImage    string // db's image
	netLabel   string // a label of network front
	netMTU     string // a driver option of network back
	secret     string // content of the file secret dbpass
	config     string // content of the config appconf
	profile    bool   // the profile that enables extra
	old        bool   // the service old exists (else its container is an orphan)
	pullPolicy string // cache's pull_policy
	scale      int    // worker's scale
}

func (m planModel) compose() string {
	var b strings.Builder
	b.WriteString("services:\n  app:\n")
	if m.appBuild {
		b.WriteString("    build: .\n    image: app:built\n")
	} else {
		b.WriteString("    image: app:v1\n")
	}
	fmt.Fprintf(&b, "    environment: {MODE: %q}\n    ports: [\"127.0.0.1:%d:8080\"]\n    networks: [front]\n    configs: [appconf]\n", m.appEnv, m.port)
	b.WriteString("    x-invdeploy: {health_path: /healthz}\n")
	if m.appVolume {
		b.WriteString("    volumes: [\"logs:/logs\"]\n")
	}
	fmt.Fprintf(&b, "  db:\n    image: %s\n    volumes: [\"data:/data\"]\n    secrets: [dbpass, gen]\n    networks: [back]\n", m.dbImage)
	b.WriteString("  cache:\n    image: cache:1\n    networks: [back]\n")
	if m.pullPolicy != "" {
		fmt.Fprintf(&b, "    pull_policy: %s\n", m.pullPolicy)
	}
	fmt.Fprintf(&b, "  worker:\n    image: app:v1\n    scale: %d\n    depends_on: [db]\n    networks: [front, back]\n", m.scale)
	b.WriteString("  extra:\n    image: cache:1\n    profiles: [p]\n    networks: [back]\n")
	if m.old {
		b.WriteString("  old:\n    image: cache:1\n    networks: [back]\n")
	}
	fmt.Fprintf(&b, "networks:\n  front:\n    labels: {tier: %q}\n  back:\n    driver_opts: {mtu: %q}\n", m.netLabel, m.netMTU)
	b.WriteString("volumes:\n  data: {}\n")
	if m.appVolume {
		b.WriteString("  logs: {}\n")
	}
	b.WriteString("secrets:\n  dbpass: {file: ./dbpass.txt}\n  gen: {environment: GEN_PASSWORD, x-invdeploy-generate: true}\n")
	b.WriteString("configs:\n  appconf: {file: ./app.conf}\n")
	return b.String()
}

func randomModel(r *rand.Rand, port int) planModel {
	pick := func(xs ...string) string { return xs[r.Intn(len(xs))] }
	return planModel{appBuild: r.Intn(2) == 0, appEnv: pick("a", "b"), port: port, appVolume: r.Intn(4) == 0,
		dbImage: pick("postgres:15", "postgres:16"), netLabel: pick("x", "y"), netMTU: pick("1500", "1400"),
		secret: pick("s3cret-one", "s3cret-two"), config: pick("conf=1", "conf=2"), profile: r.Intn(2) == 0,
		old: r.Intn(2) == 0, pullPolicy: pick("", "missing", "always", "refresh"), scale: 1 + r.Intn(2)}
}

// change flips some of m's fields (each with probability 1/3); port is
// the published port to move to.
func (m planModel) change(r *rand.Rand, port int) planModel {
	flip := func() bool { return r.Intn(3) == 0 }
	other := func(cur string, xs ...string) string {
		for _, x := range xs {
			if x != cur {
				return x
			}
		}
		return cur
	}
	if flip() {
		m.appBuild = !m.appBuild
	}
	if flip() {
		m.appEnv = other(m.appEnv, "a", "b")
	}
	if flip() {
		m.appVolume = !m.appVolume
	}
	if flip() {
		m.port = port
	}
	if flip() {
		m.dbImage = other(m.dbImage, "postgres:15", "postgres:16")
	}
	if flip() {
		m.netLabel = other(m.netLabel, "x", "y")
	}
	if flip() {
		m.netMTU = other(m.netMTU, "1500", "1400")
	}
	if flip() {
		m.secret = other(m.secret, "s3cret-one", "s3cret-two")
	}
	if flip() {
		m.config = other(m.config, "conf=1", "conf=2")
	}
	if flip() {
		m.profile = !m.profile
	}
	if flip() {
		m.old = !m.old
	}
	if flip() {
		m.pullPolicy = []string{"", "missing", "always", "refresh"}[r.Intn(4)]
	}
	if flip() {
		m.scale = 3 - m.scale
	}
	return m
}

// load writes m into dir and loads it.
func (m planModel) load(t *testing.T, dir string) *Stack {
	t.Helper()
	writeFiles(t, dir, map[string]string{"compose.yaml": m.compose(), "dbpass.txt": m.secret, "app.conf": m.config,
		"Dockerfile": "FROM golang:1.26-bookworm\n", ".dockerignore": "dbpass.txt\n"})
	var profiles []string
	if m.profile {
		profiles = []string{"p"}
	}
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "prop", Profiles: profiles})
	if err != nil {
		t.Fatalf("load:\n%s\n%v", m.compose(), err)
	}
	return st
}

// opWords is an operation as the dry run shows it.
func opWords(op Op) string {
	return fmt.Sprintf("%s %s %s (%s) if[%s] else[%s] delivers%v", op.Kind, op.Service, op.Target, op.Reason, op.If, op.Else, op.Delivers)
}

// TestPlanIsWhatUpDoes is the property: for random change sets over a
// compose model (env, image, build, network options and labels, volumes,
// secret and config content, ports of a rolled service, profiles, orphans
// with and without --remove-orphans, pull_policy, a stopped container, a
// secret not stored on this machine, a lost delivery record, the rollout
// proxy present, absent or impossible to make), the operations up
// performs are the plan the dry run returned, operation for operation; the
// dry run changes nothing; every engine call that changes something
// belongs to a performed operation; and the next plan is empty but for
// what a dry run cannot know (pulls under pull_policy always/refresh).
func TestPlanIsWhatUpDoes(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("PLAN_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (PLAN_SEED=%d reproduces)", seed, seed)
	r := rand.New(rand.NewSource(seed))
	iterations := 100
	if testing.Short() {
		iterations = 30
	}
	seen := map[string]int{} // operations performed, by kind
	for i := 0; i < iterations; i++ {
		// Virtual time (testing/synctest): the health waits and the proxy's
		// switches take no wall time.
		port, port2 := freePort(t), freePort(t)
		synctest.Test(t, func(t *testing.T) { planProperty(t, r, seed, i, port, port2, seen) })
	}
	t.Logf("operations performed, by kind: %v", seen)
	// The generator reaches every kind of operation (and a condition that
	// did not hold), so the property is not met by plans that are empty.
	if testing.Short() {
		return
	}
	for _, k := range []string{string(OpSecretAdopt), string(OpPull), string(OpBuild), string(OpNetworkRecreate), string(OpVolumeCreate),
		string(OpProxyCreate), string(OpProxyRecreate), string(OpRemove), string(OpCreate), string(OpStart), string(OpRoll), string(OpRecreate), "else"} {
		if seen[k] == 0 {
			t.Errorf("no iteration (seed %d) performed %s: the generator misses a case", seed, k)
		}
	}
}

// planProperty is one iteration of TestPlanIsWhatUpDoes.
func planProperty(t *testing.T, r *rand.Rand, seed int64, i, port, port2 int, seen map[string]int) {
	ctx := context.Background()
	{
		base := randomModel(r, port)
		next := base.change(r, port2)
		mode := r.Intn(3) // the rollout proxy: absent, present, cannot be made
		if i%4 == 0 {
			// Every fourth iteration is about the rolled service: the proxy
			// binary is there, app ends stateless on an unchanged network,
			// and either its port moves (the proxy is recreated), or its
			// configuration changes (it rolls), or it loses its volume (it
			// is recreated once behind a new proxy).
			mode, base.appVolume, next.appVolume, next.netLabel = 1, false, false, base.netLabel
			switch i % 12 {
			case 0:
				next.port = port2
			case 4:
				next.appEnv = map[string]string{"a": "b", "b": "a"}[base.appEnv]
			default:
				base.appVolume = true
			}
		}
		dir, cfgDir := t.TempDir(), t.TempDir()
		f := newFakeEngine()
		for _, ref := range []string{"postgres:15", "postgres:16", "app:v1", "golang:1.26-bookworm"} {
			f.images[ref] = "sha256:" + ref
		}
		f.pullable["cache:1"] = true
		f.probes["app"] = fakeProbe{code: 0}
		proxy := ""
		switch mode {
		case 1:
			proxy = fakeProxyBinary(t, f)
		case 2: // not an executable the engine could run, and no image: cannot be made
			proxy = filepath.Join(t.TempDir(), "invdeploy-proxy")
			writeFiles(t, filepath.Dir(proxy), map[string]string{"invdeploy-proxy": "not an ELF file"})
		}
		d := New(f, nil)
		o := UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second, ProxyBinary: proxy}
		if _, err := d.Up(ctx, base.load(t, dir), o); err != nil {
			t.Fatalf("iteration %d: first up of\n%s\n%v", i, base.compose(), err)
		}

		// What changes beside the file.
		if r.Intn(4) == 0 { // another machine deployed: the generated secret is not stored here
			os.Remove(filepath.Join(cfgDir, "gen"))
		}
		if r.Intn(4) == 0 {
			os.Remove(filepath.Join(cfgDir, deliveryRecordFile))
		}
		if r.Intn(4) == 0 { // a container stopped
			f.mu.Lock()
			for _, c := range f.containers {
				if c.cfg.Labels[LabelService] == "worker" {
					c.state = "exited"
					break
				}
			}
			f.mu.Unlock()
		}
		if r.Intn(3) == 0 { // the registry has a new image
			f.pullIDs["cache:1"] = fmt.Sprintf("sha256:cache-%d", i)
		}
		o.RemoveOrphans = r.Intn(2) == 0
		o.Build = r.Intn(4) == 0
		st := next.load(t, dir)
		what := fmt.Sprintf("iteration %d (seed %d), options %+v, from\n%s\nto\n%s", i, seed, o, base.compose(), next.compose())

		before := len(f.mutations())
		pl, err := d.Plan(ctx, st, o)
		if err != nil {
			t.Fatalf("%s\nplan: %v", what, err)
		}
		if extra := f.mutations()[before:]; len(extra) > 0 {
			t.Fatalf("%s\nthe dry run changed things: %v", what, extra)
		}
		checkSummary(t, what, pl)
		res, err := d.Up(ctx, st, o)
		if err != nil {
			t.Fatalf("%s\nup: %v", what, err)
		}
		var planned, done []string
		for _, op := range pl.Ops {
			planned = append(planned, opWords(op))
		}
		for _, op := range res.Ops {
			done = append(done, opWords(op))
		}
		if !slices.Equal(planned, done) {
			t.Fatalf("%s\nplanned:\n  %s\nperformed:\n  %s", what, strings.Join(planned, "\n  "), strings.Join(done, "\n  "))
		}
		checkCalls(t, what, f.mutations()[before:], res.Ops)
		for _, op := range res.Ops {
			seen[string(op.Kind)]++
			if op.If != "" && op.Result == op.Else {
				seen["else"]++
			}
		}

		o.Build = false // else every plan builds again
		again, err := d.Plan(ctx, st, o)
		if err != nil {
			t.Fatalf("%s\nplan after up: %v", what, err)
		}
		for _, op := range again.Ops {
			if op.Kind != OpPull && op.If == "" {
				t.Fatalf("%s\nafter up the plan still has %s", what, opWords(op))
			}
		}
	}
}

// checkCalls holds the engine's mutating calls of an up to the operations
// it performed: networks, named volumes, pulls, builds, and the service
// and proxy containers created, started and removed.
func checkCalls(t *testing.T, what string, calls []string, ops []Op) {
	t.Helper()
	var want, got []string
	gone := map[string]bool{} // removed with their network: a recreate only creates
	for _, op := range ops {
		switch op.Kind {
		case OpNetworkCreate:
			want = append(want, "network-create "+op.Target)
		case OpNetworkRecreate:
			want = append(want, "network-remove n-"+op.Target, "network-create "+op.Target)
			for _, c := range op.x.remove {
				want = append(want, "remove "+containerName(c))
				gone[c.ID] = true
			}
		case OpVolumeCreate:
			want = append(want, "volume-create "+op.Target)
		case OpPull:
			want = append(want, "pull "+op.Target)
		case OpBuild, OpProxyImage:
			want = append(want, "build")
		case OpProxyCreate:
			want = append(want, "create "+op.Target, "start "+op.Target)
		case OpProxyRecreate:
			want = append(want, "remove "+op.Target, "create "+op.Target, "start "+op.Target)
		case OpProxyStart:
			want = append(want, "start "+op.Target)
		case OpRemove:
			if !gone[op.x.c.ID] {
				want = append(want, "remove "+op.Target)
			}
		}
		switch op.Result {
		case ActionRemove: // above
		case ActionCreate:
			want = append(want, "create "+op.Target, "start "+op.Target)
		case ActionRecreate:
			if !gone[op.x.c.ID] {
				want = append(want, "remove "+op.Target)
			}
			want = append(want, "create "+op.Target, "start "+op.Target)
		case ActionStart:
			want = append(want, "start "+op.Target)
		case ActionRoll:
			want = append(want, "create "+op.x.name, "start "+op.x.name, "remove "+op.Target, "rename "+op.x.name+" "+op.Target)
		case ActionRename:
			want = append(want, "rename "+op.Target+" "+op.x.name)
		}
	}
	for _, c := range calls {
		verb, rest, _ := strings.Cut(c, " ")
		switch {
		case strings.Contains(rest, "-delivery-") || strings.HasSuffix(verb, "-unnamed") || verb == "copy" || verb == "exec" || verb == "stop" || verb == "network-connect":
			// secret delivery, loaders, proxy switches, stops before removal
		case verb == "build":
			got = append(got, "build")
		default:
			got = append(got, c)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("%s\nengine calls do not match the operations performed\nwant (from the operations):\n  %s\ngot:\n  %s", what, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
}

// TestUpLocksOnlyToChange: with the lock, an up whose plan has operations
// takes the project's lock (and plans again under it) before the first
// change; an up with nothing to change only reads it. (A lock held by
// another deploy: lock_test.go and the e2e lock test.)
func TestUpLocksOnlyToChange(t *testing.T) {
	ctx := context.Background()
	st := loadStack(t, "services:\n  web: {image: app:v1}\n", nil)
	f := newFakeEngine()
	f.images["app:v1"] = "sha256:app"
	d := New(f, nil)
	o := UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second, Lock: true}
	res, err := d.Up(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(f.mutations(), "\n")
	lock := strings.Index(calls, "create invdeploy-lock-t")
	if lock < 0 || lock > strings.Index(calls, "network-create") || !strings.Contains(calls, "remove invdeploy-lock-t") || len(res.Ops) != 2 {
		t.Fatalf("first up: want the lock taken before the first change and released; ops %v, calls:\n%s", res.Ops, calls)
	}
	before := len(f.mutations())
	if _, err := d.Up(ctx, st, o); err != nil {
		t.Fatal(err)
	}
	if extra := f.mutations()[before:]; len(extra) > 0 {
		t.Fatalf("a no-op up changed things (the lock?): %v", extra)
	}
}

// checkSummary holds the per-service summary the dry run prints to the
// operations: every container operation is a step of its service with the
// same action, reason and condition, and every step but keep is one.
func checkSummary(t *testing.T, what string, pl *Plan) {
	t.Helper()
	action := map[OpKind]Action{OpCreate: ActionCreate, OpStart: ActionStart, OpRoll: ActionRoll, OpRecreate: ActionRecreate, OpRename: ActionRename, OpRemove: ActionRemove}
	steps := map[string]Step{}
	for _, sp := range pl.Services {
		for _, st := range sp.Containers {
			if st.Action != ActionKeep {
				steps[st.Container] = st
			}
		}
	}
	for _, op := range pl.Ops {
		a, ok := action[op.Kind]
		if !ok || (op.Kind == OpRemove && op.Reason == ReasonOrphan) {
			continue
		}
		st, ok := steps[op.Target]
		if !ok || st.Action != a || st.Reason != op.Reason || st.If != op.If || st.Else != op.Else {
			t.Fatalf("%s\nthe summary does not show %s (step %+v)", what, opWords(op), st)
		}
		delete(steps, op.Target)
	}
	for _, st := range steps {
		t.Fatalf("%s\nthe summary shows %+v, which is no operation", what, st)
	}
}
