// Package swarmedge is the HTTP edge invdeploy runs on every swarm node in
// front of a service's published port, where the ingress routing mesh is not
// available (no IPVS in the kernel) or not wanted.
//
// It balances round robin over the addresses of tasks.<service> (Swarm's
// DNS lists a task only once it is healthy, and drops it before stopping
// it), re-resolved every interval. A backend that refuses or times out a
// connection is skipped for a while and the request goes to the next one; a
// request that may have reached a backend is retried elsewhere only when it
// is safe to repeat (GET, HEAD, OPTIONS, PUT, DELETE, or one that carries
// an Idempotency-Key). That hides task replacement during rolling updates
// and the loss of a node from clients.
package swarmedge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// Lookup resolves a host name to addresses (net.DefaultResolver.LookupHost).
type Lookup func(ctx context.Context, host string) ([]string, error)

// Options tune an Edge; zero values take the defaults.
type Options struct {
	// Resolve is how often tasks.<service> is resolved again (500ms).
	Resolve time.Duration
	// DialTimeout bounds connecting to a backend (1s).
	DialTimeout time.Duration
	// Penalty is how long a backend that failed is skipped (3s).
	Penalty time.Duration
	// Attempts is how many backends one request may try (4).
	Attempts int
	// MaxRetryBody is the largest request body kept for a retry (1 MiB,
	// the invoicing API's own body limit); larger ones go to one backend.
	MaxRetryBody int64
	// UpstreamTimeout bounds the wait for a backend's response header
	// (30 s; then 504).
	UpstreamTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Resolve == 0 {
		o.Resolve = 500 * time.Millisecond
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if o.Penalty == 0 {
		o.Penalty = 3 * time.Second
	}
	if o.Attempts == 0 {
		o.Attempts = 4
	}
	if o.MaxRetryBody == 0 {
		o.MaxRetryBody = 1 << 20
	}
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = 30 * time.Second
	}
	return o
}

// Edge proxies HTTP to the addresses of one DNS name.
type Edge struct {
	host, port string
	lookup     Lookup
	o          Options
	transport  *http.Transport
	log        *slog.Logger

	mu    sync.Mutex
	addrs []string
	down  map[string]time.Time
	next  atomic.Uint64
}

// New returns an edge for upstream ("tasks.api:8000").
func New(upstream string, lookup Lookup, o Options, log *slog.Logger) (*Edge, error) {
	host, port, err := net.SplitHostPort(upstream)
	if err != nil || host == "" || port == "" {
		return nil, errors.New("upstream " + upstream + ": want host:port, e.g. tasks.api:8000")
	}
	o = o.withDefaults()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &Edge{
		host: host, port: port, lookup: lookup, o: o, log: log, down: map[string]time.Time{},
		transport: &http.Transport{
			DialContext:           d.DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: o.UpstreamTimeout,
		},
	}, nil
}

// Run resolves the upstream every Options.Resolve until ctx ends.
func (e *Edge) Run(ctx context.Context) {
	t := time.NewTicker(e.o.Resolve)
	defer t.Stop()
	for {
		e.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh resolves the upstream once. A failed lookup keeps the last list.
func (e *Edge) Refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := e.lookup(ctx, e.host)
	if err != nil {
		e.log.Warn("resolve upstream", "host", e.host, "err", err)
		return
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip, e.port))
	}
	sort.Strings(addrs)
	e.mu.Lock()
	e.addrs = addrs
	e.mu.Unlock()
}

// Backends are the current upstream addresses.
func (e *Edge) Backends() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.addrs...)
}

// pick returns the next backend round robin, not in tried, preferring those
// not penalised; "" when every backend was tried.
func (e *Edge) pick(tried map[string]bool) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	n := len(e.addrs)
	if n == 0 {
		return ""
	}
	start := int(e.next.Add(1) % uint64(n))
	fallback := ""
	for i := 0; i < n; i++ {
		a := e.addrs[(start+i)%n]
		if tried[a] {
			continue
		}
		if until, bad := e.down[a]; bad && now.Before(until) {
			if fallback == "" {
				fallback = a
			}
			continue
		}
		return a
	}
	return fallback
}

func (e *Edge) penalise(addr string) {
	e.mu.Lock()
	e.down[addr] = time.Now().Add(e.o.Penalty)
	e.mu.Unlock()
}

// Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

// isDialError says the request never reached the backend.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ServeHTTP forwards r to a backend, trying the next one when that is safe.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	buffered := r.Body == nil || r.Body == http.NoBody
	if !buffered && r.ContentLength >= 0 && r.ContentLength <= e.o.MaxRetryBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, e.o.MaxRetryBody+1))
		if err != nil {
			if httpguard.ClientTimedOut(err) {
				w.Header().Set("Connection", "close")
				httpguard.WriteProblem(w, http.StatusRequestTimeout, "request_timeout", "The request body was not received in time.", 0)
				return
			}
			httpguard.WriteProblem(w, http.StatusBadRequest, "body_unreadable", "The request body could not be read.", 0)
			return
		}
		body, buffered = b, true
	}
	tried := map[string]bool{}
	var lastErr error
	for attempt := 0; attempt < e.o.Attempts; attempt++ {
		addr := e.pick(tried)
		if addr == "" {
			break
		}
		tried[addr] = true
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", addr
		for _, h := range hopHeaders {
			out.Header.Del(h)
		}
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
				ip = prior + ", " + ip
			}
			out.Header.Set("X-Forwarded-For", ip)
		}
		if buffered && body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			out.ContentLength = int64(len(body))
		}
		resp, err := e.transport.RoundTrip(out)
		if err != nil {
			if bodyErr := httpguard.BodyReadError(r); bodyErr != nil {
				// The client's fault, not the backend's.
				if httpguard.ClientTimedOut(bodyErr) {
					w.Header().Set("Connection", "close")
					httpguard.WriteProblem(w, http.StatusRequestTimeout, "request_timeout", "The request body was not received in time.", 0)
				}
				return
			}
			lastErr = err
			e.penalise(addr)
			if r.Context().Err() != nil {
				return
			}
			if isDialError(err) || (buffered && replayable(r)) {
				e.log.Info("backend failed, trying the next", "backend", addr, "err", err)
				continue
			}
			break
		}
		defer resp.Body.Close()
		for _, h := range hopHeaders {
			resp.Header.Del(h)
		}
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		copyFlushing(w, resp.Body)
		return
	}
	msg := "no backend of " + e.host + " answered"
	if lastErr != nil {
		msg += ": " + lastErr.Error()
	}
	e.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", msg)
	// The client learns what happened, not the addresses behind the edge.
	var ne net.Error
	switch {
	case lastErr == nil:
		httpguard.WriteProblem(w, http.StatusServiceUnavailable, "no_backend", "No task of the service is running.", 1)
	case errors.As(lastErr, &ne) && ne.Timeout() && !isDialError(lastErr):
		httpguard.WriteProblem(w, http.StatusGatewayTimeout, "upstream_timeout", "The service did not answer in time.", 1)
	default:
		httpguard.WriteProblem(w, http.StatusBadGateway, "upstream_unavailable", "The service is not reachable.", 1)
	}
}

func copyFlushing(w http.ResponseWriter, r io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if strings.Contains(w.Header().Get("Content-Type"), "event-stream") {
				_ = rc.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}
