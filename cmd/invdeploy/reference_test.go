package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/cobra/doc"
)

// update rewrites what the golden tests compare with: docs/reference from
// the cobra commands, testdata/summary.golden.
var update = flag.Bool("update", false, "rewrite docs/reference and the golden files")

// referenceDir is the generated command reference, relative to this package.
const referenceDir = "../../docs/reference"

// referenceHeader opens every generated page: the reference is the code's,
// so an edit by hand would be overwritten (and fails TestReference first).
const referenceHeader = "<!-- Generated from the cobra commands by `make docs` (go test ./cmd/invdeploy -run TestReference -update). Do not edit. -->\n\n"

// generateReference writes one markdown page per command (hidden ones, such
// as swarm edge, excluded) into dir.
func generateReference(dir string) error {
	root := newRootCommand(&globalOptions{stdin: bytes.NewReader(nil), stdout: io.Discard, stderr: io.Discard})
	root.DisableAutoGenTag = true // no date in the pages: they must be reproducible
	return doc.GenMarkdownTreeCustom(root, dir, func(string) string { return referenceHeader }, func(name string) string { return name })
}

// TestReference holds docs/reference to the commands: every page the
// generator writes must be committed byte for byte, and no other page may
// be there. Run with -update (make docs) after changing a command's help
// or flags.
func TestReference(t *testing.T) {
	got := t.TempDir()
	if err := generateReference(got); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.RemoveAll(referenceDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(referenceDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := generateReference(referenceDir); err != nil {
			t.Fatal(err)
		}
		return
	}
	gotNames, err := filepath.Glob(filepath.Join(got, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	wantNames, err := filepath.Glob(filepath.Join(referenceDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		slices.Sort(out)
		return out
	}
	if g, w := base(gotNames), base(wantNames); !slices.Equal(g, w) {
		t.Fatalf("docs/reference is stale: the commands give pages\n%v\nthe committed reference has\n%v\nrun make docs", g, w)
	}
	for _, p := range gotNames {
		name := filepath.Base(p)
		g, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		w, err := os.ReadFile(filepath.Join(referenceDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g, w) {
			t.Errorf("docs/reference/%s differs from the command's help: run make docs", name)
		}
	}
}
