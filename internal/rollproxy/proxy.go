// Package rollproxy is the small reverse proxy that owns a service's published
// port during zero-downtime rollouts: it sends every request to one backend
// (a container on the stack network), and Deploy switches to a new backend
// only after that backend answers its health path through the proxy's own
// transport, then drains the old one (in-flight requests finish, idle
// keep-alive connections to it are closed) before returning, so the caller
// may stop the old container. Clients keep their keep-alive connections to
// the proxy across a switch: each request picks the backend that is current
// when it arrives. The idea follows kamal-proxy; the code is ours.
package rollproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// DeployOptions control one switch to a new backend.
type DeployOptions struct {
	// HealthPath is requested on the new backend (GET); a 2xx answer makes it
	// healthy. Default "/".
	HealthPath string
	// HealthTimeout bounds the wait for the new backend to turn healthy.
	// Default 60 s.
	HealthTimeout time.Duration
	// HealthInterval is the pause between health requests. Default 200 ms.
	HealthInterval time.Duration
	// DrainTimeout bounds the wait for in-flight requests on the old backend
	// after the switch. Default 30 s.
	DrainTimeout time.Duration
	// Release names what target runs (invdeploy_release_info). Zero: a
	// switch to a new target clears the series (what serves is no longer
	// known), a deploy to the current target keeps it.
	Release Release
}

func (o DeployOptions) withDefaults() DeployOptions {
	if o.HealthPath == "" {
		o.HealthPath = "/"
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = 60 * time.Second
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = 200 * time.Millisecond
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	return o
}

// errSuperseded ends a Deploy that a newer one replaced before it switched.
var errSuperseded = errors.New("superseded by a newer deploy before it switched")

// ErrUnhealthy is returned by Deploy when the new backend did not turn
// healthy in time; the current backend is unchanged.
var ErrUnhealthy = errors.New("target did not become healthy")

// DeployResult says what one Deploy did.
type DeployResult struct {
	// Previous is the backend that served before ("" for the first deploy).
	Previous string `json:"previous"`
	// Target is the backend that serves now.
	Target string `json:"target"`
	// Drained is false when the drain timeout expired with requests still in
	// flight on Previous.
	Drained bool `json:"drained"`
	// HealthyAfter and DrainedAfter are how long each phase took.
	HealthyAfter time.Duration `json:"healthy_after_ns"`
	DrainedAfter time.Duration `json:"drained_after_ns"`
}

// Proxy is an http.Handler that forwards to the current backend.
type Proxy struct {
	current atomic.Pointer[backend]
	// deploying serializes Deploy calls.
	deploying sync.Mutex
	// supersede cancels the Deploy that is waiting for its backend's
	// health, when a newer one arrives (see Deploy).
	supersedeMu sync.Mutex
	supersede   context.CancelFunc
	// deployed: a Deploy has been asked for (see Deployed).
	deployed atomic.Bool
	m        *metrics
	// upstreamTimeout bounds the wait for a backend's response header.
	upstreamTimeout time.Duration
	// state keeps the current target across restarts (nil: not kept).
	state *stateFile
}

// New returns a Proxy with no backend (it answers 503 until the first
// Deploy). reg may be nil.
func New(reg prometheus.Registerer) *Proxy {
	return &Proxy{m: newMetrics(reg), upstreamTimeout: httpguard.Defaults().UpstreamTimeout}
}

// SetUpstreamTimeout sets how long a backend may take to send its response
// header (then 504), for backends deployed from now on.
func (p *Proxy) SetUpstreamTimeout(d time.Duration) { p.upstreamTimeout = d }

// Release returns what the current backend runs, as the last deploy named
// it (zero when it did not).
func (p *Proxy) Release() Release { return p.m.release.get() }

// Deployed reports whether any Deploy has been asked for, whatever came of
// it.
func (p *Proxy) Deployed() bool { return p.deployed.Load() }

// Target returns the current backend's address, or "".
func (p *Proxy) Target() string {
	if b := p.current.Load(); b != nil {
		return b.target
	}
	return ""
}

// ServeHTTP forwards r to the backend that is current when it arrives.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := p.acquire()
	if b == nil {
		p.m.requests.WithLabelValues("none", "503").Inc()
		httpguard.WriteProblem(w, http.StatusServiceUnavailable, "no_backend", "No backend is deployed yet.", 1)
		return
	}
	defer b.release()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	b.rp.ServeHTTP(sw, r)
	b.count(p.m, sw.status)
}

