package postgres

import (
	"os"
	"strings"
	"testing"
)

// TestBenchRunsTheStoreSQL: make bench-api compares the API with pgbench
// and with a minimal hand-written server on the same statements; a change
// to the store's SQL that the bench files do not follow would make that
// comparison meaningless.
func TestBenchRunsTheStoreSQL(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../scripts/bench-api/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	minimal := read("minimal/main.go")
	for what, stmt := range map[string]string{
		"create": createSQL,
		"get":    invoiceColumns + invoiceFrom + ` WHERE i.id = $1`,
	} {
		if !strings.Contains(minimal, stmt) {
			t.Errorf("scripts/bench-api/minimal/main.go does not run the store's %s statement:\n%s", what, stmt)
		}
	}
	for _, file := range []string{"get.sql", "list.sql"} {
		if sql := read(file); !strings.Contains(sql, invoiceColumns) || !strings.Contains(sql, strings.TrimSpace(invoiceFrom)) {
			t.Errorf("scripts/bench-api/%s does not select invoiceColumns%s", file, invoiceFrom)
		}
	}
}
