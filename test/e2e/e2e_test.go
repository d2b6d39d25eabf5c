// Package e2e runs invdeploy end to end against the real local Docker engine:
// the bundled stack's lifecycle, a plain compose project, preflight refusals
// and the health gate. Each test uses its own project name and free ports
// (never 8000, which `make up` uses) and removes everything it created.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/testenv"
)

var (
	localBinOnce sync.Once
	localBinPath string
	localBinErr  error
)

// localRoot is the repository root (the bundled stack's build context).
func localRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildBinaries builds invdeploy and, beside it as `make build` does,
// the static invdeploy-proxy it rolls services with.
func buildBinaries(root, dir string) error {
	for _, pkg := range []string{"invdeploy", "invdeploy-proxy"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, pkg), "./cmd/"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// localBinary builds ./cmd/invdeploy (and the proxy beside it) once for the
// local end-to-end tests.
func localBinary(t *testing.T) string {
	t.Helper()
	localBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "invdeploy-e2e-bin")
		if err != nil {
			localBinErr = err
			return
		}
		localBinPath = filepath.Join(dir, "invdeploy")
		localBinErr = buildBinaries(localRoot(), dir)
	})
	if localBinErr != nil {
		t.Fatal(localBinErr)
	}
	return localBinPath
}

// localEnv is one test's world: the invdeploy binary, a config dir for generated
// secrets, the outputs of every command (searched for secrets), a client.
type localEnv struct {
	t       *testing.T
	bin     string
	xdg     string
	extra   []string
	outputs bytes.Buffer
	docker  *client.Client
}

func newLocalEnv(t *testing.T, images ...string) *localEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end against the real engine: not with -short")
	}
	testenv.NeedDocker(t)
	bin := localBinary(t)
	c, err := deployer.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, img := range images {
		if _, err := c.ImageInspect(context.Background(), img); err != nil {
			testenv.Missing(t, "image "+img+" (make images builds it)")
		}
	}
	return &localEnv{t: t, bin: bin, xdg: t.TempDir(), docker: c}
}

type localResult struct {
	stdout, stderr string
	code           int
}

// run runs invdeploy in dir with the test's environment.
func (e *localEnv) run(dir string, args ...string) localResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+e.xdg)
	cmd.Env = append(cmd.Env, e.extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run invdeploy %v: %v", args, err)
	}
	e.outputs.WriteString(stdout.String())
	e.outputs.WriteString(stderr.String())
	return localResult{stdout.String(), stderr.String(), code}
}

func (e *localEnv) mustRun(dir string, args ...string) localResult {
	e.t.Helper()
	r := e.run(dir, args...)
	if r.code != 0 {
		e.t.Fatalf("invdeploy %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, lastLines(r.stderr, 40))
	}
	return r
}

// cleanup removes the project with down --volumes at the end of the test.
func (e *localEnv) cleanup(project string) {
	e.t.Cleanup(func() {
		// -p alone needs no compose file: run where dir's removal is no matter.
		r := e.run(os.TempDir(), "down", "-p", project, "--volumes", "--yes", "-q")
		if r.code != 0 {
			e.t.Errorf("cleanup down --volumes of %s: exit %d: %s", project, r.code, r.stderr)
		}
		if n := e.objects(project); n != 0 {
			e.t.Errorf("cleanup left %d objects of project %s", n, project)
		}
	})
}

// objects counts the containers, networks and volumes labelled with project.
func (e *localEnv) objects(project string) int {
	e.t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project))
	cs, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	ns, err := e.docker.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	vs, err := e.docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(cs) + len(ns) + len(vs.Volumes)
}

// serviceImage is the image (ID) a running container of service runs.
func (e *localEnv) serviceImage(project, service string) string {
	e.t.Helper()
	cs, err := e.docker.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", deployer.LabelProject+"="+project), filters.Arg("label", deployer.LabelService+"="+service))})
	if err != nil || len(cs) == 0 {
		e.t.Fatalf("no running container of %s/%s (%v)", project, service, err)
	}
	return cs[0].ImageID
}

func (e *localEnv) containerIDs(project string) map[string]string {
	e.t.Helper()
	cs, err := e.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project))})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cs {
		out[strings.TrimPrefix(c.Names[0], "/")] = c.ID
	}
	return out
}