// count adds one request with status to the backend's series; the counter
// of each status is looked up once per backend, not per request.
func (b *backend) count(m *metrics, status int) {
	if c, ok := b.counters.Load(status); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.requests.WithLabelValues(b.target, strconv.Itoa(status))
	b.counters.Store(status, c)
	c.Inc()
}

// bufferPool lends the 32 KiB buffers ReverseProxy copies bodies with,
// instead of one allocation per request.
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

var buffers = &bufferPool{}

// acquire returns the current backend with one more request counted on it,
// or nil when there is none. A backend that finished draining between the
// load and the count is skipped for the one that replaced it.
func (p *Proxy) acquire() *backend {
	for {
		b := p.current.Load()
		if b == nil {
			return nil
		}
		if b.acquire() {
			return b
		}
	}
}

// Deploy makes target ("host:port") the backend: it waits until target
// answers o.HealthPath with a 2xx through the proxy's transport, switches new
// requests to it, then waits until the previous backend has no request in
// flight (or o.DrainTimeout) and closes its idle connections. The release
// info follows o.Release as DeployOptions.Release says. On ErrUnhealthy or a
// cancelled ctx nothing changed.
func (p *Proxy) Deploy(ctx context.Context, target string, o DeployOptions) (DeployResult, error) {
	o = o.withDefaults()
	p.deployed.Store(true)
	// The newest deploy wins: one still waiting for its backend's health
	// (such as the fallback target a restarted proxy tries, while invdeploy
	// names the real one) gives up at once, changing nothing. A deploy that
	// already switched finishes its drain.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.supersedeMu.Lock()
	if p.supersede != nil {
		p.supersede()
	}
	p.supersede = func() { cancel(errSuperseded) }
	p.supersedeMu.Unlock()
	p.deploying.Lock()
	defer p.deploying.Unlock()
	start := time.Now()
	nb, err := newBackend(target, p.m, p.upstreamTimeout)
	if err != nil {
		return DeployResult{}, err
	}
	old := p.current.Load()
	res := DeployResult{Target: nb.target}
	if old != nil {
		res.Previous = old.target
		if old.target == nb.target {
			// Same address: nothing to switch, but it must still be healthy.
			nb = old
		}
	}
	if err := nb.waitHealthy(ctx, o); err != nil {
		if nb != old {
			nb.close()
		}
		if errors.Is(context.Cause(ctx), errSuperseded) {
			return res, errSuperseded
		}
		p.m.switches.WithLabelValues("unhealthy").Inc()
		return res, err
	}
	res.HealthyAfter = time.Since(start)
	if nb == old {
		if !o.Release.IsZero() {
			p.m.release.set(o.Release)
			p.saveState(nb.target, o.Release)
		}
		res.Drained = true
		return res, nil
	}
	p.current.Store(nb)
	p.m.release.set(o.Release)
	p.saveState(nb.target, o.Release)
	p.m.switches.WithLabelValues("switched").Inc()
	res.Drained = true
	if old != nil {
		res.Drained = old.drain(o.DrainTimeout)
		if !res.Drained {
			p.m.switches.WithLabelValues("drain_timeout").Inc()
		}
	}
	res.DrainedAfter = time.Since(start) - res.HealthyAfter
	return res, nil
}

// backend is one upstream with its own transport and in-flight count.
type backend struct {
	target    string
	transport *http.Transport
	rp        *httputil.ReverseProxy

	mu       sync.Mutex
	inflight int
	closed   bool
	idle     chan struct{} // closed when inflight drops to 0 while draining
	draining bool
	counters sync.Map // status (int) -> prometheus.Counter
}

