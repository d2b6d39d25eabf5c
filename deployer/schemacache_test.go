package deployer

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSchemaCache: an unchanged file in an unchanged environment skips
// compose-go's schema the second time and gives the same project; any
// change to what the schema judged (content, interpolated environment) is
// validated again and refused when invalid; files that pull in others are
// never cached; nothing in the cache file shows a value of the environment.
func TestSchemaCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	skipped := 0
	old := schemaSkipped
	schemaSkipped = func() { skipped++ }
	t.Cleanup(func() { schemaSkipped = old })

	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	load := func(env ...string) (*Stack, error) {
		return Load(context.Background(), LoadOptions{Files: []string{file}, ProjectName: "t", Env: env})
	}
	const valid = "services:\n  app:\n    image: busybox\n    pull_policy: ${POLICY:-missing}\n    environment:\n      TOKEN: ${TOKEN:-x}\n"

	write(valid)
	first, err := load("TOKEN=s3cr3t-value-123")
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 0 {
		t.Fatalf("first load skipped the schema")
	}
	second, err := load("TOKEN=s3cr3t-value-123")
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 1 {
		t.Fatalf("an unchanged file in the same environment was validated again (skipped %d)", skipped)
	}
	if !reflect.DeepEqual(first.Project, second.Project) {
		t.Errorf("the project loaded without the schema differs:\n%+v\n%+v", first.Project, second.Project)
	}

	// The environment makes the document: an interpolated value the schema
	// refuses is refused although the file is the one cached.
	if _, err := load("TOKEN=s3cr3t-value-123", "POLICY=sometimes"); err == nil || !strings.Contains(err.Error(), "pull_policy") {
		t.Errorf("an invalid interpolated pull_policy loaded: %v", err)
	}
	// A changed file is validated.
	write(strings.Replace(valid, "image: busybox", "image: busybox\n    bogus_key: 1", 1))
	if _, err := load("TOKEN=s3cr3t-value-123"); err == nil || !strings.Contains(err.Error(), "bogus_key") {
		t.Errorf("a changed, invalid file loaded: %v", err)
	}
	if skipped != 1 {
		t.Errorf("skipped the schema for changed input (%d)", skipped)
	}

	// include/extends pull in files the key cannot see: never cached.
	write("services:\n  base:\n    image: busybox\n  app:\n    extends: base\n")
	for range 2 {
		if _, err := load(); err != nil {
			t.Fatal(err)
		}
	}
	if skipped != 1 {
		t.Errorf("a file with extends skipped the schema")
	}

	// The bundled stack is cached too.
	wd := t.TempDir()
	if err := os.WriteFile(filepath.Join(wd, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := Load(context.Background(), LoadOptions{WorkingDir: wd, ProjectName: "inv"}); err != nil {
			t.Fatal(err)
		}
	}
	if skipped != 2 {
		t.Errorf("the bundled stack loaded twice skipped the schema %d times, want 1", skipped-1)
	}

	b, err := os.ReadFile(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "invdeploy", "schema-validated.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cr3t") {
		t.Errorf("the cache shows an environment value: %s", b)
	}
	if fi, err := os.Stat(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "invdeploy", "schema-validated.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode: %v %v", fi.Mode(), err)
	}
}

// TestSchemaCacheRelativePath: a relative -f with a working directory is
// keyed on the file compose-go reads, whichever directory that is: a valid
// file of the same name elsewhere never vouches for an invalid one.
func TestSchemaCacheRelativePath(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cwd, wd := t.TempDir(), t.TempDir()
	valid := "services:\n  app:\n    image: busybox\n"
	invalid := "services:\n  app:\n    image: busybox\n    bogus_key: 1\n"
	for dir, content := range map[string]string{cwd: valid, wd: invalid} {
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(cwd)
	load := func() error {
		_, err := Load(context.Background(), LoadOptions{Files: []string{"compose.yaml"}, WorkingDir: wd, ProjectName: "t"})
		return err
	}
	t.Setenv("INVDEPLOY_SCHEMA_CACHE", "off")
	want := load()
	t.Setenv("INVDEPLOY_SCHEMA_CACHE", "")
	for i := range 3 {
		if got := load(); (got == nil) != (want == nil) {
			t.Fatalf("load %d with the cache: %v; without: %v", i, got, want)
		}
	}
}

// TestSchemaCacheable: whether a file may be cached is decided on the YAML
// compose-go decodes, not on its spelling.
func TestSchemaCacheable(t *testing.T) {
	utf16 := func(s string) string {
		b := []byte{0xff, 0xfe} // little-endian byte-order mark
		for _, r := range s {
			b = append(b, byte(r), byte(r>>8))
		}
		return string(b)
	}
	for _, c := range []struct {
		name, yaml string
		want       bool
	}{
		{"plain", "services:\n  app:\n    image: busybox\n", true},
		{"empty services", "services:\n", true},
		{"a comment naming extends", "# extends and include are not used here\nservices:\n  app:\n    image: busybox\n", true},
		{"include", "include:\n  - other.yaml\nservices: {}\n", false},
		{"version", "version: '3.8'\nservices:\n  app:\n    image: busybox\n", false},
		{"extends", "services:\n  app:\n    extends: {file: base.yaml, service: b}\n", false},
		{"escaped extends", "services:\n  app:\n    \"ext\\x65nds\": {file: base.yaml, service: b}\n", false},
		{"escaped include", "\"\\x69nclude\": [other.yaml]\nservices: {}\n", false},
		{"extends by a merge key", "x-base: &b\n  extends: {file: base.yaml, service: b}\nservices:\n  app:\n    <<: *b\n    image: busybox\n", false},
		{"include in a second document", "services:\n  app:\n    image: busybox\n---\ninclude: [other.yaml]\n", false},
		{"UTF-16 extends", utf16("services:\n  app:\n    extends: {file: base.yaml, service: b}\n"), false},
		{"custom tag", "services:\n  app: !reset\n", false},
		{"not YAML", "services: [\n", false},
	} {
		if got := cacheable([]byte(c.yaml)); got != c.want {
			t.Errorf("%s: cacheable = %v, want %v", c.name, got, c.want)
		}
	}
}
