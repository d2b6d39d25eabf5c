package http_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	apihttp "github.com/invdeploy/invdeploy/api/http"
)

// readiness is the fake service with a database check that can fail.
type readiness struct {
	*fakeService
	mu  sync.Mutex
	err error
}

func (r *readiness) Ready(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *readiness) set(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

// probeServer is a server logging at level into its returned buffer, the
// request lines written directly (as cmd/invoicing-api does) or through
// slog.
func probeServer(t *testing.T, level slog.Level, direct bool) (http.Handler, *readiness, *lockedBuffer) {
	t.Helper()
	_, fake := newFakeHandler(t)
	svc := &readiness{fakeService: fake}
	logs := &lockedBuffer{}
	cfg := apihttp.Config{Service: svc, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level})),
		Registry: prometheus.NewRegistry()}
	if direct {
		cfg.AccessLog = logs
	}
	return apihttp.NewServer(cfg), svc, logs
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func serve(h http.Handler, method, path string) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w.Code
}

// Health checks and scrapes (/healthz, /readyz, /metrics) write no line at
// INFO, failing or not: a container probed every 2 s shows its cause, not
// pages of probes. A failing /readyz logs one WARN with the cause when
// readiness changes, and one INFO when it is back. The probes are counted
// in invoicing_http_requests_total, and logged at DEBUG when asked.
// Every other request is logged as before.
func TestProbesAreNotLoggedAtInfo(t *testing.T) {
	for _, direct := range []bool{true, false} {
		h, svc, logs := probeServer(t, slog.LevelInfo, direct)
		for range 3 {
			for _, p := range []struct {
				method, path string
				want         int
			}{{"GET", "/healthz", 200}, {"HEAD", "/healthz", 200}, {"GET", "/readyz", 200}, {"GET", "/metrics", 200}} {
				if got := serve(h, p.method, p.path); got != p.want {
					t.Fatalf("%s %s: %d", p.method, p.path, got)
				}
			}
		}
		if s := logs.String(); s != "" {
			t.Fatalf("direct=%v: probes logged at INFO:\n%s", direct, s)
		}
		svc.set(errors.New("failed to connect to `user=invoicing database=invoicing`: server error: FATAL: password authentication failed"))
		for range 5 {
			if got := serve(h, "GET", "/readyz"); got != 503 {
				t.Fatalf("/readyz with the database check failing: %d", got)
			}
		}
		svc.set(nil)
		for range 3 {
			serve(h, "GET", "/readyz")
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], `"level":"WARN","msg":"readiness: not ready"`) ||
			!strings.Contains(lines[0], "password authentication failed") || !strings.Contains(lines[1], `"level":"INFO","msg":"readiness: ready again"`) {
			t.Fatalf("direct=%v: 5 failing then 3 passing probes logged:\n%s\nwant one WARN with the cause, one INFO", direct, logs.String())
		}
		logs.Reset()
		if got := serve(h, "GET", "/v1/invoices"); got != 200 {
			t.Fatalf("list: %d", got)
		}
		serve(h, "GET", "/nope")
		lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], `"level":"INFO","msg":"request"`) || !strings.Contains(lines[0], `"route":"/v1/invoices"`) ||
			!strings.Contains(lines[1], `"status":404`) {
			t.Fatalf("direct=%v: other requests are not logged as before:\n%s", direct, logs.String())
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		for _, want := range []string{
			`invoicing_http_requests_total{method="GET",route="/healthz",status="200"} 3`,
			`invoicing_http_requests_total{method="HEAD",route="/healthz",status="200"} 3`,
			`invoicing_http_requests_total{method="GET",route="/readyz",status="200"} 6`,
			`invoicing_http_requests_total{method="GET",route="/readyz",status="503"} 5`,
			`invoicing_http_requests_total{method="GET",route="/metrics",status="200"} 3`,
		} {
			if !strings.Contains(w.Body.String(), want) {
				t.Errorf("direct=%v: /metrics lacks %s", direct, want)
			}
		}
	}
}

// At DEBUG the probes are logged, as DEBUG lines.
func TestProbesAreLoggedAtDebug(t *testing.T) {
	for _, direct := range []bool{true, false} {
		h, _, logs := probeServer(t, slog.LevelDebug, direct)
		serve(h, "GET", "/healthz")
		serve(h, "GET", "/readyz")
		serve(h, "GET", "/metrics")
		serve(h, "GET", "/v1/invoices")
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 4 {
			t.Fatalf("direct=%v: %d lines:\n%s", direct, len(lines), logs.String())
		}
		for i, route := range []string{"/healthz", "/readyz", "/metrics"} {
			if !strings.Contains(lines[i], `"level":"DEBUG","msg":"request"`) || !strings.Contains(lines[i], `"route":"`+route+`"`) {
				t.Errorf("direct=%v: probe line %s", direct, lines[i])
			}
		}
		if !strings.Contains(lines[3], `"level":"INFO"`) {
			t.Errorf("direct=%v: request line %s", direct, lines[3])
		}
	}
	// At WARN nothing of the above is written, directly or not.
	h, _, logs := probeServer(t, slog.LevelWarn, true)
	serve(h, "GET", "/v1/invoices")
	serve(h, "GET", "/healthz")
	if logs.String() != "" {
		t.Fatalf("at WARN: %s", logs.String())
	}
}
