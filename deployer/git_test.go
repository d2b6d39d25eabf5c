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
