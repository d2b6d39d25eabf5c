package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestGoInstalledBinaryRolls: `go install ./cmd/invdeploy`, the way Go users
// install a CLI (with cgo where a C compiler is found, so usually a
// dynamically linked binary, and no invdeploy-proxy beside it), still rolls
// a changed service through the rollout proxy, made from invdeploy itself:
// 0 failed requests of 16 clients.
func TestGoInstalledBinaryRolls(t *testing.T) {
	t.Parallel()
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	gobin := t.TempDir()
	install := exec.Command("go", "install", "./cmd/invdeploy")
	install.Dir = localRoot()
	install.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install ./cmd/invdeploy: %v\n%s", err, out)
	}
	e.bin = filepath.Join(gobin, "invdeploy")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rollStack), 0o644); err != nil {
		t.Fatal(err)
	}
	proj := project(t, "gobin")
	e.cleanup(proj)
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	env := func(image string) {
		e.extra = []string{"INVDEPLOY_PROXY_BINARY=", "APP_IMAGE=" + image, "APP_MODE=ok", "APP_PORT=" + strconv.Itoa(port)}
	}
	env("rollapp:e2e-v1")
	e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
	_, proxies := appContainers(t, e.docker, proj)
	if len(proxies) != 1 || !strings.HasPrefix(proxies[0].Image, deployer.ProxyImageRepo+":") {
		t.Fatalf("want one rollout proxy (made from the installed invdeploy), got %+v", proxies)
	}
	proxyImage := proxies[0].Image
	t.Cleanup(func() { e.docker.ImageRemove(context.Background(), proxyImage, image.RemoveOptions{Force: true}) })

	load := startLoad(16, func(c *http.Client) error {
		_, err := getOK(c, base+"/")
		return err
	})
	time.Sleep(500 * time.Millisecond)
	env("rollapp:e2e-v2")
	r := e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
	if !strings.Contains(r.stderr, "Rolling "+proj+"-app-1") || !strings.Contains(r.stderr, "switched to") {
		t.Fatalf("the go-installed binary did not roll through the proxy:\n%s", r.stderr)
	}
	time.Sleep(500 * time.Millisecond)
	ok, failed, failures := load.finish()
	t.Logf("load: %d requests succeeded, %d failed", ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed during the roll (of %d); first: %v", failed, ok+failed, failures)
	}
	if ok < 100 {
		t.Fatalf("only %d requests ran: the load generator did not load", ok)
	}
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "2" {
		t.Fatalf("after the roll: version %q, %v", v, err)
	}
}
