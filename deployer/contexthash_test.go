package deployer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildOps are the plan's build operations, as "target: reason".
func buildOps(p *Plan) []string {
	var out []string
	for _, op := range p.Ops {
		if op.Kind == OpBuild {
			out = append(out, op.Target+": "+op.Reason)
		}
	}
	return out
}

// TestEditedContextIsRebuilt: on the local engine an image whose build
// context changed since it was built (a user's own image: x:dev with a
// build section) is built again by a plain up, and the plan says "context
// changed"; an unchanged context, a dockerignored file or a remote target
// builds nothing; an image built without the record is rebuilt once.
func TestEditedContextIsRebuilt(t *testing.T) {
	ctx := context.Background()
	st := loadStack(t, "services:\n  app:\n    image: x:dev\n    build: ./app\n", map[string]string{
		"app/Dockerfile":    "FROM scratch\nCOPY . /\n",
		"app/main.txt":      "one\n",
		"app/notes.md":      "ignored\n",
		"app/.dockerignore": "notes.md\n",
	})
	f := fakeWithImages()
	d := New(f, nil)
	o := UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second}
	if _, err := d.Up(ctx, st, o); err != nil {
		t.Fatal(err)
	}
	built := f.builds[len(f.builds)-1].Labels[LabelBuildContext]
	if !strings.HasPrefix(built, "sha256:") {
		t.Fatalf("the built image carries no context digest: labels %v", f.builds[len(f.builds)-1].Labels)
	}
	plan := func() []string {
		t.Helper()
		pl, err := New(f, nil).Plan(ctx, st, o)
		if err != nil {
			t.Fatal(err)
		}
		return buildOps(pl)
	}
	if got := plan(); len(got) != 0 {
		t.Fatalf("unchanged context: plan builds %v", got)
	}
	dir := filepath.Join(st.Project.WorkingDir, "app")
	// An ignored file is not sent: no build.
	writeFiles(t, dir, map[string]string{"notes.md": "still ignored, longer\n"})
	if got := plan(); len(got) != 0 {
		t.Fatalf("a dockerignored edit: plan builds %v", got)
	}
	writeFiles(t, dir, map[string]string{"main.txt": "two\n"})
	if got := plan(); len(got) != 1 || got[0] != "x:dev: context changed" {
		t.Fatalf("an edited context: plan builds %v, want x:dev: context changed", got)
	}
	// To a remote engine the image is built on this machine (remote up
	// builds and sends it), never by the engine's planner.
	if pl, err := New(f, nil).Plan(ctx, st, UpOptions{ConfigDir: o.ConfigDir, Remote: true}); err != nil || len(buildOps(pl)) != 0 {
		t.Fatalf("remote plan builds %v (%v)", buildOps(pl), err)
	}
	builds := len(f.builds)
	if _, err := New(f, nil).Up(ctx, st, o); err != nil {
		t.Fatal(err)
	}
	if len(f.builds) != builds+1 || f.builds[len(f.builds)-1].Labels[LabelBuildContext] == built {
		t.Fatalf("up after an edit: %d builds (want %d), digest %s (was %s)", len(f.builds), builds+1, f.builds[len(f.builds)-1].Labels[LabelBuildContext], built)
	}
	if got := plan(); len(got) != 0 {
		t.Fatalf("after the rebuild: plan builds %v", got)
	}
	// A mode change is sent too.
	if err := os.Chmod(filepath.Join(dir, "main.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := plan(); len(got) != 1 {
		t.Fatalf("a mode change: plan builds %v", got)
	}
	// An image built elsewhere (docker build, docker compose) has no record.
	f.images["x:dev"] = "sha256:elsewhere"
	if got := plan(); len(got) != 1 || !strings.Contains(got[0], "no record of the build context") {
		t.Fatalf("an image built elsewhere: plan builds %v", got)
	}
}

