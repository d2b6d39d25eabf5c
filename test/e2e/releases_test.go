package e2e

import (
	"context"
	"encoding/json"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const releaseStack = `services:
  web:
    build: .
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/version"]
      interval: 1s
      retries: 30
`

const releaseDockerfile = `FROM debian:bookworm
COPY version /version
CMD ["sh", "-c", "exec sleep infinity"]
`

type releasesJSON struct {
	Releases []struct {
		Number   int
		Command  string
		User     string
		Machine  string
		Services map[string]struct {
			ImageID string `json:"image_id"`
		}
	}
}

// TestReleasesAndRollback: every up records a release with the exact image;
// rollback runs the previous release's image again without building, and is
// itself recorded; releases survive on the engine, not on this machine.
func TestReleasesAndRollback(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	dir := t.TempDir()
	proj := project(t, "rel")
	var images []string
	t.Cleanup(func() {
		// Runs after down --volumes, which removes the release records that
		// kept the built images.
		for _, id := range images {
			e.docker.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true})
		}
	})
	e.cleanup(proj)
	for name, body := range map[string]string{"compose.yaml": releaseStack, "Dockerfile": releaseDockerfile, "version": "one\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r := e.mustRun(dir, "releases", "-p", proj); !strings.Contains(r.stdout, "no recorded release") {
		t.Fatalf("releases before any up: %s", r.stdout)
	}
	e.mustRun(dir, "up", "-p", proj)
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What is on disk is deployed: the edited context is rebuilt by a
	// plain up, and the dry run says why first.
	if r := e.mustRun(dir, "up", "-p", proj, "--dry-run"); !regexp.MustCompile(`(?m)^  image +build +\S+: context changed$`).MatchString(r.stdout) {
		t.Fatalf("up --dry-run after an edit does not plan the build:\n%s", r.stdout)
	}
	e.mustRun(dir, "up", "-p", proj)
	rels := e.releases(dir, proj).Releases
	if len(rels) != 2 || rels[0].Number != 2 || rels[1].Number != 1 || rels[0].Command != "up" || rels[0].User == "" || rels[0].Machine == "" {
		t.Fatalf("releases after two ups: %+v", rels)
	}
	one, two := rels[1].Services["web"].ImageID, rels[0].Services["web"].ImageID
	images = append(images, one, two)
	if one == "" || one == two {
		t.Fatalf("the two releases should have different images: %q %q", one, two)
	}
	if got := e.runningImage(proj); got != two {
		t.Fatalf("running image %s, want release 2's %s", got, two)
	}

	r := e.mustRun(dir, "rollback", "-p", proj)
	if !strings.Contains(r.stdout, "release 1") || strings.Contains(r.stderr, "Step ") {
		t.Fatalf("rollback output (no build expected):\n%s\n%s", r.stdout, r.stderr)
	}
	if got := e.runningImage(proj); got != one {
		t.Fatalf("after rollback running image %s, want release 1's %s", got, one)
	}
	rels = e.releases(dir, proj).Releases
	if len(rels) != 3 || rels[0].Services["web"].ImageID != one || !strings.HasPrefix(rels[0].Command, "rollback to 1") {
		t.Fatalf("releases after rollback: %+v", rels)
	}
	// Forward again to release 2 by number.
	e.mustRun(dir, "rollback", "-p", proj, "--to", "2")
	if got := e.runningImage(proj); got != two {
		t.Fatalf("after rollback --to 2 running image %s, want %s", got, two)
	}
	if r := e.run(dir, "rollback", "-p", proj, "--to", "99"); r.code != 2 || !strings.Contains(r.stderr, "release 99") {
		t.Fatalf("rollback to an unknown release: exit %d %s", r.code, r.stderr)
	}
	// The records are not part of the stack: status shows only the service.
	if sts := statusJSON(t, e.mustRun(dir, "status", "-p", proj, "-o", "json")); len(sts) != 1 {
		t.Fatalf("status lists release records: %+v", sts)
	}
	// down leaves no container behind, as compose does, and keeps the history.
	e.mustRun(dir, "down", "-p", proj)
	cs, err := e.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "io.invdeploy.release.project="+proj))})
	if err != nil || len(cs) != 0 {
		t.Fatalf("after down: %d release record containers (%v)", len(cs), err)
	}
	if n := len(e.releases(dir, proj).Releases); n != 4 {
		t.Fatalf("after down: %d releases, want the 4 recorded", n)
	}
}

func (e *localEnv) releases(dir, proj string) releasesJSON {
	e.t.Helper()
	var out releasesJSON
	r := e.mustRun(dir, "releases", "-p", proj, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		e.t.Fatalf("releases json: %v\n%s", err, r.stdout)
	}
	return out
}

func (e *localEnv) runningImage(proj string) string {
	e.t.Helper()
	for name, id := range e.containerIDs(proj) {
		c, err := e.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if strings.Contains(name, "-web-") && c.State.Running {
			return c.Image
		}
	}
	e.t.Fatal("no running web container")
	return ""
}
