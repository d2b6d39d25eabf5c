package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// TestGeneratedSecretFollowsTheTarget: the generated database password
// lives on the engine, so a machine with an empty config directory (a
// second laptop, a lost one) brings the stopped stack back up with the
// same password, healthy; with the engine's copy gone too and the data
// kept, up refuses (exit 3, never 4) and says how to recover.
func TestGeneratedSecretFollowsTheTarget(t *testing.T) {
	t.Parallel() // its own project; nothing shared but the engine
	e := newLocalEnv(t, "postgres:15")
	proj := fmt.Sprintf("wstate-%d", os.Getpid())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rotateStack), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cleanup(proj)
	e.mustRun(dir, "up", "-p", proj)
	first, err := os.ReadFile(filepath.Join(e.xdg, "invdeploy", proj, "db_password"))
	if err != nil {
		t.Fatal(err)
	}
	e.mustRun(dir, "down", "-p", proj)

	// Another machine: no config directory at all.
	e.xdg = t.TempDir()
	r := e.mustRun(dir, "up", "-p", proj)
	if !strings.Contains(r.stderr+r.stdout, "took the value the engine's store holds") {
		t.Errorf("up from an empty config dir does not say where the value came from:\n%s", lastLines(r.stderr, 20))
	}
	second, err := os.ReadFile(filepath.Join(e.xdg, "invdeploy", proj, "db_password"))
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("the second machine has another password (%v)", err)
	}
	e.mustRun(dir, "down", "-p", proj)

	// The engine's copy gone as well (an engine an older invdeploy
	// deployed), the data kept: refused before anything changes.
	if err := e.docker.ContainerRemove(context.Background(), "invdeploy-state-"+proj, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	e.xdg = t.TempDir()
	r = e.run(dir, "up", "-p", proj)
	if r.code != 3 || !strings.Contains(r.stderr, "volume "+proj+"_data already exists") || !strings.Contains(r.stderr, "WSEC_UNSET_DB_PASSWORD") {
		t.Fatalf("up with no value anywhere and the data kept: exit %d, want 3 with the ways out\n%s", r.code, lastLines(r.stderr, 20))
	}
	if ids := e.containerIDs(proj); len(ids) != 0 {
		t.Fatalf("the refused up created containers: %v", ids)
	}
	e.assertNoSecret(proj, string(first))
}
