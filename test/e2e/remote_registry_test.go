package e2e

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRemoteViaRegistry deploys with --via registry: the app image is pushed
// to the authenticated registry and the host's engine pulls it by digest,
// with the login sent only in the pull request.
func TestRemoteViaRegistry(t *testing.T) {
	reg := startRegistry(t)
	_, port, _ := net.SplitHostPort(reg.Addr)
	p, _ := strconv.Atoi(port)
	h := startRemoteHost(t, p)
	pull := forward(t, net.JoinHostPort(h.GatewayIP, port), reg.Addr)
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "DOCKER_CONFIG=" + t.TempDir(),
		"INVDEPLOY_REGISTRY_USER=" + reg.User, "INVDEPLOY_REGISTRY_PASSWORD=" + reg.Password}

	r := remoteRun(t, h, env, "up", "--via", "registry", "--registry", reg.Addr, "--pull-registry", pull)
	mustCode(t, r, 0, "remote up --via registry")
	if !strings.Contains(r.Stderr, "Remote engine pulling "+pull+"/invoicing-api@sha256:") {
		t.Errorf("the host did not pull the app image by digest:\n%s", tail(r.Stderr, 30))
	}
	if strings.Contains(r.Stdout+r.Stderr, reg.Password) {
		t.Error("the registry password appears in the output")
	}
	if code, _ := httpJSON(t, "GET", "http://"+h.Addr+":8000/healthz", ""); code != 200 {
		t.Errorf("API on the host: %d", code)
	}
	// The host keeps no copy of the login (small files only: layers are big and irrelevant).
	filepath.WalkDir(h.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if info, err := e.Info(); err == nil && info.Size() < 1<<20 && info.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), reg.Password) {
				t.Errorf("%s on the host holds the registry password", p)
			}
		}
		return nil
	})
	mustCode(t, remoteRun(t, h, env, "down", "--volumes"), 0, "remote down --volumes")
}
