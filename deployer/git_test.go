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

// The bundled API image is tagged with the checkout's commit; uncommitted
// changes would not be in it, so up says so instead of deploying stale code
// without a word.
func TestBundledStackTaggedWithCommitWarnsWhenDirty(t *testing.T) {
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

	load := func() *Stack {
		t.Helper()
		st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "inv"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := load()
	if img := st.Project.Services["api"].Image; img != "invoicing-api:"+sha {
		t.Fatalf("api image %s, want invoicing-api:%s", img, sha)
	}
	if len(st.Warnings) != 0 {
		t.Fatalf("clean checkout warns: %v", st.Warnings)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main // edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(load().Warnings, "\n")
	if !strings.Contains(w, "uncommitted changes") || !strings.Contains(w, sha) || !strings.Contains(w, "--build") {
		t.Fatalf("dirty checkout: warnings %q", w)
	}
}
