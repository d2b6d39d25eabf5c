package http_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Inputs that pass JSON decoding but that PostgreSQL would refuse (NUL,
// invalid UTF-8, odd ids) are answered as client errors, never as 500s.
func TestHostileInputsAgainstDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, body := range []string{
		`{"currency":"EUR","customer":{"name":"A\u0000B"}}`,
		`{"currency":"EUR","customer":{"name":"A"},"memo":"\u0000"}`,
		`{"currency":"EUR","customer":{"name":"A"},"metadata":{"k\u0000":"v"}}`,
		`{"currency":"EUR","customer":{"name":"A"},"metadata":{"k":"\u0000"}}`,
		`{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"\u0000","quantity":1,"unit_amount":1}]}`,
	} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices", body: body}), 422, "validation_failed")
	}
	// Invalid UTF-8 is replaced by U+FFFD while decoding, and stored as such.
	r := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: "{\"currency\":\"EUR\",\"customer\":{\"name\":\"\xff\"}}"}), 201)
	if r.str("customer", "name") != "\uFFFD" {
		t.Fatalf("name %q", r.str("customer", "name"))
	}
	for _, id := range []string{"%00", "%ff", "inv_aaaaaaaaaaaaaaaaaaaaaaaa", strings.Repeat("x", 3000)} {
		e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id}), 404, "not_found")
		e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id}), 404, "not_found")
	}
	for _, q := range []string{"customer_email=%00", "customer_email=%ff", "status=%00", "starting_after=%00", "limit=%00"} {
		e.want(e.do(req{method: "GET", route: "/v1/invoices", query: q}), 422, "validation_failed")
	}
	for _, k := range []string{"\xff\xfe", "tab\there"} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices", body: `{"currency":"EUR","customer":{"name":"A"}}`, header: map[string]string{"Idempotency-Key": k}}), 422, "validation_failed")
	}
}

// The committed fuzz corpus of the decoder, replayed against the real
// database: no request body makes the server fail.
func TestFuzzCorpusAgainstDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	files, _ := filepath.Glob("../testdata/fuzz/FuzzParseInvoiceInput/*")
	files2, _ := filepath.Glob("../testdata/fuzz/FuzzParseInvoicePatch/*")
	if len(files) == 0 {
		t.Fatal("no corpus found")
	}
	id := e.create(threeLines).str("id")
	for i, f := range append(files, files2...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			continue
		}
		body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		method, route := "POST", "/v1/invoices"
		if i >= len(files) {
			method, route = "PATCH", "/v1/invoices/{id}"
		}
		if r := e.do(req{method: method, route: route, id: id, body: body}); r.status >= 500 {
			t.Fatalf("%s %s with %q: %d %s", method, route, body, r.status, r.body)
		}
	}
}

// /readyz is 503 when the schema is not migrated or the database is gone.
func TestReadyzWithoutDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.want(e.do(req{method: "GET", route: "/readyz"}), 200)
	if _, err := e.pool.Exec(t.Context(), `ALTER TABLE goose_db_version RENAME TO goose_db_version_away`); err != nil {
		t.Fatal(err)
	}
	e.want(e.do(req{method: "GET", route: "/readyz"}), 503, "service_unavailable")
	if _, err := e.pool.Exec(t.Context(), `ALTER TABLE goose_db_version_away RENAME TO goose_db_version`); err != nil {
		t.Fatal(err)
	}
	e.want(e.do(req{method: "GET", route: "/readyz"}), 200)
	e.pool.Close()
	e.want(e.do(req{method: "GET", route: "/readyz"}), 503, "service_unavailable")
	e.want(e.do(req{method: "GET", route: "/healthz"}), 200)
	// With the database gone a request fails as a 500 problem without
	// internals (no SQL, no driver text).
	r := e.do(req{method: "GET", route: "/v1/invoices"})
	if r.status != 500 || r.str("code") != "internal" || strings.Contains(string(r.body), "pool") || strings.Contains(string(r.body), "closed") {
		t.Fatalf("list without database: %d %s", r.status, r.body)
	}
}