// TestContextDigestCache: a file's digest is taken from the cache while its
// path, size and modification time match (the no-op up reads no content),
// and read again when one of them changes; a file modified just now is not
// kept (its time may not move on the next edit).
func TestContextDigestCache(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", "a.txt": "aaaa"})
	old := time.Now().Add(-time.Hour)
	for _, n := range []string{"Dockerfile", "a.txt"} {
		if err := os.Chtimes(filepath.Join(dir, n), old, old); err != nil {
			t.Fatal(err)
		}
	}
	c := &contextCache{Entries: map[string]*cachedContext{}}
	first, err := digestContext(dir, "Dockerfile", "", c)
	if err != nil {
		t.Fatal(err)
	}
	// Plant another digest for a.txt: a cache hit returns it.
	e := c.Entries[dir].Files["a.txt"]
	e.Sum = strings.Repeat("0", 64)
	c.Entries[dir].Files["a.txt"] = e
	if hit, _ := digestContext(dir, "Dockerfile", "", c); hit == first {
		t.Fatal("the cached file digest was not used (the file was read again)")
	}
	// Same size, new time: read again, the true digest comes back.
	if err := os.Chtimes(filepath.Join(dir, "a.txt"), old.Add(time.Second), old.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if again, _ := digestContext(dir, "Dockerfile", "", c); again != first {
		t.Fatalf("after a new modification time: %s, want %s", again, first)
	}
	// A target is part of what is built.
	if other, _ := digestContext(dir, "Dockerfile", "prod", c); other == first {
		t.Fatal("another target digests the same")
	}
	// Modified just now: not kept.
	writeFiles(t, dir, map[string]string{"b.txt": "b"})
	if _, err := digestContext(dir, "Dockerfile", "", c); err != nil {
		t.Fatal(err)
	}
	if got := c.Entries[dir].Files["b.txt"]; got.MTime != 0 {
		t.Fatalf("a file modified just now was kept with its time: %+v", got)
	}
}

// TestBuildWhy is the rule's table; NeedsBuild is the same rule without a
// context comparison.
func TestBuildWhy(t *testing.T) {
	st := loadStack(t, "services:\n  app:\n    build: .\n  pb:\n    build: .\n    pull_policy: build\n  img:\n    image: nginx\n", map[string]string{"Dockerfile": "FROM scratch\n"})
	for _, tt := range []struct {
		name, service          string
		present, force, remote bool
		stale, want            string
	}{
		{"missing", "app", false, false, false, "", "not present"},
		{"present", "app", true, false, false, "", ""},
		{"forced", "app", true, true, false, contextChanged, "--build"},
		{"stale", "app", true, false, false, contextChanged, contextChanged},
		{"stale remote", "app", true, false, true, contextChanged, ""},
		{"pull_policy build", "pb", true, false, false, "", "pull_policy is build"},
		{"pull_policy build remote", "pb", true, false, true, "", ""},
		{"no build section", "img", false, true, false, contextChanged, ""},
	} {
		s := st.Project.Services[tt.service]
		if got := buildWhy(s, tt.present, tt.stale, tt.force, tt.remote); got != tt.want {
			t.Errorf("%s: buildWhy = %q, want %q", tt.name, got, tt.want)
		}
		if NeedsBuild(s, tt.present, tt.force, tt.remote) != (buildWhy(s, tt.present, "", tt.force, tt.remote) != "") {
			t.Errorf("%s: NeedsBuild disagrees with buildWhy", tt.name)
		}
	}
}

// BenchmarkContextDigestWarm is what a no-op up pays per build context once
// its files' digests are cached: a walk and a stat of each file (here the
// repository root, the bundled stack's context).
func BenchmarkContextDigestWarm(b *testing.B) {
	root, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	c := &contextCache{Entries: map[string]*cachedContext{}}
	if _, err := digestContext(root, "Dockerfile", "", c); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := digestContext(root, "Dockerfile", "", c); err != nil {
			b.Fatal(err)
		}
	}
}
