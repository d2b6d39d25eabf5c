package postgres_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// api/postgres stores invoices and knows nothing of HTTP: no net/http or
// api/http import, no route paths, no status codes. The response an
// idempotency key replays is produced by api/http and stored as opaque data.
func TestStorageKnowsNoHTTP(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources: %v", err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "net/http" || strings.HasSuffix(p, "/api/http") {
				t.Errorf("%s imports %s", f, p)
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok {
				return true
			}
			switch v := lit.Value; {
			case lit.Kind == token.STRING && strings.Contains(v, "/v1/"):
				t.Errorf("%s: route path %s in storage", fset.Position(lit.Pos()), v)
			case lit.Kind == token.INT && len(v) == 3 && v >= "200" && v <= "599":
				t.Errorf("%s: HTTP status %s in storage", fset.Position(lit.Pos()), v)
			}
			return true
		})
	}
}
