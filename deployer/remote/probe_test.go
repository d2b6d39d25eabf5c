package remote

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/testenv"
)

// TestProbeOverOneSSHConnection: up driven through the in-process SSH server
// returns on its readiness probe (an exec, hijacked stream included, over the
// one SSH connection) long before the engine's 60 s healthcheck interval.
func TestProbeOverOneSSHConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("creates containers on the real engine: not with -short")
	}
	testenv.NeedDocker(t)
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	ctx := context.Background()
	r := newRig(t)
	c, err := Connect(ctx, "ssh://deploy@"+r.srv.addr+sock, Options{SSH: r.opts()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cli, err := client.NewClientWithOpts(append([]client.Opt{client.WithAPIVersionNegotiation()}, c.ClientOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	if _, err := cli.ImageInspect(ctx, "debian:bookworm"); err != nil {
		testenv.Missing(t, "image debian:bookworm (make images builds it)")
	}

	dir := t.TempDir()
	compose := `services:
  slow:
    image: debian:bookworm
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 60s
    stop_grace_period: 1s
`
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	proj := fmt.Sprintf("wready-ssh-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	st, err := deployer.Load(ctx, deployer.LoadOptions{WorkingDir: dir, ProjectName: proj})
	if err != nil {
		t.Fatal(err)
	}
	d := deployer.New(cli, nil)
	t.Cleanup(func() {
		if _, err := d.Down(context.Background(), proj, deployer.DownOptions{Volumes: true}); err != nil {
			t.Errorf("down %s: %v", proj, err)
		}
	})
	start := time.Now()
	res, err := d.Up(ctx, st, deployer.UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 45 * time.Second})
	if err != nil {
		t.Fatalf("up over SSH: %v", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("up took %v: it waited for the engine's interval", el)
	}
	if len(res.Ready) != 1 || res.Ready[0].By != deployer.ReadyByProbe {
		t.Fatalf("readiness %+v, want slow seen ready by the probe", res.Ready)
	}
	if n := r.srv.accepted.Load(); n != 1 {
		t.Fatalf("%d SSH connections, want 1", n)
	}
}