func newBackend(target string, m *metrics, upstreamTimeout time.Duration) (*backend, error) {
	u, err := splitTarget(target)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: upstreamTimeout,
	}
	b := &backend{target: target, transport: tr}
	b.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: buffers,
		// 0: no timed flushes; ReverseProxy still flushes every write of
		// a streaming response (no Content-Length, event streams).
		FlushInterval: 0,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			upstreamError(w, r, err, m, target)
		},
	}
	return b, nil
}

// splitTarget checks that target is host:port and returns its URL.
func splitTarget(target string) (*url.URL, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || port == "" || strings.ContainsAny(target, "/?#@ \t\r\n") {
		return nil, fmt.Errorf("target %q: want host:port", target)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, fmt.Errorf("target %q: want host:port", target)
	}
	return &url.URL{Scheme: "http", Host: target}, nil
}

// upstreamError answers a request that did not get the upstream's
// response: the client's own fault (gone, or too slow sending its body) is
// not counted as an upstream error.
func upstreamError(w http.ResponseWriter, r *http.Request, err error, m *metrics, target string) {
	if bodyErr := httpguard.BodyReadError(r); bodyErr != nil {
		if httpguard.ClientTimedOut(bodyErr) {
			w.Header().Set("Connection", "close")
			httpguard.WriteProblem(w, http.StatusRequestTimeout, "request_timeout", "The request body was not received in time.", 0)
			return
		}
		w.WriteHeader(499) // the client's body broke off; nobody reads an answer
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		w.WriteHeader(499) // the client went away; nothing to send
		return
	}
	m.errors.WithLabelValues(target).Inc()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		httpguard.WriteProblem(w, http.StatusGatewayTimeout, "upstream_timeout", "The service did not answer in time.", 1)
		return
	}
	httpguard.WriteProblem(w, http.StatusBadGateway, "upstream_unavailable", "The service is not reachable.", 1)
}

func (b *backend) acquire() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.inflight++
	return true
}

func (b *backend) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	if b.inflight == 0 && b.draining && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

// drain waits until no request is in flight or timeout, then refuses new
// ones (they go to the current backend) and closes idle connections. It
// reports whether every request finished.
func (b *backend) drain(timeout time.Duration) bool {
	b.mu.Lock()
	b.draining = true
	var idle chan struct{}
	if b.inflight > 0 {
		idle = make(chan struct{})
		b.idle = idle
	}
	b.mu.Unlock()
	drained := true
	if idle != nil {
		t := time.NewTimer(timeout)
		select {
		case <-idle:
		case <-t.C:
			drained = false
		}
		t.Stop()
	}
	b.close()
	return drained
}

func (b *backend) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.transport.CloseIdleConnections()
}

// waitHealthy polls the health path until a 2xx answer, ctx ends, or the
// health timeout passes. Each request is bounded by the interval's larger of
// 1 s and the interval, so one hung request cannot eat the whole budget.
func (b *backend) waitHealthy(ctx context.Context, o DeployOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.HealthTimeout)
	defer cancel()
	client := &http.Client{Transport: b.transport, Timeout: max(time.Second, o.HealthInterval)}
	u := "http://" + b.target + o.HealthPath
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("health request for %s: %w", b.target, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s%s within %s (last answer: %s)", ErrUnhealthy, b.target, o.HealthPath, o.HealthTimeout, last)
		case <-time.After(o.HealthInterval):
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and friends.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	switches *prometheus.CounterVec
	release  *releaseInfo
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invdeploy_proxy_requests_total", Help: "Requests forwarded, by backend and status.",
		}, []string{"backend", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invdeploy_proxy_upstream_errors_total", Help: "Requests that failed to reach a backend.",
		}, []string{"backend"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invdeploy_proxy_switch_events_total", Help: "Deploys by result: switched, unhealthy, drain_timeout.",
		}, []string{"result"}),
		release: newReleaseInfo(),
	}
	// Every result exists from the start at 0, so the first switch is an
	// increase Prometheus sees (a series born at 1 has no increase), which
	// the dashboards' switch marks rely on.
	for _, r := range []string{"switched", "unhealthy", "drain_timeout"} {
		m.switches.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.errors, m.switches, m.release)
	}
	return m
}

// inflightNow is the number of requests in flight (for tests and metrics).
func (b *backend) inflightNow() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight
}
