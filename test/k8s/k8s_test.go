//go:build k8sbed

// Package k8s_test runs `invdeploy k8s` against a real one-node Kubernetes
// (test/k8sbed) and the test bed's authenticated registry: one bed for the
// package, the cases as subtests of one test, in order.
package k8s_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/test/k8sbed"
	"github.com/invdeploy/invdeploy/test/testbed"
)

type world struct {
	bin, kubeconfig, registry, xdg string
	regEnv                         []string
	kc                             kubernetes.Interface
	outputs                        bytes.Buffer
	mu                             sync.Mutex
}

type result struct {
	stdout, stderr string
	code           int
}

func (w *world) run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+w.kubeconfig, "XDG_CONFIG_HOME="+w.xdg), w.regEnv...)
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

func (w *world) must(t *testing.T, want int, dir string, env []string, args ...string) result {
	t.Helper()
	r := w.run(t, dir, env, args...)
	if r.code != want {
		t.Fatalf("invdeploy %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "invdeploy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/invdeploy")
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build invdeploy: %v\n%s", err, out)
	}
	return bin
}

// TestK8s starts the bed and the registry once and runs the cases in order.
func TestK8s(t *testing.T) {
	testenv.NeedDocker(t)
	t0 := time.Now()
	bed := k8sbed.Start(t)
	t.Logf("kubernetes bed ready in %s (start %s)", time.Since(t0).Round(time.Second), bed.Started.Round(100*time.Millisecond))
	reg := testbed.StartRegistry(t)
	bed.TrustRegistry(t, reg.Addr)
	bed.Import(t, "postgres:15")
	cfg, err := clientcmd.BuildConfigFromFlags("", bed.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{bin: buildBinary(t), kubeconfig: bed.Kubeconfig, registry: reg.Addr, xdg: t.TempDir(), kc: kc,
		regEnv: []string{"INVDEPLOY_REGISTRY_USER=" + reg.User, "INVDEPLOY_REGISTRY_PASSWORD=" + reg.Password(t)}}
	t.Run("preflight", func(t *testing.T) { testPreflight(t, w) })
	t.Run("bundled", func(t *testing.T) { testBundled(t, w) })
	t.Run("rollouts", func(t *testing.T) { testRollouts(t, w) })
	t.Run("secrets", func(t *testing.T) { checkSecretHidden(t, w) })
}

// testPreflight: a field Kubernetes does not honour and a build without
// --registry refuse with exit 3, naming them; nothing is created.
func testPreflight(t *testing.T, w *world) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("name: k8spre\nservices:\n  web:\n    image: postgres:15\n    ipc: host\n    volumes: [./data:/data]\n  app:\n    build: .\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	r := w.must(t, 3, dir, nil, "k8s", "up", "-n", "k8spre")
	for _, want := range []string{"ipc", "kubernetes", "bind mount", "--registry"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("preflight does not name %q:\n%s", want, r.stderr)
		}
	}
	if _, err := w.kc.CoreV1().Namespaces().Get(context.Background(), "k8spre", metav1.GetOptions{}); err == nil {
		t.Errorf("preflight refused and yet namespace k8spre exists")
	}
}

// testBundled: the bundled stack as is; dry run changes nothing and lists
// the operations up then performs; an invoice created through the tunnel
// is read back after the database pod was deleted; down keeps the claim.
func testBundled(t *testing.T, w *world) {
	ctx := context.Background()
	root := testenv.RepoRoot(t)
	const ns = "inv"
	if _, err := w.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dry := w.must(t, 0, root, nil, "k8s", "up", "-n", ns, "--registry", w.registry, "--dry-run", "-o", "json")
	var plan struct {
		Ops []struct{ Op, Target string } `json:"operations"`
	}
	if err := json.Unmarshal([]byte(dry.stdout), &plan); err != nil {
		t.Fatalf("dry-run json: %v\n%s", err, dry.stdout)
	}
	if deps, _ := w.kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); len(deps.Items) != 0 {
		t.Fatalf("dry run created %d deployments", len(deps.Items))
	}
	yamlOut := w.must(t, 0, root, nil, "k8s", "up", "-n", ns, "--registry", w.registry, "--dry-run", "-o", "yaml")
	for _, want := range []string{"kind: Deployment", "kind: StatefulSet", "maxUnavailable: 0", "readinessProbe"} {
		if !strings.Contains(yamlOut.stdout, want) {
			t.Errorf("-o yaml lacks %q", want)
		}
	}
	start := time.Now()
	up := w.must(t, 0, root, nil, "k8s", "up", "-n", ns, "--registry", w.registry, "-o", "json")
	t.Logf("bundled stack up in %s", time.Since(start).Round(100*time.Millisecond))
	var res struct {
		Ops []struct{ Op, Target string } `json:"operations"`
	}
	if err := json.Unmarshal([]byte(up.stdout), &res); err != nil {
		t.Fatalf("up json: %v\n%s", err, up.stdout)
	}
	if fmt.Sprint(opList(plan.Ops)) != fmt.Sprint(opList(res.Ops)) {
		t.Errorf("the dry run's operations differ from up's:\ndry run: %v\nup:      %v", opList(plan.Ops), opList(res.Ops))
	}
	again := w.must(t, 0, root, nil, "k8s", "up", "-n", ns, "--registry", w.registry)
	if !strings.Contains(again.stdout, "Nothing to change") {
		t.Errorf("a second up changed something:\n%s\n%s", again.stdout, again.stderr)
	}
	base, stop := w.tunnel(t, root, ns, "api")
	inv := createInvoice(t, base)
	readInvoice(t, base, inv)
	stop()
	// The database pod deleted: the StatefulSet makes it again on its claim.
	if err := w.kc.CoreV1().Pods(ns).Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	logged := false
	waitFor(t, 3*time.Minute, "db-0 ready again", func() bool {
		p, err := w.kc.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
		if err == nil && p.DeletionTimestamp == nil && ready(*p) {
			return true
		}
		if err == nil && !logged && time.Since(p.CreationTimestamp.Time) > 150*time.Second {
			logged = true
			logWarnings(t, w, ns)
			if out, err := w.kc.CoreV1().Pods(ns).GetLogs("db-0", &corev1.PodLogOptions{Container: "db"}).DoRaw(ctx); err == nil {
				t.Logf("db-0 log:\n%s", out)
			}
		}
		return false
	})
	// The API is not ready while its database is away (its /readyz asks
	// the database): the tunnel wants a ready pod.
	waitFor(t, time.Minute, "the API ready again", func() bool {
		d, err := w.kc.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas > 0
	})
	base, stop = w.tunnel(t, root, ns, "api")
	waitFor(t, time.Minute, "the invoice read back after the database pod was replaced", func() bool {
		resp, err := httpClient.Get(base + inv)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	readInvoice(t, base, inv)
	stop()
	st := w.must(t, 0, root, nil, "k8s", "status", "-n", ns, "-o", "json")
	if !strings.Contains(st.stdout, `"StatefulSet/db"`) || !strings.Contains(st.stdout, `"Deployment/api"`) {
		t.Errorf("status: %s", st.stdout)
	}
	w.must(t, 0, root, nil, "k8s", "down", "-n", ns)
	if pvcs, _ := w.kc.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{}); len(pvcs.Items) != 1 {
		t.Errorf("down: %d claims, want the database's 1 kept", len(pvcs.Items))
	}
	w.must(t, 0, root, nil, "k8s", "down", "-n", ns, "--volumes")
	if pvcs, _ := w.kc.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{}); len(pvcs.Items) != 0 {
		t.Errorf("down --volumes: %d claims left", len(pvcs.Items))
	}
}

