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

	"github.com/invdeploy/invdeploy/deployer"
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
	checkFieldsGuide(t)
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

// fieldsGuide is the page that shows the field table.
const fieldsGuide = "../../docs/guides/fields.md"

// fieldsGuideText is docs/guides/fields.md: its prose and the table
// rendered from deployer.Fields.
func fieldsGuideText() string {
	return `<!-- Generated from deployer/fields.go by ` + "`make docs`" + `. Do not edit. -->

# Compose fields per target

One compose file runs on every target, but not every target can honour every field.
For each field and each target the table says: **yes** (honoured, with a note where how
is not obvious) or **refused**. ` + "`check`" + ` and every ` + "`up`" + ` refuse (exit 3, nothing
changed) a stack that sets a field its target does not honour, naming the field, the
service and the target, e.g.:

` + "```" + `
preflight refused (nothing was created or changed):
  - field services.web.dns: service web: dns is not honoured on kubernetes: not yet supported; remove it from the compose file or deploy to a target that honours it
` + "```" + `

Nothing is dropped quietly: a field missing from this table is refused on every target.
"local" is one Docker engine: ` + "`up`" + ` on this machine and ` + "`remote up`" + `. The table is
deployer/fields.go (each row has an example there); TestFieldTable holds it to the
converters: setting a field marked yes changes the target's runtime spec, setting one
marked refused fails preflight.

` + deployer.FieldTableMarkdown()
}

func checkFieldsGuide(t *testing.T) {
	t.Helper()
	want := fieldsGuideText()
	if *update {
		if err := os.WriteFile(fieldsGuide, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(fieldsGuide)
	if err != nil || string(got) != want {
		t.Errorf("docs/guides/fields.md does not match deployer/fields.go: run make docs")
	}
}
