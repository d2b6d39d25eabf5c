package deployer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildRefusesSecretsInContext: Build (which push and remote up call too)
// runs the build-context rule of preflight and sends nothing when the context
// holds credentials that are not dockerignored.
func TestBuildRefusesSecretsInContext(t *testing.T) {
	files := map[string]string{
		"Dockerfile":      "FROM scratch\nCOPY . /app\n",
		"server.key":      "-----BEGIN PRIVATE KEY-----\n",
		"api/id_rsa":      "-----BEGIN OPENSSH PRIVATE KEY-----\n",
		".env.production": "API_TOKEN=abc\n",
		"main.go":         "package main\n",
	}
	st := loadStack(t, "services:\n  app:\n    build: .\n    image: app\n", files)
	f := newFakeEngine()
	_, err := New(f, nil).Build(context.Background(), st, BuildOptions{})
	if !errors.Is(err, ErrPreflight) {
		t.Fatalf("want a preflight refusal, got %v", err)
	}
	for _, want := range []string{"server.key: looks like a secret", "api/id_rsa: looks like a secret", ".env.production: looks like a secret", "services.app"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not mention %q:\n%v", want, err)
		}
	}
	if n := f.countCalls("build "); n != 0 || f.buildFiles != nil {
		t.Fatalf("a refused build reached the engine: %v", f.mutations())
	}

	// The same rule as check: the problems are the ones preflight reports.
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("refusal is not a *PreflightError: %T", err)
	}
	_, cerr := New(newFakeEngine(), nil).Check(context.Background(), st, CheckOptions{SkipImages: true})
	for _, p := range pe.Problems {
		if cerr == nil || !strings.Contains(cerr.Error(), p.String()) {
			t.Errorf("build refused %q but check does not report it", p)
		}
	}
}

// TestBuildSendsDockerignoredContext: once the files are dockerignored the
// build goes ahead and none of them is in the context sent.
func TestBuildSendsDockerignoredContext(t *testing.T) {
	st := loadStack(t, "services:\n  app:\n    build: .\n    image: app\n", map[string]string{
		"Dockerfile":      "FROM scratch\n",
		"server.key":      "k",
		"api/id_rsa":      "k",
		".env.production": "k",
		".dockerignore":   "server.key\napi/id_rsa\n.env.*\n",
	})
	f := newFakeEngine()
	if _, err := New(f, nil).Build(context.Background(), st, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(f.buildFiles) == 0 {
		t.Fatal("no build context sent")
	}
	for _, name := range f.buildFiles {
		if name == "server.key" || name == "api/id_rsa" || name == ".env.production" {
			t.Fatalf("context holds %s", name)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		dir, path, rel string
		ok             bool
	}{
		{"/a/app", "/a/app/pw", "pw", true},
		{"/a/app", "/a/app/..pw", "..pw", true},
		{"/a/app", "/a/app", ".", true},
		{"/a/app", "/a/pw", "", false},
		{"/a/app", "/a/apple/pw", "", false},
		{"/a/app", "/b", "", false},
	} {
		rel, ok := within(tt.dir, tt.path)
		if rel != tt.rel || ok != tt.ok {
			t.Errorf("within(%q, %q) = %q, %v; want %q, %v", tt.dir, tt.path, rel, ok, tt.rel, tt.ok)
		}
	}
}

// TestContextProblemsRealPaths: the context rule sees a secret by its real
// path, whichever symlinks lead to it or to the context.
func TestContextProblemsRealPaths(t *testing.T) {
	t.Run("context reached through a symlink", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"real/Dockerfile": "FROM scratch\n", "real/pw.txt": "a-long-strong-value-123",
			"compose.yaml": "services:\n  app:\n    build: ./ctx\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./real/pw.txt\n"})
		os.Symlink("real", filepath.Join(dir, "ctx"))
		st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, fakeWithImages(), st, UpOptions{}, "secret file would enter the build context of services.app", "add pw.txt to")
	})
	t.Run("link inside the context to a secret outside is sent as a link", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"app/Dockerfile": "FROM scratch\n", "private/pw.txt": "a-long-strong-value-123",
			"compose.yaml": "services:\n  app:\n    build: ./app\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./app/link/pw.txt\n"})
		os.Symlink("../private", filepath.Join(dir, "app", "link"))
		st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{}); err != nil {
			t.Fatalf("refused: %v", err)
		}
		var tarBuf bytes.Buffer
		if err := writeContextTar(&tarBuf, filepath.Join(dir, "app"), "Dockerfile"); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tarBuf.String(), "a-long-strong-value-123") {
			t.Fatal("the context carries the secret's value")
		}
	})
}

// FuzzWithin: within never places a path outside dir: the relative path it
// returns joins back to path and does not climb out.
func FuzzWithin(f *testing.F) {
	for _, s := range [][2]string{{"/a/app", "/a/app/..pw"}, {"/a/app", "/a/pw"}, {"/", "/x"}, {"/a", "/a"}, {"/a/b", "/a/b/../c"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, dir, path string) {
		dir, path = filepath.Clean("/"+dir), filepath.Clean("/"+path)
		rel, ok := within(dir, path)
		if !ok {
			if strings.HasPrefix(path+"/", strings.TrimSuffix(dir, "/")+"/") {
				t.Fatalf("within(%q, %q) = outside", dir, path)
			}
			return
		}
		if filepath.Join(dir, rel) != path || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("within(%q, %q) = %q", dir, path, rel)
		}
	})
}