// logWarnings logs the namespace's warning events (probe failures, back-offs).
func logWarnings(t *testing.T, w *world, ns string) {
	t.Helper()
	evs, err := w.kc.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil {
		t.Logf("events: %v", err)
		return
	}
	for _, e := range evs.Items {
		t.Logf("event %s %s/%s %s x%d: %s", e.LastTimestamp.UTC().Format("15:04:05"), e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Count, e.Message)
	}
	// The API's lines about readiness and its 503s.
	pods, _ := w.kc.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	for _, p := range pods.Items {
		out, err := w.kc.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: p.Spec.Containers[0].Name}).DoRaw(context.Background())
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "readiness") || strings.Contains(l, `"status":503`) || strings.Contains(l, "FATAL") || strings.Contains(l, "shut") {
				t.Logf("%s: %s", p.Name, l)
			}
		}
	}
}

func opList(ops []struct{ Op, Target string }) []string {
	var out []string
	for _, o := range ops {
		out = append(out, o.Op+" "+o.Target)
	}
	return out
}

// tunnel runs k8s tunnel to a service and returns its base URL.
func (w *world) tunnel(t *testing.T, dir, ns, service string) (string, func()) {
	t.Helper()
	cmd := exec.Command(w.bin, "k8s", "tunnel", service, "-n", ns, "--port", "23581")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "Forwarding http://") {
		stop()
		t.Fatalf("k8s tunnel: %q %v\n%s", line, err, stderr.String())
	}
	return strings.Fields(line)[1], stop
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func createInvoice(t *testing.T, base string) string {
	t.Helper()
	body := `{"currency":"EUR","customer":{"name":"K8s"},"line_items":[{"description":"x","quantity":1,"unit_amount":1234}]}`
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

func ready(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       sync.WaitGroup
}

// startLoad runs clients against base (the Service's ClusterIP, which
// kube-proxy routes from this machine): reads of one invoice and creates.
func startLoad(base, invoice string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for c := 0; c < clients; c++ {
		l.done.Add(1)
		go func(c int) {
			defer l.done.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				var req *http.Request
				if i%4 == 3 {
					body := `{"currency":"EUR","customer":{"name":"Load"},"line_items":[{"description":"x","quantity":1,"unit_amount":1}]}`
					req, _ = http.NewRequest(http.MethodPost, base+"/v1/invoices", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					// A retry key makes the client's transport replay a POST
					// on a keep-alive connection the server closed meanwhile.
					req.Header.Set("Idempotency-Key", fmt.Sprintf("load-%d-%d-%d", c, i, time.Now().UnixNano()))
				} else {
					req, _ = http.NewRequest(http.MethodGet, base+invoice, nil)
				}
				resp, err := client.Do(req)
				if err == nil {
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode < 300 {
						l.ok.Add(1)
						continue
					}
					err = fmt.Errorf("%s %s: %s %s", time.Now().UTC().Format("15:04:05.000"), req.Method, resp.Status, body)
				} else {
					err = fmt.Errorf("%s %w", time.Now().UTC().Format("15:04:05.000"), err)
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 10 {
					l.errs = append(l.errs, err.Error())
				}
				l.mu.Unlock()
			}
		}(c)
	}
	return l
}

func (l *load) end() (ok, failed int64, errs []string) {
	close(l.stop)
	l.done.Wait()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// testRollouts: under 16 clients through the Service, an image change rolls
// with no failed request; a broken image and a never-ready release exit 4
// and are rolled back, no request failing; k8s rollback too; a second up
// while the lock is held exits 5.
func testRollouts(t *testing.T, w *world) {
	ctx := context.Background()
	const ns = "roll"
	dir := t.TempDir()
	compose, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "test/k8s/testdata/compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "compose.yaml"), compose, 0o644)
	dockerfile := func(line string) {
		os.WriteFile(filepath.Join(dir, "Dockerfile.api"), []byte("FROM k8sroll-base:latest\n"+line+"\n"), 0o644)
	}
	// The base: the API image the bundled case pushed, under a name of
	// this test's own.
	if out, err := exec.Command("docker", "tag", w.registry+"/invoicing-api:latest", "k8sroll-base:latest").CombinedOutput(); err != nil {
		t.Fatalf("docker tag: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "k8sroll-base:latest").Run() })
	env := func(tag string, extra ...string) []string {
		return append([]string{"API_CONTEXT=" + dir, "API_TAG=" + tag}, extra...)
	}
	t.Cleanup(func() {
		for _, tag := range []string{"1", "2", "3", "4"} {
			exec.Command("docker", "rmi", "k8sroll-api:"+tag).Run()
		}
	})
	up := func(want int, tag string, extra ...string) result {
		t.Helper()
		return w.must(t, want, dir, env(tag, extra...), "k8s", "up", "-n", ns, "--registry", w.registry, "--wait-timeout", "40s")
	}
	dockerfile("LABEL k8sroll=1")
	up(0, "1")
	svc, err := w.kc.CoreV1().Services(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://%s:8000", svc.Spec.ClusterIP)
	inv := createInvoice(t, base)
	image := func() string {
		d, err := w.kc.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}
	first := image()
	underLoad := func(what string, fn func()) {
		t.Helper()
		l := startLoad(base, inv, 16)
		time.Sleep(time.Second)
		fn()
		time.Sleep(time.Second)
		ok, failed, errs := l.end()
		t.Logf("%s: %d requests ok, %d failed", what, ok, failed)
		if failed != 0 || ok == 0 {
			t.Errorf("%s: %d requests failed (ok %d): %v", what, failed, ok, errs)
			logWarnings(t, w, ns)
		}
	}
	underLoad("image change", func() {
		dockerfile("LABEL k8sroll=2")
		start := time.Now()
		up(0, "2")
		t.Logf("rolling update in %s", time.Since(start).Round(100*time.Millisecond))
	})
	second := image()
	if second == first || !strings.Contains(second, "@sha256:") {
		t.Fatalf("the image did not change to a digest: %s -> %s", first, second)
	}
	underLoad("broken image", func() {
		dockerfile(`ENTRYPOINT ["/nonexistent"]`)
		r := up(4, "3")
		if !strings.Contains(r.stderr, "rolled back to release") || !strings.Contains(r.stderr, "pod api-") {
			t.Errorf("a broken image's exit 4 does not say the rollback and the pods:\n%s", r.stderr)
		}
	})
	if got := image(); got != second {
		t.Errorf("after the broken image: running %s, want %s back", got, second)
	}
	underLoad("never-ready release", func() {
		dockerfile("LABEL k8sroll=2")
		r := up(4, "2", "API_HEALTH_PATH=/never-ready")
		if !strings.Contains(r.stderr, "rolled back to release") {
			t.Errorf("a never-ready release's exit 4 does not say the rollback:\n%s", r.stderr)
		}
	})
	underLoad("k8s rollback", func() {
		w.must(t, 0, dir, env("2"), "k8s", "rollback", "-n", ns)
	})
	if got := image(); got != first {
		t.Errorf("after k8s rollback: running %s, want the first image %s", got, first)
	}
	rels := w.must(t, 0, dir, env("2"), "k8s", "releases", "-n", ns, "-o", "json")
	for _, want := range []string{`"failed"`, `"deployed"`, `"superseded"`, "rollback --to 1"} {
		if !strings.Contains(rels.stdout, want) {
			t.Errorf("releases lack %s:\n%s", want, rels.stdout)
		}
	}
	// Another deploy holds the lock: up exits 5 and changes nothing.
	holder := `{"user":"other","machine":"elsewhere","pid":1,"command":"k8s up"}`
	secs := int32(30)
	now := metav1.NewMicroTime(time.Now())
	if _, err := w.kc.CoordinationV1().Leases(ns).Create(ctx, &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "invdeploy-k8sroll-lock"},
		Spec: coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dockerfile("LABEL k8sroll=4")
	r := up(5, "4")
	if !strings.Contains(r.stderr, "other@elsewhere") {
		t.Errorf("exit 5 does not name the holder:\n%s", r.stderr)
	}
	w.kc.CoordinationV1().Leases(ns).Delete(ctx, "invdeploy-k8sroll-lock", metav1.DeleteOptions{})
	if got := image(); got != first {
		t.Errorf("a refused up changed the image to %s", got)
	}
}

// checkSecretHidden: the generated database passwords appear in no
// object's annotations, no event, no pod log and nothing invdeploy printed.
func checkSecretHidden(t *testing.T, w *world) {
	ctx := context.Background()
	sec, err := w.kc.CoreV1().Secrets("roll").Get(ctx, "k8sroll-secret-db-password", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	value := string(sec.Data["value"])
	if len(value) < 16 {
		t.Fatalf("generated secret too short: %d bytes", len(value))
	}
	var haystack bytes.Buffer
	nss, _ := w.kc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	for _, n := range nss.Items {
		ns := n.Name
		add := func(m metav1.Object) {
			for k, v := range m.GetAnnotations() {
				fmt.Fprintf(&haystack, "%s=%s\n", k, v)
			}
			for k, v := range m.GetLabels() {
				fmt.Fprintf(&haystack, "%s=%s\n", k, v)
			}
		}
		if l, err := w.kc.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				add(&l.Items[i])
			}
		}
		if l, err := w.kc.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				add(&l.Items[i])
				for _, v := range l.Items[i].Data {
					haystack.WriteString(v)
				}
			}
		}
		if l, err := w.kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				add(&l.Items[i])
				add(&l.Items[i].Spec.Template)
				b, _ := json.Marshal(l.Items[i].Spec)
				haystack.Write(b)
			}
		}
		if l, err := w.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for i := range l.Items {
				add(&l.Items[i])
				b, _ := json.Marshal(l.Items[i].Spec)
				haystack.Write(b)
				tail := int64(2000)
				if rc, err := w.kc.CoreV1().Pods(ns).GetLogs(l.Items[i].Name, &corev1.PodLogOptions{TailLines: &tail}).Stream(ctx); err == nil {
					io.Copy(&haystack, rc)
					rc.Close()
				}
			}
		}
		if l, err := w.kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, e := range l.Items {
				haystack.WriteString(e.Message + "\n")
			}
		}
	}
	w.mu.Lock()
	haystack.Write(w.outputs.Bytes())
	w.mu.Unlock()
	if haystack.Len() < 1000 {
		t.Fatalf("searched only %d bytes", haystack.Len())
	}
	if strings.Contains(haystack.String(), value) {
		t.Errorf("the database password appears in an annotation, label, event, log or invdeploy's output")
	}
}
