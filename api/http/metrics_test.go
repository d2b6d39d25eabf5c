package http_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	apihttp "github.com/invdeploy/invdeploy/api/http"
	"github.com/invdeploy/invdeploy/api/postgres"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

// newMetricsEnv is a server wired as cmd/invoicing-api wires it: the pool's
// collector registered next to the server's own metrics.
func newMetricsEnv(t *testing.T) *env {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testpg.New(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(postgres.NewPoolCollector(pool))
	logs := &lockedBuffer{}
	srv := apihttp.NewServer(apihttp.Config{Service: postgres.NewStore(pool, postgres.DefaultTimeout),
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Registry: reg})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &env{t: t, url: ts.URL, pool: pool, logs: &logs.Buffer}
}

// scrape returns the value of every sample of /metrics by its series name
// with labels as exposed, e.g. `x_total{currency="EUR"}`.
func (e *env) scrape() map[string]float64 {
	e.t.Helper()
	m := e.want(e.do(req{method: "GET", route: "/metrics"}), 200)
	out := map[string]float64{}
	for _, line := range strings.Split(string(m.body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestBusinessAndPoolMetrics(t *testing.T) {
	t.Parallel()
	e := newMetricsEnv(t)
	before := e.scrape()
	for _, s := range []string{"invoicing_invoices_paid_total", "invoicing_invoices_voided_total",
		"invoicing_invoices_marked_uncollectible_total"} {
		if v, ok := before[s]; !ok || v != 0 {
			t.Errorf("before any write %s = %v (present %v), want 0", s, v, ok)
		}
	}

	post := func(id, action, body string, header map[string]string) resp {
		return e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/" + action, id: id, body: body, header: header}), 200)
	}
	// EUR 213.48 finalized, paid in two payments; the second is sent twice
	// with one Idempotency-Key and the replay must not count again.
	a := e.create(threeLines).str("id")
	post(a, "finalize", "", nil)
	post(a, "payments", `{"amount":20000}`, nil)
	key := map[string]string{"Idempotency-Key": "metrics-test-pay-1"}
	post(a, "payments", `{"amount":1348}`, key)
	if r := post(a, "payments", `{"amount":1348}`, key); r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("second payment with the same key was not a replay: %v", r.header)
	}
	// USD 5.00 finalized then voided; another finalized then uncollectible.
	usd := `{"currency":"USD","customer":{"name":"B"},"line_items":[{"description":"x","quantity":1,"unit_amount":500}]}`
	b := e.create(usd).str("id")
	post(b, "finalize", "", nil)
	post(b, "void", "", nil)
	c := e.create(usd).str("id")
	post(c, "finalize", "", nil)
	post(c, "mark_uncollectible", "", nil)
	// A failed transition counts nothing: b is void already.
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: b}), 409, "invalid_state")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: a, body: `{"amount":1}`}), 409, "invalid_state")

	got := e.scrape()
	for s, want := range map[string]float64{
		"invoicing_invoices_created_total":                      3,
		"invoicing_invoices_finalized_total":                    3,
		"invoicing_invoices_paid_total":                         1,
		"invoicing_invoices_voided_total":                       1,
		"invoicing_invoices_marked_uncollectible_total":         1,
		`invoicing_invoiced_amount_minor_total{currency="EUR"}`: 21348,
		`invoicing_invoiced_amount_minor_total{currency="USD"}`: 1000,
		`invoicing_paid_amount_minor_total{currency="EUR"}`:     21348,
		"invoicing_db_pool_max_connections":                     3,
		// The scrape itself is the one request in flight.
		"invoicing_http_requests_in_flight": 1,
	} {
		if v, ok := got[s]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", s, v, ok, want)
		}
	}
	if _, ok := got[`invoicing_paid_amount_minor_total{currency="USD"}`]; ok {
		t.Errorf("USD payments exported though none was recorded")
	}
	// Every write acquired a connection; the first found the pool empty.
	for _, s := range []string{"invoicing_db_pool_acquires_total", "invoicing_db_pool_empty_acquires_total",
		"invoicing_db_pool_total_connections"} {
		if got[s] < 1 || got[s] <= before[s] && s == "invoicing_db_pool_acquires_total" {
			t.Errorf("%s = %v (before %v), want it to have moved", s, got[s], before[s])
		}
	}
	for _, s := range []string{"invoicing_db_pool_acquired_connections", "invoicing_db_pool_idle_connections",
		"invoicing_db_pool_acquire_seconds_total", "invoicing_db_pool_empty_acquire_wait_seconds_total",
		"invoicing_db_pool_canceled_acquires_total"} {
		if _, ok := got[s]; !ok {
			t.Errorf("/metrics lacks %s", s)
		}
	}
}

// TestInFlightGauge holds one request open (its body not yet sent) and
// sees it counted while it runs and no longer once it ends.
func TestInFlightGauge(t *testing.T) {
	t.Parallel()
	e := newMetricsEnv(t)
	pr, pw := io.Pipe()
	hr, err := http.NewRequest("POST", e.url+"/v1/invoices", pr)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	done := make(chan int, 1)
	go func() {
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			done <- 0
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		done <- res.StatusCode
	}()
	_, _ = pw.Write([]byte(`{"currency":`)) // the handler is now reading the body
	deadline := time.Now().Add(10 * time.Second)
	for e.scrape()["invoicing_http_requests_in_flight"] != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("in-flight gauge never counted the held request: %v", e.scrape()["invoicing_http_requests_in_flight"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, _ = pw.Write([]byte(`"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":1}]}`))
	pw.Close()
	if status := <-done; status != http.StatusCreated {
		t.Fatalf("held request ended with %d, want 201", status)
	}
	if v := e.scrape()["invoicing_http_requests_in_flight"]; v != 1 {
		t.Fatalf("in-flight after the held request ended = %v, want 1 (the scrape)", v)
	}
}