// assertNoSecret fails when value appears in any output so far, in docker
// inspect of the project's containers, or in the given images' config and
// history.
func (e *localEnv) assertNoSecret(project, value string, images ...string) {
	e.t.Helper()
	if len(value) < 8 {
		e.t.Fatalf("secret canary too short to search for")
	}
	if strings.Contains(e.outputs.String(), value) {
		e.t.Fatal("a secret value appears in invdeploy's output")
	}
	ctx := context.Background()
	for name, id := range e.containerIDs(project) {
		_, raw, err := e.docker.ContainerInspectWithRaw(ctx, id, true)
		if err != nil {
			e.t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(value)) {
			e.t.Fatalf("a secret value appears in docker inspect of %s", name)
		}
		var logs bytes.Buffer
		rc, err := e.docker.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err == nil {
			io.Copy(&logs, rc)
			rc.Close()
		}
		if bytes.Contains(logs.Bytes(), []byte(value)) {
			e.t.Fatalf("a secret value appears in the logs of %s", name)
		}
	}
	for _, img := range images {
		raw, err := e.docker.ImageInspect(ctx, img, client.ImageInspectWithRawResponse(&bytes.Buffer{}))
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := json.Marshal(raw)
		hist, _ := e.docker.ImageHistory(ctx, img)
		h, _ := json.Marshal(hist)
		if bytes.Contains(b, []byte(value)) || bytes.Contains(h, []byte(value)) {
			e.t.Fatalf("a secret value appears in image %s", img)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func project(t *testing.T, prefix string) string {
	return fmt.Sprintf("e2e-%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%100000)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func httpDo(t *testing.T, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func statusJSON(t *testing.T, r localResult) []deployer.ContainerStatus {
	t.Helper()
	var sts []deployer.ContainerStatus
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, r.stdout)
	}
	return sts
}

// TestBundledStack: up -> create an invoice over HTTP -> status all healthy
// -> a second up recreates nothing -> down -> up -> the invoice is still
// there -> down --volumes; the generated password never shows.
func TestBundledStack(t *testing.T) {
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	if _, err := os.Stat(filepath.Join(localRoot(), "Dockerfile")); err != nil {
		testenv.Missing(t, "the repository's Dockerfile (the bundled stack builds the API from it)")
	}
	proj := project(t, "inv")
	port := freePort(t)
	e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(port)}
	e.cleanup(proj)

	r := e.mustRun(localRoot(), "up", "-p", proj)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if !strings.Contains(r.stdout, "Stack "+proj+" is up") || !strings.Contains(r.stdout, "api: "+base+"/") {
		t.Fatalf("up output:\n%s", r.stdout)
	}
	pwFile := filepath.Join(e.xdg, "invdeploy", proj, "db_password")
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated password file %s: %v, mode %v", pwFile, err, fi)
	}
	pw, _ := os.ReadFile(pwFile)

	code, hdr, body := httpDo(t, "POST", base+"/v1/invoices", `{"currency":"EUR","customer":{"name":"Ada Lovelace"},"line_items":[{"description":"Consulting","quantity":2,"unit_amount":15000}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create invoice: %d %s", code, body)
	}
	loc := hdr.Get("Location")
	if loc == "" {
		t.Fatal("create invoice: no Location")
	}

	sts := e.statusWhenHealthy(localRoot(), proj)
	if len(sts) != 3 || countRole(sts, "proxy") != 1 {
		t.Fatalf("status: %d containers, want api, db and api's rollout proxy: %+v", len(sts), sts)
	}
	for _, s := range sts {
		if s.State != "running" || s.Health != "healthy" {
			t.Fatalf("status: %s is %s/%s, want running/healthy", s.Name, s.State, s.Health)
		}
	}

	// Hardening and secret delivery on the real engine.
	ctx := context.Background()
	ids := e.containerIDs(proj)
	for _, svc := range []string{"api", "db"} {
		name := proj + "-" + svc + "-1"
		ins, err := e.docker.ContainerInspect(ctx, ids[name])
		if err != nil {
			t.Fatal(err)
		}
		h := ins.HostConfig
		if !h.ReadonlyRootfs || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" || ins.Config.User == "" || h.Resources.Memory == 0 || h.Resources.NanoCPUs == 0 {
			t.Errorf("%s not hardened: readonly %v cap_drop %v user %q memory %d cpus %d", name, h.ReadonlyRootfs, h.CapDrop, ins.Config.User, h.Resources.Memory, h.Resources.NanoCPUs)
		}
		st, err := e.docker.ContainerStatPath(ctx, ids[name], "/run/secrets/db_password")
		if err != nil {
			t.Fatalf("%s: /run/secrets/db_password: %v", name, err)
		}
		if st.Mode.Perm() != 0o400 {
			t.Errorf("%s: secret mode %v, want 0400", name, st.Mode)
		}
	}

	r = e.mustRun(localRoot(), "up", "-p", proj)
	if !strings.Contains(r.stdout, "nothing changed") {
		t.Fatalf("second up changed something:\n%s\n%s", r.stdout, r.stderr)
	}
	if after := e.containerIDs(proj); fmt.Sprint(after) != fmt.Sprint(ids) {
		t.Fatalf("second up recreated containers: %v -> %v", ids, after)
	}

	e.mustRun(localRoot(), "down", "-p", proj)
	if got := e.containerIDs(proj); len(got) != 0 {
		t.Fatalf("down left containers %v", got)
	}
	e.mustRun(localRoot(), "up", "-p", proj)
	code, _, body = httpDo(t, "GET", base+loc, "")
	if code != http.StatusOK || !strings.Contains(string(body), "Ada Lovelace") {
		t.Fatalf("invoice after down/up: %d %s", code, body)
	}
	e.run(localRoot(), "logs", "-p", proj, "--tail", "50")
	e.assertNoSecret(proj, string(pw), e.serviceImage(proj, "api"))

	e.mustRun(localRoot(), "down", "-p", proj, "--volumes")
	if n := e.objects(proj); n != 0 {
		t.Fatalf("down --volumes left %d objects", n)
	}
}

// TestPlainComposeProject: a seed-style docker-compose.yml (an app built
// from . with a multi-stage Dockerfile, plus postgres:15 with a literal weak
// password) deploys as is on the local engine, with a warning.
func TestPlainComposeProject(t *testing.T) {
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	dir := filepath.Join(localRoot(), "test", "e2e", "testdata", "hello")
	proj := project(t, "hello")
	port := freePort(t)
	e.extra = []string{"HELLO_PORT=" + strconv.Itoa(port)}
	e.cleanup(proj)

	r := e.mustRun(dir, "up", "-p", proj)
	if !strings.Contains(r.stderr, "warning: services.db.environment.POSTGRES_PASSWORD is a weak literal password") {
		t.Fatalf("no weak-password warning:\n%s", r.stderr)
	}
	code, _, body := httpDo(t, "GET", "http://127.0.0.1:"+strconv.Itoa(port)+"/", "")
	if code != 200 || strings.TrimSpace(string(body)) != "hello" {
		t.Fatalf("GET /: %d %q", code, body)
	}
	sts := e.statusWhenHealthy(dir, proj)
	if len(sts) != 3 || countRole(sts, "proxy") != 1 {
		t.Fatalf("status: want app, db and app's rollout proxy: %+v", sts)
	}
	for _, s := range sts {
		if s.State != "running" || (s.Service == "app" && s.Health != "healthy") {
			t.Fatalf("status %+v", s)
		}
	}
	r = e.mustRun(dir, "logs", "-p", proj, "--tail", "5", "db")
	if !strings.Contains(r.stdout, proj+"-db-1 | ") {
		t.Fatalf("logs lack the container prefix:\n%s", r.stdout)
	}
}

// TestPreflightRefusalsLeaveNothing: every refusal exits 3, names the
// problem, and leaves zero containers, networks and volumes.
func TestPreflightRefusalsLeaveNothing(t *testing.T) {
	e := newLocalEnv(t, "postgres:15")
	hello := filepath.Join(localRoot(), "test", "e2e", "testdata", "hello")

	refuse := func(t *testing.T, dir, proj string, want []string, args ...string) {
		t.Helper()
		r := e.run(dir, append([]string{"up", "-p", proj}, args...)...)
		if r.code != 3 {
			t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Fatalf("refusal does not say %q:\n%s", w, r.stderr)
			}
		}
		if n := e.objects(proj); n != 0 {
			t.Fatalf("refusal left %d objects", n)
		}
	}

	t.Run("port held by a process", func(t *testing.T) {
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		e.extra = []string{"HELLO_PORT=" + port}
		refuse(t, hello, project(t, "port"), []string{"port 0.0.0.0:" + port, "is held by e2e.test (pid " + strconv.Itoa(os.Getpid()) + ")"})
	})

	t.Run("port held by a container", func(t *testing.T) {
		port := strconv.Itoa(freePort(t))
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  squat:\n    image: postgres:15\n    command: [\"sleep\", \"300\"]\n    ports: [\"127.0.0.1:"+port+":5432\"]\n"), 0o644)
		holder := project(t, "squat")
		e.cleanup(holder)
		e.mustRun(dir, "up", "-p", holder, "--wait-timeout", "1m")
		e.extra = []string{"HELLO_PORT=" + port}
		refuse(t, hello, project(t, "port2"), []string{"port 0.0.0.0:" + port, "held by container " + holder + "-squat-1"})
	})

	t.Run("secret missing, weak (world-readable only warns locally)", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  db:\n    image: postgres:15\n    secrets: [pw, weak, open]\nsecrets:\n  pw: {file: ./missing.txt}\n  weak: {file: ./weak.txt}\n  open: {file: ./open.txt}\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "weak.txt"), []byte("changeme"), 0o600)
		os.WriteFile(filepath.Join(dir, "open.txt"), []byte("a-long-strong-but-open-value"), 0o644)
		os.Chmod(filepath.Join(dir, "open.txt"), 0o644)
		refuse(t, dir, project(t, "secret"), []string{"secret pw: file", "is missing", "secret weak: is a known weak default", "warning: secret open: file", "world-readable (mode 0644)"})
	})

	t.Run("secret from a device, a FIFO, /proc", func(t *testing.T) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, "pw.fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  db:\n    image: postgres:15\n    secrets: [zero, fifo, env]\nsecrets:\n  zero: {file: /dev/zero}\n  fifo: {file: ./pw.fifo}\n  env: {file: /proc/self/environ}\n"), 0o644)
		refuse(t, dir, project(t, "devsec"), []string{"secret zero: file /dev/zero is under /dev", "secret fifo: file", "is a FIFO (named pipe), not a regular file", "secret env: file /proc/self/environ is under /proc"})
	})

	t.Run("secret through a symlinked directory would enter the build context", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "app", "config"), 0o755)
		os.WriteFile(filepath.Join(dir, "app", "Dockerfile"), []byte("FROM postgres:15\nCOPY . /app\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "app", "config", "pw.txt"), []byte("a-long-strong-secret-value"), 0o600)
		os.Symlink(filepath.Join("app", "config"), filepath.Join(dir, "secrets"))
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  x:\n    build: ./app\n    secrets: [pw]\nsecrets:\n  pw: {file: ./secrets/pw.txt}\n"), 0o644)
		refuse(t, dir, project(t, "ctxlink"), []string{"secret file (through a symlink, at ", "would enter the build context of services.x", "add config/pw.txt to"})
		if r := e.run(dir, "check", "-p", project(t, "ctxlink")); r.code != 3 || !strings.Contains(r.stderr, "through a symlink") {
			t.Fatalf("check: exit %d, want 3 naming the symlinked secret\n%s", r.code, r.stderr)
		}
	})

	t.Run("image neither present nor pullable", func(t *testing.T) {
		dir := t.TempDir()
		// A loopback registry address nobody listens on: the pull fails at once.
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  x:\n    image: 127.0.0.1:9/invdeploy-e2e-missing:1\n"), 0o644)
		refuse(t, dir, project(t, "image"), []string{"image 127.0.0.1:9/invdeploy-e2e-missing:1", "cannot be pulled"})
	})

	t.Run("secret file would enter the build context", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM postgres:15\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("a-long-strong-secret-value"), 0o600)
		os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  x:\n    build: .\n    secrets: [pw]\nsecrets:\n  pw: {file: ./pw.txt}\n"), 0o644)
		refuse(t, dir, project(t, "ctx"), []string{"secret file would enter the build context", "add pw.txt to"})
	})

	t.Run("engine unreachable", func(t *testing.T) {
		refuse(t, hello, project(t, "engine"), []string{"does not answer"}, "-H", "unix://"+filepath.Join(t.TempDir(), "none.sock"))
	})
}

// TestUnhealthyExits4 is the health gate: a container that never becomes
// healthy makes up exit 4 with its last log lines.
func TestUnhealthyExits4(t *testing.T) {
	e := newLocalEnv(t, "postgres:15")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(`services:
  sick:
    image: postgres:15
    command: ["bash", "-c", "echo canary-log-line-41; echo 'FATAL: canary cause'; for i in $$(seq 22); do echo GET /readyz 503 $$i; done; sleep 300"]
    healthcheck:
      test: ["CMD", "bash", "-c", "echo canary-health-output; false"]
      interval: 1s
      retries: 2
`), 0o644)
	proj := project(t, "sick")
	e.cleanup(proj)
	r := e.run(dir, "up", "-p", proj, "--wait-timeout", "1m")
	if r.code != 4 {
		t.Fatalf("exit %d, want 4\n%s", r.code, r.stderr)
	}
	for _, w := range []string{"deployed but unhealthy", proj + "-sick-1", "last 20 log lines", "canary-log-line-41", "exit 1: canary-health-output", "22 probe access-log lines left out"} {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("unhealthy error does not say %q:\n%s", w, r.stderr)
		}
	}
	// The cause comes first: the error line before the tail, the probe
	// lines left out of it.
	if i, j := strings.Index(r.stderr, "FATAL: canary cause"), strings.Index(r.stderr, "last 20 log lines"); i < 0 || i > j || strings.Contains(r.stderr, "GET /readyz 503") {
		t.Fatalf("the error line is not shown first, or probe lines are in the tail:\n%s", r.stderr)
	}
}

// countRole counts the status lines of containers with role ("proxy").
func countRole(sts []deployer.ContainerStatus, role string) int {
	n := 0
	for _, s := range sts {
		if s.Role == role {
			n++
		}
	}
	return n
}
