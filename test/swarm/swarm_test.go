// Package swarm runs `invdeploy swarm` end to end against a real 3-node Docker
// Swarm: three simulated EC2 hosts (dockerd + sshd each, in network
// namespaces on one Linux bridge) from test/testbed, shared by every case of
// TestSwarm as its subtests, in order (each builds on the swarm the previous
// one left). Traffic goes only to the bed's addresses.
package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/test/testbed"
)

// world is the shared state of TestSwarm's cases.
type world struct {
	bed *testbed.Swarm
	bin string
	xdg string
	// outputs collects everything invdeploy printed, searched for secrets.
	outputs bytes.Buffer
	mu      sync.Mutex
}

type result struct {
	stdout, stderr string
	code           int
}

func (w *world) sshFlags() []string {
	return []string{"-i", w.bed.SSHKey, "--known-hosts", w.bed.KnownHosts, "--ssh-config", "none"}
}

// run runs invdeploy from the repository root (the bundled stack's build
// context) with the bed's SSH flags after the subcommand words.
func (w *world) run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	words := 0
	for words < len(args) && !strings.HasPrefix(args[words], "-") {
		words++
	}
	full := append(append(append([]string{}, args[:words]...), w.sshFlags()...), args[words:]...)
	cmd := exec.CommandContext(ctx, w.bin, full...)
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+w.xdg)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run invdeploy %v: %v", args, err)
	}
	w.mu.Lock()
	w.outputs.WriteString(r.stdout + r.stderr)
	w.mu.Unlock()
	return r
}

// must runs invdeploy and fails the test unless it exits with want.
func (w *world) must(t *testing.T, want int, env []string, args ...string) result {
	t.Helper()
	r := w.run(t, env, args...)
	if r.code != want {
		t.Fatalf("invdeploy %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// node is a direct client of node i's engine (test inspection only).
func (w *world) node(t *testing.T, i int) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost("unix://"+w.bed.Nodes[i].Socket), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func buildBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "invdeploy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/invdeploy")
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build invdeploy: %v\n%s", err, out)
	}
	return bin
}

// TestSwarm brings up one 3-host bed and runs the swarm cases on it in order.
func TestSwarm(t *testing.T) {
	bed := testbed.StartSwarm(t)
	w := &world{bed: bed, bin: buildBinary(t), xdg: t.TempDir()}
	localSwarm := localSwarmState(t)

	ok := t.Run("init", func(t *testing.T) { testInit(t, w) })
	if !ok {
		t.Fatal("swarm init failed: the other cases need the swarm")
	}

	t.Run("up", func(t *testing.T) { testUp(t, w) })

	if got := localSwarmState(t); got != localSwarm {
		t.Errorf("this machine's engine went from swarm state %q to %q: the bed leaked to it", localSwarm, got)
	}
}

func localSwarmState(t *testing.T) string {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatalf("local engine info: %v", err)
	}
	return string(info.Swarm.LocalNodeState)
}

