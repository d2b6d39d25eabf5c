// Package http exposes api.InvoiceService over HTTP/JSON: the routes of the
// v1 contract (routes.go), one place that decodes requests and encodes
// responses and RFC 9457 problems (encode.go), request logging, metrics and
// readiness.
package http

import (
	"context"
	_ "embed"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invdeploy/invdeploy/api"
)

// OpenAPI is the OpenAPI 3.1 document of the API, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// MaxBodyBytes is the largest request body accepted (1 MiB); larger is 413.
const MaxBodyBytes = 1 << 20

// Server is the HTTP handler of the invoicing API.
type Server struct {
	svc       api.InvoiceService
	logger    *slog.Logger
	accessLog io.Writer
	metrics   *metrics
	gatherer  prometheus.Gatherer
	draining  atomic.Bool
	// readiness is the last answer of the database check of /readyz
	// (see noteReadiness).
	readiness atomic.Int32
	router    chi.Router
}

// Values of Server.readiness.
const (
	readinessUnknown int32 = iota
	readinessReady
	readinessNotReady
)

// Config holds the dependencies of a Server.
type Config struct {
	// Service stores invoices.
	Service api.InvoiceService
	// Logger receives one JSON line per request; required.
	Logger *slog.Logger
	// Registry receives the server's metrics and is served at /metrics; a
	// new registry when nil.
	Registry *prometheus.Registry
	// AccessLog, when set, is the writer of Logger's handler, which must
	// be slog.NewJSONHandler with default options (but for Level, which is
	// honoured through Logger.Enabled): the line of each request
	// is then written to it directly, byte for byte as that handler writes
	// it, at about a fifth of slog's cost (a twentieth of a GET's CPU went
	// to its request line). It must be safe for concurrent writes, as it
	// is for the handler. Nil: request lines go through Logger.
	AccessLog io.Writer
}

// NewServer returns the handler with every route of the contract.
func NewServer(cfg Config) *Server {
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{svc: cfg.Service, logger: cfg.Logger, accessLog: cfg.AccessLog, metrics: newMetrics(reg), gatherer: reg}
	s.router = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Drain makes /readyz answer 503 from now on, so load balancers stop
// sending traffic while in-flight requests finish.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) ready(ctx context.Context) error {
	if s.draining.Load() {
		return api.Errorf(api.EUNAVAILABLE, "The server is shutting down.")
	}
	err := s.svc.Ready(ctx)
	s.noteReadiness(ctx, err)
	if err != nil {
		return api.Errorf(api.EUNAVAILABLE, "The database is not ready.")
	}
	return nil
}

// noteReadiness logs when the database check of /readyz changes its
// answer, with the cause of a failure: the probes themselves are logged at
// DEBUG only (see probeRoutes), and a failing probe every few seconds must
// neither flood the log nor go unexplained.
func (s *Server) noteReadiness(ctx context.Context, err error) {
	now := readinessReady
	if err != nil {
		now = readinessNotReady
	}
	switch prev := s.readiness.Swap(now); {
	case prev == now:
	case err != nil:
		s.logger.WarnContext(ctx, "readiness: not ready", "error", err.Error())
	case prev == readinessNotReady:
		s.logger.InfoContext(ctx, "readiness: ready again")
	}
}

// Router exposes the route table of s (for documentation checks).
func Router(s *Server) chi.Routes { return s.router }
