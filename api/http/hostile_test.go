package http_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invdeploy/invdeploy/internal/testpg"
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
	// Text that is not UTF-8 (raw bytes, or an unpaired surrogate escape,
	// which a decoder would turn into U+FFFD) and keys sent twice (of which
	// a decoder would keep one) are refused: nothing the client sent is
	// silently changed. The problem names where.
	id := e.create(threeLines).str("id")
	for _, tc := range []struct{ method, route, body, where string }{
		{"POST", "/v1/invoices", "{\"currency\":\"EUR\",\"customer\":{\"name\":\"\xff\xfe\"}}", "customer.name"},
		{"POST", "/v1/invoices", `{"currency":"EUR","customer":{"name":"\ud800"}}`, "customer.name"},
		{"POST", "/v1/invoices", `{"currency":"EUR","customer":{"name":"A"},"memo":"x\udc00"}`, "memo"},
		{"POST", "/v1/invoices", `{"currency":"EUR","customer":{"name":"A"},"metadata":{"\ud83d":"v"}}`, "metadata"},
		{"POST", "/v1/invoices", `{"currency":"USD","currency":"EUR","customer":{"name":"A"}}`, `"currency" appears twice`},
		{"POST", "/v1/invoices", `{"currency":"EUR","customer":{"name":"A","name":"B"}}`, "customer.name"},
		{"POST", "/v1/invoices", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":1,"unit_amount":2}]}`, "line_items[0].unit_amount"},
		{"PATCH", "/v1/invoices/{id}", `{"memo":"a","memo":"b"}`, "memo"},
		{"PATCH", "/v1/invoices/{id}", "{\"memo\":\"\xc0\x80\"}", "memo"},
		{"POST", "/v1/invoices/{id}/payments", `{"amount":1,"amount":2}`, "amount"},
	} {
		r := e.want(e.do(req{method: tc.method, route: tc.route, id: id, body: tc.body}), 400, "malformed_json")
		if !strings.Contains(r.str("detail"), tc.where) {
			t.Errorf("%s %q: detail %q does not name %s", tc.method, tc.body, r.str("detail"), tc.where)
		}
	}
	// Escaped surrogate pairs and U+FFFD sent on purpose are text like any other.
	r := e.create(`{"currency":"EUR","customer":{"name":"\ud83d\ude00 \ufffd"}}`)
	if r.str("customer", "name") != "\U0001F600 \uFFFD" {
		t.Fatalf("name %q", r.str("customer", "name"))
	}
	if g := e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id}); g.str("memo") != "Thanks" || g.str("version") != "1" {
		t.Fatalf("a refused body changed the invoice: %s", g.body)
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
	// With the pool shut down a request is a 503 to retry, without
	// internals (no SQL, no driver text).
	r := e.want(e.do(req{method: "GET", route: "/v1/invoices"}), 503, "service_unavailable")
	if r.header.Get("Retry-After") == "" || strings.Contains(string(r.body), "pool") || strings.Contains(string(r.body), "closed") {
		t.Fatalf("list without database: %v %s", r.header, r.body)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines}), 503, "service_unavailable")
}

// While PostgreSQL is down (nothing listens on its port), reads and
// writes, with or without an Idempotency-Key, are 503 service_unavailable
// with Retry-After: the client retries, no false 500 alerts. The log says
// why, as a warning.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	e := newEnvAt(t, "postgres://invoicing@"+closedPort(t)+"/invoicing?sslmode=disable&connect_timeout=5")
	const id = "inv_aaaaaaaaaaaaaaaaaaaaaaaa"
	for _, r := range []req{
		{method: "POST", route: "/v1/invoices", body: threeLines},
		{method: "POST", route: "/v1/invoices", body: threeLines, header: map[string]string{"Idempotency-Key": "k1"}},
		{method: "GET", route: "/v1/invoices"},
		{method: "GET", route: "/v1/invoices/{id}", id: id},
		{method: "GET", route: "/v1/invoices/{id}/events", id: id},
		{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"m"}`},
		{method: "DELETE", route: "/v1/invoices/{id}", id: id},
		{method: "POST", route: "/v1/invoices/{id}/finalize", id: id},
		{method: "POST", route: "/v1/invoices/{id}/payments", id: id, body: `{"amount":1}`},
		{method: "GET", route: "/readyz"},
	} {
		res := e.want(e.do(r), 503, "service_unavailable")
		if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra < 1 || ra > 5 {
			t.Errorf("%s %s: Retry-After %q, want 1..5 seconds", r.method, r.route, res.header.Get("Retry-After"))
		}
		if strings.Contains(string(res.body), "connect") || strings.Contains(string(res.body), "127.0.0.1") {
			t.Errorf("%s %s: driver text reaches the client: %s", r.method, r.route, res.body)
		}
	}
	e.want(e.do(req{method: "GET", route: "/healthz"}), 200)
	if logs := e.logs.String(); strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, `"level":"WARN","msg":"service unavailable"`) {
		t.Fatalf("an unavailable database is logged as an error, or not at all:\n%s", logs)
	}
}

// When PostgreSQL drops the connections (as in a restart: the server
// terminates every backend), the request that finds its connection dead is
// a 503 to retry, and the retry works on a new connection.
func TestDatabaseRestart(t *testing.T) {
	t.Parallel()
	dbURL := testpg.New(t)
	e := newEnvAt(t, dbURL, func(c *pgxpool.Config) {
		c.MaxConns = 1
		// No liveness ping on acquire: the request must meet the dead
		// connection, as one does when the restart comes mid-request.
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	id := e.create(threeLines).str("id")
	admin, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed int
	if err := admin.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminate the pool's backend: %d terminated, %v", killed, err)
	}
	r := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id}), 503, "service_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", r.header)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id}), 200)
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