// testInit: 1 manager + 1 worker, then the second worker joins alone, then a
// re-run has nothing to do; the join tokens are never printed; 0.0.0.0/0 as
// the cluster source is refused before anything is contacted.
func testInit(t *testing.T, w *world) {
	n := w.bed.Nodes
	r := w.must(t, 3, nil, "swarm", "init", "--manager", n[0].URL(), "--cluster-cidr", "0.0.0.0/0")
	if !strings.Contains(r.stderr, "2377") {
		t.Errorf("the refusal does not name port 2377:\n%s", r.stderr)
	}
	if info, err := w.node(t, 0).Info(context.Background()); err != nil || info.Swarm.LocalNodeState != "inactive" {
		t.Fatalf("after a refused init, node 1 is %q (%v), want inactive", info.Swarm.LocalNodeState, err)
	}
	w.must(t, 3, nil, "swarm", "init", "--manager", n[0].URL(), "--manager", n[1].URL())

	start := time.Now()
	r = w.must(t, 0, nil, "swarm", "init", "--manager", n[0].URL(), "--worker", n[1].URL())
	t.Logf("swarm of 2 in %s", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"initialised", "joined", "tcp 2377", "udp 4789", "udp 7946", "tcp 7946"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("first init output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = w.must(t, 0, nil, "swarm", "init", "--manager", n[0].URL(), "--worker", n[1].URL(), "--worker", n[2].URL(),
		"--cluster-cidr", w.bed.Gateway+"/24", "--app-port", "18700")
	if got := strings.Count(r.stdout, "joined"); got != 1 || !strings.Contains(r.stdout, n[2].Addr) {
		t.Errorf("second init joined %d hosts, want only %s:\n%s", got, n[2].Addr, r.stdout)
	}
	if strings.Contains(r.stdout, "initialised") {
		t.Errorf("second init initialised a swarm again:\n%s", r.stdout)
	}
	r = w.must(t, 0, nil, "swarm", "init", "--manager", n[0].URL(), "--worker", n[1].URL(), "--worker", n[2].URL())
	if !strings.Contains(r.stdout, "Nothing to do") || strings.Contains(r.stdout, "joined") {
		t.Errorf("third init was not a no-op:\n%s", r.stdout)
	}

	mgr := w.node(t, 0)
	nodes, err := mgr.NodeList(context.Background(), dswarm.NodeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, nd := range nodes {
		roles[nd.Description.Hostname] = string(nd.Spec.Role) + "/" + string(nd.Status.State)
	}
	want := map[string]string{"sw1": "manager/ready", "sw2": "worker/ready", "sw3": "worker/ready"}
	if fmt.Sprint(roles) != fmt.Sprint(want) {
		t.Errorf("nodes = %v, want %v", roles, want)
	}
	sw, err := mgr.SwarmInspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{sw.JoinTokens.Worker, sw.JoinTokens.Manager} {
		if tok == "" || strings.Contains(w.outputs.String(), tok) {
			t.Errorf("a join token is empty or was printed")
		}
	}
}

// api is the bundled stack's API on one node's published port.
func (w *world) api(i int, port int) string {
	return fmt.Sprintf("http://%s:%d", w.bed.Nodes[i].Addr, port)
}

// createInvoice posts a draft through base and returns its path.
func createInvoice(t *testing.T, base string) string {
	t.Helper()
	body := `{"currency":"EUR","customer":{"name":"Swarm"},"line_items":[{"description":"x","quantity":1,"unit_amount":1234}]}`
	resp, err := httpClient.Post(base+"/v1/invoices", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("create invoice through %s: %v", base, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") == "" {
		t.Fatalf("create invoice through %s: %s", base, resp.Status)
	}
	return resp.Header.Get("Location")
}

// readInvoice fails unless base serves the invoice at path.
func readInvoice(t *testing.T, base, path string) {
	t.Helper()
	resp, err := httpClient.Get(base + path)
	if err != nil {
		t.Fatalf("read %s through %s: %v", path, base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"unit_amount":1234`) {
		t.Fatalf("read %s through %s: %s %s", path, base, resp.Status, b)
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// status is `swarm status --output json` by service.
func (w *world) status(t *testing.T, project string) map[string]statusJSON {
	t.Helper()
	r := w.must(t, 0, nil, "swarm", "status", "--host", w.bed.Nodes[0].URL(), "-p", project, "-o", "json")
	var list []statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("status json: %v\n%s", err, r.stdout)
	}
	out := map[string]statusJSON{}
	for _, s := range list {
		out[s.Service] = s
	}
	return out
}

type statusJSON struct {
	Service  string `json:"service"`
	Image    string `json:"image"`
	Running  int    `json:"running"`
	Desired  int    `json:"desired"`
	PinnedTo string `json:"pinned_to"`
	Tasks    []struct {
		Node, State string
	} `json:"tasks"`
}

// testUp: the bundled stack with api at 3 replicas, one per node; an invoice
// created through node 1 is read through node 3; the data survives a new API
// image and swarm down + swarm up; a no-op up changes nothing.
func testUp(t *testing.T, w *world) {
	const project, port = "swup", 18710
	mgr := w.bed.Nodes[0].URL()
	up := func(env []string, extra ...string) result {
		args := append([]string{"swarm", "up", "--host", mgr, "-p", project, "--port", fmt.Sprint(port), "--scale", "api=3"}, extra...)
		return w.must(t, 0, env, args...)
	}
	t.Cleanup(func() { w.run(t, nil, "swarm", "down", "--host", mgr, "-p", project) })

	start := time.Now()
	up(nil)
	t.Logf("cold swarm up: %s", time.Since(start).Round(time.Millisecond))
	st := w.status(t, project)
	nodes := map[string]bool{}
	for _, task := range st["api"].Tasks {
		if task.State == "running" {
			nodes[task.Node] = true
		}
	}
	if st["api"].Running != 3 || len(nodes) != 3 {
		t.Fatalf("api: %d running on %v, want 3 on 3 nodes", st["api"].Running, nodes)
	}
	if st["db"].Running != 1 || st["db"].PinnedTo == "" {
		t.Fatalf("db: %+v, want 1 running and pinned", st["db"])
	}
	inv := createInvoice(t, w.api(0, port))
	readInvoice(t, w.api(2, port), inv)

	start = time.Now()
	r := up(nil)
	t.Logf("warm no-op swarm up: %s", time.Since(start).Round(time.Millisecond))
	if strings.Contains(r.stdout, "updated") || strings.Contains(r.stdout, "created") || strings.Contains(r.stderr, "Creating") {
		t.Errorf("a second up changed something:\n%s\n%s", r.stdout, r.stderr)
	}

	// A new API image (another VERSION baked in): api is updated, db is not.
	tag := fmt.Sprintf("swarm-e2e-%d", time.Now().UnixNano())
	r = up([]string{"VERSION=" + tag, "INVOICING_API_TAG=" + tag}, "--build")
	if !regexp.MustCompile(`(?m)^api\s+updated`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^db\s+unchanged`).MatchString(r.stdout) {
		t.Fatalf("new image: want api updated and db unchanged:\n%s", r.stdout)
	}
	if st := w.status(t, project); st["api"].Image != "invoicing-api:"+tag || st["api"].Running != 3 {
		t.Fatalf("after the new image api is %+v", st["api"])
	}
	readInvoice(t, w.api(1, port), inv)

	w.must(t, 0, nil, "swarm", "down", "--host", mgr, "-p", project)
	if st := w.status(t, project); len(st) != 0 {
		t.Fatalf("after down: %v", st)
	}
	up(nil)
	readInvoice(t, w.api(2, port), inv)
}
