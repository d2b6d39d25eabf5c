package http

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestObserveHotPathAllocs: counting a request (in-flight gauge, request
// counter and latency of pre-resolved children) allocates nothing once the
// children exist, so the metrics add no garbage per request.
func TestObserveHotPathAllocs(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	m.observeRequest("GET", "/v1/invoices/{id}", 200, time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		m.inFlight.Inc()
		m.observeRequest("GET", "/v1/invoices/{id}", 200, time.Millisecond)
		m.inFlight.Dec()
	})
	if allocs != 0 {
		t.Fatalf("counting one request allocates %v times, want 0", allocs)
	}
}

// TestRequestLineIsSlogs: the request line written directly (Config.AccessLog)
// is byte for byte what slog's JSON handler writes for observe's record, and
// a line it cannot write (a path that needs escaping) is left to slog.
func TestRequestLineIsSlogs(t *testing.T) {
	at := time.Date(2026, 12, 6, 8, 39, 33, 123456789, time.UTC)
	cases := []struct {
		level        slog.Level
		method, path string
		status       int
		d            time.Duration
		direct       bool
	}{
		{slog.LevelInfo, "GET", "/v1/invoices/inv_abcdefghijklmnopqrstuvwx", 200, 1234567 * time.Nanosecond, true},
		{slog.LevelInfo, "POST", "/v1/invoices", 201, 0, true},
		{slog.LevelWarn, "GET", "/readyz", 503, 2 * time.Second, true},
		{slog.LevelDebug, "GET", "/healthz", 200, time.Microsecond, true},
		{slog.LevelError, "PATCH", "/v1/invoices/x", 500, 999 * time.Microsecond, true},
		{slog.LevelInfo, "GET", "/a<b>&c%20'", 404, time.Millisecond, true},
		{slog.LevelInfo, "GET", "/x\"y", 404, time.Millisecond, false},
		{slog.LevelInfo, "GET", "/é", 404, time.Millisecond, false},
		{slog.LevelInfo, "GET", "/\x7f", 404, time.Millisecond, false},
	}
	for _, tc := range cases {
		var want bytes.Buffer
		r := slog.NewRecord(at, tc.level, "request", 0)
		r.AddAttrs(slog.String("request_id", "req_0123456789abcdef01234567"), slog.String("method", tc.method), slog.String("route", "/v1/invoices/{id}"),
			slog.String("path", tc.path), slog.Int("status", tc.status), slog.Float64("duration_ms", durationMillis(tc.d)), slog.Int("bytes", 612))
		if err := slog.NewJSONHandler(&want, nil).Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		got, ok := appendRequestLine(nil, at, tc.level, "req_0123456789abcdef01234567", tc.method, "/v1/invoices/{id}", tc.path, tc.status, tc.d, 612)
		if ok != tc.direct {
			t.Errorf("%q: written directly %v, want %v", tc.path, ok, tc.direct)
		}
		if ok && string(got) != want.String() {
			t.Errorf("%q:\n got %s\nwant %s", tc.path, got, want.String())
		}
	}
	// Every millisecond boundary and precision of the time.
	for _, ns := range []int{0, 1, 999999, 1000000, 100000000, 999999999} {
		at := time.Date(2026, 1, 2, 3, 4, 5, ns, time.FixedZone("x", 3600))
		var want bytes.Buffer
		r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
		r.AddAttrs(slog.String("request_id", "r"), slog.String("method", "GET"), slog.String("route", "/"),
			slog.String("path", "/"), slog.Int("status", 200), slog.Float64("duration_ms", 0.001), slog.Int("bytes", 0))
		slog.NewJSONHandler(&want, nil).Handle(context.Background(), r)
		got, _ := appendRequestLine(nil, at, slog.LevelInfo, "r", "GET", "/", "/", 200, time.Microsecond, 0)
		if string(got) != want.String() {
			t.Errorf("time %v:\n got %s\nwant %s", at, got, want.String())
		}
	}
}
