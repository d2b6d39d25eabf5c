package http

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/invdeploy/invdeploy/api"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	created   prometheus.Counter
	finalized prometheus.Counter
	paid      prometheus.Counter
	voided    prometheus.Counter
	// uncollectible counts invoices marked uncollectible.
	uncollectible prometheus.Counter
	// invoiced and paidAmount are minor units by currency. The currency
	// label is bounded: the API accepts ISO 4217 codes only.
	invoiced, paidAmount *prometheus.CounterVec
	// children caches the request counter and latency histogram of each
	// (method, route, status): WithLabelValues hashes the label values and
	// takes a lock on every call, a cost paid twice per request otherwise.
	// The key space is bounded (metricMethod, route patterns, status codes).
	children sync.Map // requestLabels -> *requestChildren
}

type requestLabels struct {
	method, route string
	status        int
}

type requestChildren struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// observeRequest counts one request and records its duration.
func (m *metrics) observeRequest(method, route string, status int, d time.Duration) {
	key := requestLabels{method, route, status}
	c, ok := m.children.Load(key)
	if !ok {
		code := strconv.Itoa(status)
		c, _ = m.children.LoadOrStore(key, &requestChildren{
			requests: m.requests.WithLabelValues(method, route, code),
			latency:  m.latency.WithLabelValues(method, route, code),
		})
	}
	rc := c.(*requestChildren)
	rc.requests.Inc()
	rc.latency.Observe(d.Seconds())
}

// finalizedInvoice counts a committed finalize of inv, which is paid at
// once when its total is zero.
func (m *metrics) finalizedInvoice(inv *api.Invoice) {
	m.finalized.Inc()
	// WithLabelValues (a hash and a read lock) is fine here: it runs once
	// per committed write, next to a database round trip, not per request.
	m.invoiced.WithLabelValues(inv.Currency).Add(float64(inv.Total))
	if inv.Status == api.StatusPaid {
		m.paid.Inc()
	}
}

// payment counts a committed payment of amount minor units on inv.
func (m *metrics) payment(inv *api.Invoice, amount int64) {
	m.paidAmount.WithLabelValues(inv.Currency).Add(float64(amount))
	if inv.Status == api.StatusPaid {
		m.paid.Inc()
	}
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invoicing_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "invoicing_http_request_duration_seconds", Help: "HTTP request latency by method, route and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route", "status"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "invoicing_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
		created:   prometheus.NewCounter(prometheus.CounterOpts{Name: "invoicing_invoices_created_total", Help: "Invoices created."}),
		finalized: prometheus.NewCounter(prometheus.CounterOpts{Name: "invoicing_invoices_finalized_total", Help: "Invoices finalized."}),
		paid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "invoicing_invoices_paid_total", Help: "Invoices that became paid (by a payment, or at finalize when nothing was due).",
		}),
		voided: prometheus.NewCounter(prometheus.CounterOpts{Name: "invoicing_invoices_voided_total", Help: "Invoices voided."}),
		uncollectible: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "invoicing_invoices_marked_uncollectible_total", Help: "Invoices marked uncollectible.",
		}),
		invoiced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invoicing_invoiced_amount_minor_total", Help: "Totals of finalized invoices, in minor units (cents) by currency.",
		}, []string{"currency"}),
		paidAmount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invoicing_paid_amount_minor_total", Help: "Payments recorded, in minor units (cents) by currency.",
		}, []string{"currency"}),
	}
	reg.MustRegister(m.requests, m.latency, m.inFlight, m.created, m.finalized, m.paid, m.voided,
		m.uncollectible, m.invoiced, m.paidAmount,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type ctxKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// validRequestID accepts a caller's X-Request-Id only when it is short and
// plain, so it is safe to log and echo.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// newRequestID returns a unique-enough id for correlating logs; it needs no
// secrecy, so it comes from the runtime's fast generator, not the kernel.
func newRequestID() string {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	return "req_" + hex.EncodeToString(b[:])
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// observe assigns a request id, then logs and measures the request.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// A gauge's Inc and Dec are atomic adds: no allocation, no lock.
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		d := time.Since(start)
		s.metrics.observeRequest(metricMethod(r.Method), route, sw.status, d)
		level := levelOf(sw.status)
		if probeRoutes[route] && level != slog.LevelError {
			level = slog.LevelDebug
		}
		if !s.logger.Enabled(r.Context(), level) {
			return
		}
		if s.accessLog != nil {
			bp := bodyBuffers.Get().(*[]byte)
			line, ok := appendRequestLine((*bp)[:0], time.Now(), level, id, r.Method, route, r.URL.Path, sw.status, d, sw.bytes)
			if ok {
				_, _ = s.accessLog.Write(line)
			}
			*bp = line
			bodyBuffers.Put(bp)
			if ok {
				return
			}
		}
		s.logger.LogAttrs(r.Context(), level, "request",
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", route),
			slog.String("path", r.URL.Path), slog.Int("status", sw.status),
			slog.Float64("duration_ms", durationMillis(d)), slog.Int("bytes", sw.bytes))
	})
}

// durationMillis is a request's duration in milliseconds, to the microsecond.
func durationMillis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// appendRequestLine appends the request line exactly as slog's JSON handler
// (default options) writes the LogAttrs record of observe, logged at t. It
// reports false, and slog writes the line, when a string would need
// escaping (only a path can: the id is checked, the method is an HTTP
// token, the route a pattern of ours). TestRequestLineIsSlogs holds the two
// equal.
func appendRequestLine(b []byte, t time.Time, level slog.Level, id, method, route, path string, status int, d time.Duration, n int) ([]byte, bool) {
	for _, s := range [...]string{id, method, route, path} {
		if !plainJSON(s) {
			return b, false
		}
	}
	// encoding/json's form of a float in [1e-6, 1e21) or 0, which slog
	// uses, is the shortest decimal without exponent; a duration in ms to
	// the microsecond is always one.
	ms := durationMillis(d)
	if ms != 0 && (ms < 1e-6 || ms >= 1e21) {
		return b, false
	}
	if y := t.Year(); y < 0 || y >= 10000 { // slog adds an error
		return b, false
	}
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"`...)
	b = append(b, level.String()...)
	b = append(b, `","msg":"request","request_id":"`...)
	b = append(b, id...)
	b = append(b, `","method":"`...)
	b = append(b, method...)
	b = append(b, `","route":"`...)
	b = append(b, route...)
	b = append(b, `","path":"`...)
	b = append(b, path...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, ms, 'f', -1, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '}', '\n'), true
}

// plainJSON reports whether s is printable ASCII without a quote or
// backslash: slog writes it into a JSON string as it is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// metricMethod bounds the method label: a client can send any token as a
// method, and each distinct one would otherwise be a new time series.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// probeRoutes are polled by machines, every few seconds, for ever: health
// checks (/healthz, /readyz) and Prometheus scrapes. Their request lines
// are logged at DEBUG, not INFO, so the log of a failing container shows
// its cause rather than pages of probes (a failing /readyz logs once, when
// readiness changes: see Server.noteReadiness); invoicing_http_requests_total
// counts them like every request. A 500 (a bug) stays an ERROR.
var probeRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// levelOf is the log level of a request line: ERROR is kept for what needs
// a fix (a 500); an unavailable database (503) is expected while it
// restarts and is a warning.
func levelOf(status int) slog.Level {
	switch {
	case status == http.StatusServiceUnavailable:
		return slog.LevelWarn
	case status >= 500:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// recoverPanics turns a panic into a 500 problem; the stack goes to the log only.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
