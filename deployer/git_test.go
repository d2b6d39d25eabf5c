package deployer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// The bundled API image is tagged with what the checkout holds: its commit
// when clean, <commit>-dirty-<hash> of the changes otherwise, so an edit is
// built by the next up and the commit tag never names an image of edits.
func TestBundledStackTaggedWithTree(t *testing.T) {
	git := testenv.NeedCommand(t, "git")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", "main.go": "package main\n"})
	gitIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(git, append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitIn("init", "-q")
	gitIn("add", ".")
	gitIn("commit", "-qm", "first")
	sha := gitIn("rev-parse", "--short=12", "HEAD")
	t.Setenv(EnvAPITag, "")
	os.Unsetenv(EnvAPITag)

	image := func() string {
		t.Helper()
		st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "inv"})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Warnings) != 0 {
			t.Fatalf("warnings: %v", st.Warnings)
		}
		return st.Project.Services["api"].Image
	}
	if img := image(); img != "invoicing-api:"+sha {
		t.Fatalf("clean checkout: api image %s, want invoicing-api:%s", img, sha)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.go", "package main // edited\n")
	edited := image()
	if !strings.HasPrefix(edited, "invoicing-api:"+sha+"-dirty-") || len(edited) != len("invoicing-api:"+sha+"-dirty-")+12 {
		t.Fatalf("dirty checkout: api image %s, want invoicing-api:%s-dirty-<12 hex>", edited, sha)
	}
	if again := image(); again != edited {
		t.Fatalf("the same edits give another tag: %s then %s", edited, again)
	}
	write("main.go", "package main // edited again\n")
	if other := image(); other == edited {
		t.Fatalf("another edit keeps the tag %s", other)
	}
	write("main.go", "package main // edited\n")
	write("new.go", "package main\n")
	if untracked := image(); untracked == edited {
		t.Fatalf("an untracked file keeps the tag %s", untracked)
	}
	os.Remove(filepath.Join(dir, "new.go"))
	write("main.go", "package main\n")
	if img := image(); img != "invoicing-api:"+sha {
		t.Fatalf("reverted checkout: api image %s, want invoicing-api:%s", img, sha)
	}
}

// TestReleaseRevisionSaysDirty: a release records whether what it deploys
// was built from uncommitted changes, in the working directory's checkout
// or in a build context outside it; a rollback keeps the revision of the
// release it runs again.
func TestReleaseRevisionSaysDirty(t *testing.T) {
	git := testenv.NeedCommand(t, "git")
	root := t.TempDir()
	work, other := filepath.Join(root, "work"), filepath.Join(root, "other")
	writeFiles(t, work, map[string]string{"compose.yaml": "services:\n  app:\n    build: .\n  lib:\n    build: ../other\n", "Dockerfile": "FROM scratch\n"})
	writeFiles(t, other, map[string]string{"Dockerfile": "FROM scratch\n"})
	for _, dir := range []string{work, other} {
		for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"commit", "-qm", "first"}} {
			cmd := exec.Command(git, append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v %s", args, err, out)
			}
		}
	}
	load := func() *Stack {
		t.Helper()
		st, err := Load(context.Background(), LoadOptions{WorkingDir: work, ProjectName: "t"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	rev, dirty := treeRevision(load().Project)
	if len(rev) != 12 || dirty {
		t.Fatalf("clean trees: revision %q dirty %v", rev, dirty)
	}
	writeFiles(t, other, map[string]string{"Dockerfile": "FROM scratch\nLABEL edited=1\n"})
	if rev2, dirty := treeRevision(load().Project); rev2 != rev || !dirty {
		t.Fatalf("an edited context outside the working directory: revision %q dirty %v, want %q dirty", rev2, dirty, rev)
	}
	writeFiles(t, work, map[string]string{"Dockerfile": "FROM scratch\nLABEL edited=1\n"})
	rev3, dirty := treeRevision(load().Project)
	if !strings.HasPrefix(rev3, rev+"-dirty-") || !dirty {
		t.Fatalf("an edited working directory: revision %q dirty %v", rev3, dirty)
	}
	// Releases recorded before the field say so by the revision.
	if !(Release{Revision: rev3}).FromDirtyTree() || (Release{Revision: rev}).FromDirtyTree() {
		t.Fatal("FromDirtyTree does not read the revision")
	}

	f := newFakeEngine()
	d := New(f, nil)
	p := load().Project
	r, err := d.recordRelease(context.Background(), p, map[string]string{"app": "sha256:a"}, "up", nil)
	if err != nil || !r.Dirty || r.Revision != rev3 {
		t.Fatalf("recorded release %+v (%v), want dirty at %s", r, err, rev3)
	}
	back := Release{Number: 7, Revision: rev}
	r, err = d.recordRelease(context.Background(), p, map[string]string{"app": "sha256:b"}, "rollback to 7", &back)
	if err != nil || r.Dirty || r.Revision != rev {
		t.Fatalf("the rollback's release %+v (%v), want release 7's clean revision %s", r, err, rev)
	}
}
