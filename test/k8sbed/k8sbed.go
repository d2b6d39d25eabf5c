// Package k8sbed gives end-to-end tests a real one-node Kubernetes, scripted
// in k8sbed.sh next to this file: the control plane and a node built from
// the Go module proxy (cached by version outside the repository), etcd and
// the CNI plugins from Debian packages, a private containerd.
//
// One bed runs on a machine at a time (its addresses and ports are fixed):
// Start holds a flock for the life of the test, so a second test package
// that needs it waits. Under CI=true a missing prerequisite fails the test
// (internal/testenv).
package k8sbed

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// Bed is a running one-node cluster.
type Bed struct {
	// Dir is the bed's directory; Kubeconfig its admin kubeconfig.
	Dir, Kubeconfig string
	// Started is how long the bed took to start (the build excluded).
	Started time.Duration
}

// Script is the path of k8sbed.sh.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "k8sbed.sh")
}

// Root is the bed's directory.
func Root() string {
	if r := os.Getenv("INVDEPLOY_K8SBED_ROOT"); r != "" {
		return r
	}
	return "/var/lib/invdeploy-k8sbed"
}

// Start builds the bed's binaries when they are not cached (minutes, once
// per machine), starts the bed and stops it when t ends, leaving the host
// as it was.
func Start(t testing.TB) *Bed {
	t.Helper()
	if testing.Short() && !testenv.InCI() {
		t.Skip("kubernetes bed: skipped with -short")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root, for the kubernetes bed (bridges, iptables, containerd)")
	}
	testenv.NeedDocker(t)
	for _, c := range []string{"bash", "go", "containerd", "ctr", "runc", "openssl", "iptables", "ip", "apt-get", "dpkg", "docker"} {
		testenv.NeedCommand(t, c)
	}
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile("/run/lock/invdeploy-k8sbed.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("kubernetes bed lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("kubernetes bed lock: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if out, err := run(45*time.Minute, "build"); err != nil {
		t.Fatalf("build the kubernetes bed: %v\n%s", err, out)
	}
	b := &Bed{Dir: Root(), Kubeconfig: filepath.Join(Root(), "kubeconfig")}
	t.Cleanup(func() {
		if out, err := run(3*time.Minute, "down", b.Dir); err != nil {
			t.Errorf("stop the kubernetes bed: %v\n%s", err, out)
		}
	})
	start := time.Now()
	if out, err := run(5*time.Minute, "up", b.Dir); err != nil {
		t.Fatalf("start the kubernetes bed: %v\n%s", err, out)
	}
	b.Started = time.Since(start)
	return b
}

// Import copies images from the local engine into the node (for images
// the tests do not push to a registry, such as postgres:15).
func (b *Bed) Import(t testing.TB, images ...string) {
	t.Helper()
	if out, err := run(5*time.Minute, append([]string{"import", b.Dir}, images...)...); err != nil {
		t.Fatalf("import %v into the kubernetes bed: %v\n%s", images, err, out)
	}
}

// TrustRegistry lets the node pull from a plain-HTTP registry at host:port.
func (b *Bed) TrustRegistry(t testing.TB, hostPort string) {
	t.Helper()
	if out, err := run(time.Minute, "registry", b.Dir, hostPort); err != nil {
		t.Fatalf("registry %s for the kubernetes bed: %v\n%s", hostPort, err, out)
	}
}

func run(timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", append([]string{Script()}, args...)...)
	c.Env = append(os.Environ(), "K8SBED_QUIET=1")
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	c.WaitDelay = 10 * time.Second
	err := c.Run()
	return out.Bytes(), err
}
