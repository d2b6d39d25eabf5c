// Package testenv decides what a test does when a real part it needs (Docker,
// PostgreSQL, the test bed) is missing: skip on a developer's machine, fail in
// CI (CI=true), so that CI never passes by skipping silently.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI, where nothing may be skipped for a
// missing dependency.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Missing skips the test, or fails it under CI, because a required part is not
// available. what names the part and why, e.g. "docker: engine unreachable".
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required for this test and missing (CI=true forbids skipping): %s", what)
	}
	t.Skipf("skipping: %s (set CI=true to make this a failure)", what)
}

// NeedDocker ensures the local Docker engine answers /_ping on its unix
// socket (DOCKER_HOST=unix://... or /var/run/docker.sock); see Missing.
func NeedDocker(t testing.TB) {
	t.Helper()
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	if err := pingDocker(sock); err != nil {
		Missing(t, "docker engine at "+sock+": "+err.Error())
	}
}

func pingDocker(sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/_ping answered %s", resp.Status)
	}
	return nil
}

// NeedCommand ensures an executable is on PATH; see Missing.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+": not on PATH (make deps installs it)")
	}
	return p
}

// RepoRoot returns the root of the repository (the directory of go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("repo root: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
