package proxycmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/rollproxy"
)

// TestDeployCommandReleaseFlags: `deploy` works as before without the
// release flags, names the release with them (what invdeploy passes through
// its exec), and refuses a bad value as a usage error before asking the
// proxy anything.
func TestDeployCommandReleaseFlags(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	target := strings.TrimPrefix(backend.URL, "http://")
	p := rollproxy.New(nil)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p.AdminHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	ctx := context.Background()
	var out bytes.Buffer

	if err := run(ctx, []string{"deploy", "--admin", sock, "--target", target, "--health-interval", "10ms"}, noEnv, &out, io.Discard); err != nil {
		t.Fatalf("deploy without release flags: %v", err)
	}
	if p.Target() != target || !p.Release().IsZero() {
		t.Fatalf("target %q release %+v", p.Target(), p.Release())
	}
	err = run(ctx, []string{"deploy", "--admin", sock, "--target", target, "--release", "two"}, noEnv, &out, io.Discard)
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("--release two: %v, want a usage error", err)
	}
	args := []string{"deploy", "--admin", sock, "--target", target, "--health-interval", "10ms",
		"--project", "invoicing", "--release", "2", "--revision", "1a2b3c4d5e6f", "--service", "api"}
	if err := run(ctx, args, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := rollproxy.Release{Project: "invoicing", Number: "2", Revision: "1a2b3c4d5e6f", Service: "api"}
	if got := p.Release(); got != want {
		t.Fatalf("release %+v, want %+v", got, want)
	}
	if !strings.Contains(out.String(), `"target":"`+target) {
		t.Fatalf("deploy printed %q", out.String())
	}
}

// TestRunRefusesABadRelease: run's release flags (naming the first target,
// so a restarted proxy names its release again) are checked before the
// proxy listens anywhere.
func TestRunRefusesABadRelease(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	err := run(context.Background(), []string{"run", "--admin", sock, "--listen", "127.0.0.1:0", "--metrics", "", "--target", "127.0.0.1:1", "--revision", "not a revision"}, noEnv, io.Discard, io.Discard)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "revision") {
		t.Fatalf("run --revision 'not a revision': %v, want a usage error naming the revision", err)
	}
}

func noEnv(string) string { return "" }

// startRun runs `run ARGS` with env until the test ends and returns the
// address it serves clients on, once it answers.
func startRun(t *testing.T, env map[string]string, args ...string) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"run", "--listen", addr, "--metrics", ""}, args...), func(k string) string { return env[k] }, io.Discard, io.Discard)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not listen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	return addr, stop
}

// TestRunLimitsAndState: the proxy takes its limits from the environment
// (INVDEPLOY_PROXY_MAX_CONNS=1: a second busy connection is answered 503
// over_capacity), refuses a bad one as a usage error, and, restarted with
// the same --state, serves the target of its last deploy at once.
func TestRunLimitsAndState(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	dir := t.TempDir()
	sock, state := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "state.json")
	env := map[string]string{"INVDEPLOY_PROXY_MAX_CONNS": "1"}
	addr, stop := startRun(t, env, "--admin", sock, "--state", state)
	if _, err := rollproxy.NewAdminClient(sock).Deploy(context.Background(), rollproxy.DeployRequest{Target: strings.TrimPrefix(backend.URL, "http://"), HealthInterval: "10ms"}); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(busy, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\na")
	time.Sleep(100 * time.Millisecond)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"code":"over_capacity"`) {
		t.Fatalf("over the cap of 1: %s %s", resp.Status, b)
	}
	busy.Close()
	stop()

	addr, stop = startRun(t, nil, "--admin", sock, "--state", state)
	defer stop()
	resp, err = c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		t.Fatalf("restarted proxy: %s %q, want the kept target's answer", resp.Status, b)
	}

	err = run(context.Background(), []string{"run", "--admin", sock, "--listen", "127.0.0.1:0", "--metrics", ""}, func(k string) string {
		return map[string]string{"INVDEPLOY_PROXY_READ_TIMEOUT": "slowly"}[k]
	}, io.Discard, io.Discard)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "INVDEPLOY_PROXY_READ_TIMEOUT") {
		t.Fatalf("a bad limit in the environment: %v, want a usage error naming it", err)
	}
}
