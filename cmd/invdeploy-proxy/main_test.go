package main

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
