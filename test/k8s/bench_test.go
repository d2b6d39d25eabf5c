//go:build k8sbed

package k8s_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/test/k8sbed"
	"github.com/invdeploy/invdeploy/test/testbed"
)

// TestBenchK8s (make bench-k8s) measures, on the bed, the rollout stack
// up to ready and an image rollout with invdeploy k8s up, against kubectl
// apply of the same rendered manifests plus kubectl rollout status, and
// kubectl set image plus rollout status, in the same run.
func TestBenchK8s(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_K8S") == "" {
		t.Skip("set INVDEPLOY_BENCH_K8S=1 (make bench-k8s)")
	}
	bed := k8sbed.Start(t)
	reg := testbed.StartRegistry(t)
	bed.TrustRegistry(t, reg.Addr)
	bed.Import(t, "postgres:15")
	cfg, _ := clientcmd.BuildConfigFromFlags("", bed.Kubeconfig)
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{bin: buildBinary(t), kubeconfig: bed.Kubeconfig, registry: reg.Addr, xdg: t.TempDir(), kc: kc,
		regEnv: []string{"INVDEPLOY_REGISTRY_USER=" + reg.User, "INVDEPLOY_REGISTRY_PASSWORD=" + reg.Password(t)}}
	dir := t.TempDir()
	compose, _ := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "test/k8s/testdata/compose.yaml"))
	os.WriteFile(filepath.Join(dir, "compose.yaml"), compose, 0o644)
	// The base: the API image built from the repository, under a name of
	// the bench's own (the suite tags the one its bundled case pushed).
	if out, err := exec.Command("docker", "build", "-q", "-t", "k8sroll-base:latest", testenv.RepoRoot(t)).CombinedOutput(); err != nil {
		t.Fatalf("docker build of the API image: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "k8sroll-base:latest").Run() })
	dockerfile := func(line string) {
		os.WriteFile(filepath.Join(dir, "Dockerfile.api"), []byte("FROM k8sroll-base:latest\n"+line+"\n"), 0o644)
	}
	env := func(tag string) []string { return []string{"API_CONTEXT=" + dir, "API_TAG=" + tag} }
	t.Cleanup(func() {
		for _, tag := range []string{"b1", "b2"} {
			exec.Command("docker", "rmi", "k8sroll-api:"+tag).Run()
		}
	})
	// Both images pushed first, so neither side pays a build.
	dockerfile("LABEL bench=1")
	w.must(t, 0, dir, env("b1"), "k8s", "up", "-n", "warm", "--registry", w.registry)
	dockerfile("LABEL bench=2")
	w.must(t, 0, dir, env("b2"), "k8s", "up", "-n", "warm", "--registry", w.registry)
	img2 := deploymentImage(t, kc, "warm")
	dockerfile("LABEL bench=1")
	start := time.Now()
	w.must(t, 0, dir, env("b1"), "k8s", "up", "-n", "bench", "--registry", w.registry)
	upInv := time.Since(start)
	dockerfile("LABEL bench=2")
	start = time.Now()
	w.must(t, 0, dir, env("b2"), "k8s", "up", "-n", "bench", "--registry", w.registry)
	rollInv := time.Since(start)

	// The reference: the manifests invdeploy renders, applied by kubectl.
	dockerfile("LABEL bench=1")
	yamlOut := w.must(t, 0, dir, env("b1"), "k8s", "up", "-n", "ref", "--registry", w.registry, "--dry-run", "-o", "yaml").stdout
	manifests := filepath.Join(dir, "ref.yaml")
	os.WriteFile(manifests, []byte(yamlOut), 0o644)
	ctx := context.Background()
	kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ref"}}, metav1.CreateOptions{})
	kubectl := filepath.Join(cacheBin(), "kubectl")
	k := func(args ...string) {
		t.Helper()
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", bed.Kubeconfig, "-n", "ref"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	k("create", "secret", "generic", "k8sroll-secret-db-password", "--from-literal=value=bench-reference-password")
	k("create", "secret", "docker-registry", "k8sroll-registry", "--docker-server="+reg.Addr, "--docker-username="+reg.User, "--docker-password="+reg.Password(t))
	start = time.Now()
	k("apply", "-f", manifests)
	k("rollout", "status", "statefulset/db", "--timeout=5m")
	k("rollout", "status", "deployment/api", "--timeout=5m")
	upRef := time.Since(start)
	start = time.Now()
	k("set", "image", "deployment/api", "api="+img2)
	k("rollout", "status", "deployment/api", "--timeout=5m")
	rollRef := time.Since(start)
	t.Logf("up to ready:   invdeploy k8s up %s, kubectl apply + rollout status %s (ratio %.2f)", upInv.Round(100*time.Millisecond), upRef.Round(100*time.Millisecond), upInv.Seconds()/upRef.Seconds())
	t.Logf("image rollout: invdeploy k8s up %s, kubectl set image + rollout status %s (ratio %.2f)", rollInv.Round(100*time.Millisecond), rollRef.Round(100*time.Millisecond), rollInv.Seconds()/rollRef.Seconds())
	t.Logf("(invdeploy's figures include its preflight, plan, lock and release record; kubectl's the order db then api that depends_on asks)")
}

func deploymentImage(t *testing.T, kc kubernetes.Interface, ns string) string {
	t.Helper()
	d, err := kc.AppsV1().Deployments(ns).Get(context.Background(), "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

func cacheBin() string {
	root := os.Getenv("INVDEPLOY_K8SBED_CACHE")
	if root == "" {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			root = filepath.Join(x, "invdeploy", "k8sbed")
		} else {
			home, _ := os.UserHomeDir()
			root = filepath.Join(home, ".cache", "invdeploy", "k8sbed")
		}
	}
	return filepath.Join(root, "v1.34.4", "bin")
}
