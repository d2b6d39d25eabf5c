// Package edge is invdeploy's per-engine HTTPS edge: one listener on 80
// and one on 443 per host, shared by every project deployed to that
// engine, routing by host name to each service's rollout proxy (which rolls
// the service behind it with zero downtime). It terminates TLS with
// certificates ordered by ACME (HTTP-01 and TLS-ALPN-01; Let's Encrypt by
// default, any ACME directory by flag) through caddyserver/certmagic, kept
// in its data directory so restarts and re-deploys order none while a valid
// one exists, renewed ahead of expiry (at two thirds of the lifetime, or
// when the CA's renewal info says) with metrics that make a failing renewal
// visible before the certificate expires. Plain HTTP is redirected to
// HTTPS, ACME challenges excepted; TLS 1.2 is the minimum; HTTP/2 is
// offered; HSTS is opt-in per route; a route may bring its own certificate
// and key instead of ACME.
//
// An upgrade of the edge hands its listening sockets over to the new
// process (see handoff.go): no connection is refused or reset.
//
// Why certmagic rather than x/crypto/acme/autocert: certmagic renews on a
// fraction of the lifetime (autocert renews a fixed RenewBefore ahead, at
// least an hour, 30 days by default, which does not fit short-lived
// certificates such as Let's Encrypt's six-day ones), reports each order,
// success and failure as an event (autocert's renewal errors are never
// surfaced), follows ACME Renewal Information, locks through its storage
// (several edges sharing one storage order one certificate), and solves
// challenges from storage, so the edge that answers need not be the one
// that ordered (the hand-off overlap).
package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	// The edge's image is FROM scratch: Mozilla's roots, for Let's
	// Encrypt's directory, when the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Challenge names.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Config is what an edge serves and how.
type Config struct {
	// HTTPAddr and HTTPSAddr are the listeners (":80", ":443").
	HTTPAddr, HTTPSAddr string
	// DataDir keeps the certificates, the ACME account, the routes and
	// the hand-off socket; only the edge reads it.
	DataDir string
	// AdminSocket is the unix socket of the admin API (routes).
	AdminSocket string
	// ACMEDirectory is the ACME directory URL (default LetsEncrypt).
	ACMEDirectory string
	// ACMEEmail is the account's contact (optional).
	ACMEEmail string
	// ACMECAFile is a PEM bundle trusted for the directory's HTTPS, beside
	// the system's (a private CA).
	ACMECAFile string
	// Challenges are the challenge types offered (default both).
	Challenges []string
	// RenewCheck is how often certificates are checked for renewal.
	RenewCheck time.Duration
	// Limits bound what clients can hold (see httpguard).
	Limits httpguard.Limits
}

// route is a Route ready to serve.
type route struct {
	Route
	hsts string
	rp   *httputil.ReverseProxy
}

// Edge is a running edge.
type Edge struct {
	cfg       Config
	log       *slog.Logger
	magic     *certmagic.Config
	cache     *certmagic.Cache
	issuer    *certmagic.ACMEIssuer
	transport *http.Transport
	m         *metrics
	httpsPort string // "" for 443: what the redirect adds to the host

	// umu serialises updates of the table (read, change, keep, serve).
	umu    sync.Mutex
	mu     sync.RWMutex
	table  Table
	byHost map[string]*route
	// own are hosts served with a route's own certificate.
	own   map[string]bool
	ready atomic.Bool
}

// New prepares an edge (no listener yet): its routes from the data
// directory and its certificate manager. reg gets the edge's metrics.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Edge, error) {
	if cfg.ACMEDirectory == "" {
		cfg.ACMEDirectory = LetsEncrypt
	}
	if cfg.RenewCheck <= 0 {
		cfg.RenewCheck = 10 * time.Minute
	}
	if len(cfg.Challenges) == 0 {
		cfg.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	_, port, err := net.SplitHostPort(cfg.HTTPSAddr)
	if err != nil {
		return nil, fmt.Errorf("https address %q: %w", cfg.HTTPSAddr, err)
	}
	e := &Edge{cfg: cfg, log: log, byHost: map[string]*route{}, own: map[string]bool{}}
	if port != "443" {
		e.httpsPort = ":" + port
	}
	e.transport = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Limits.UpstreamTimeout,
	}
	e.m = newMetrics(reg, e)
	if err := e.setupCertificates(); err != nil {
		return nil, err
	}
	t, err := loadTable(e.routesPath())
	if err != nil {
		// A routes file that cannot be read is not fatal: the next deploy
		// of each project names its routes again.
		log.Error("routes not restored", "err", err)
		t = Table{Routes: []Route{}}
	}
	if err := e.apply(context.Background(), t); err != nil {
		log.Error("routes not restored", "err", err)
	}
	return e, nil
}

func (e *Edge) routesPath() string  { return filepath.Join(e.cfg.DataDir, "routes.json") }
func (e *Edge) handoffPath() string { return filepath.Join(e.cfg.DataDir, "handoff.sock") }

// setupCertificates makes the certificate manager: storage in the data
// directory, the ACME issuer, events counted.
func (e *Edge) setupCertificates() error {
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zap.InfoLevel))
	var pool *x509.CertPool
	if e.cfg.ACMECAFile != "" {
		b, err := os.ReadFile(e.cfg.ACMECAFile)
		if err != nil {
			return fmt.Errorf("ACME CA bundle: %w", err)
		}
		pool, err = x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("ACME CA bundle %s: no PEM certificate in it", e.cfg.ACMECAFile)
		}
	}
	tmpl := certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(e.cfg.DataDir, "certificates")},
		OnEvent: e.onEvent,
		Logger:  zl,
		// Let's Encrypt ended OCSP; a CA without a responder must not
		// fail the handshake.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
	}
	var magic *certmagic.Config
	e.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: e.cfg.RenewCheck,
		OCSPCheckInterval:  24 * time.Hour,
		Logger:             zl,
	})
	magic = certmagic.New(e.cache, tmpl)
	httpPort, _ := portOf(e.cfg.HTTPAddr)
	httpsPort, _ := portOf(e.cfg.HTTPSAddr)
	iss := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:     e.cfg.ACMEDirectory,
		Email:  e.cfg.ACMEEmail,
		Agreed: true,
		// The edge's own listeners answer the challenges: the solver's
		// attempt to bind these ports fails (in use) and defers to them.
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          httpsPort,
		DisableHTTPChallenge:    !contains(e.cfg.Challenges, ChallengeHTTP01),
		DisableTLSALPNChallenge: !contains(e.cfg.Challenges, ChallengeTLSALPN01),
		TrustedRoots:            pool,
		Logger:                  zl,
	})
	magic.Issuers = []certmagic.Issuer{iss}
	e.magic, e.issuer = magic, iss
	return nil
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// onEvent counts certmagic's certificate events.
func (e *Edge) onEvent(_ context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		e.m.orders.WithLabelValues(host, strconv.FormatBool(renewal)).Inc()
	case "cert_obtained":
		e.m.obtained.WithLabelValues(host, strconv.FormatBool(renewal)).Inc()
		e.m.failing.WithLabelValues(host).Set(0)
	case "cert_failed":
		e.m.failures.WithLabelValues(host, strconv.FormatBool(renewal)).Inc()
		e.m.failing.WithLabelValues(host).Set(1)
		e.log.Error("certificate not obtained", "host", host, "renewal", renewal, "err", fmt.Sprint(data["error"]))
	}
	return nil
}

// apply makes t the table served: routes compiled, own certificates
// loaded, certificates managed for the other hosts (those in storage are
// loaded, the rest ordered in the background).
func (e *Edge) apply(ctx context.Context, t Table) error {
	byHost := map[string]*route{}
	own := map[string]bool{}
	var acme []string
	var errs []error
	for _, r := range t.Routes {
		rt, err := e.compile(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.CertFile != "" {
			if _, err := e.magic.CacheUnmanagedCertificatePEMFile(ctx, filepath.Join(e.cfg.DataDir, r.CertFile), filepath.Join(e.cfg.DataDir, r.KeyFile), nil); err != nil {
				errs = append(errs, fmt.Errorf("route %s/%s: own certificate: %w", r.Project, r.Service, err))
				continue
			}
		}
		for _, h := range r.Hosts {
			byHost[h] = rt
			if r.CertFile != "" {
				own[h] = true
			} else {
				acme = append(acme, h)
			}
		}
	}
	e.mu.Lock()
	var gone []certmagic.SubjectIssuer
	for h := range e.byHost {
		if _, ok := byHost[h]; !ok || own[h] {
			gone = append(gone, certmagic.SubjectIssuer{Subject: h})
		}
	}
	e.table, e.byHost, e.own = t, byHost, own
	e.mu.Unlock()
	if len(gone) > 0 {
		e.cache.RemoveManaged(gone)
	}
	if len(acme) > 0 {
		if err := e.magic.ManageAsync(context.WithoutCancel(ctx), acme); err != nil {
			errs = append(errs, fmt.Errorf("certificates: %w", err))
		}
	}
	return errors.Join(errs...)
}

// compile makes a route's reverse proxy.
func (e *Edge) compile(r Route) (*route, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	u := &url.URL{Scheme: "http", Host: r.Upstream}
	rt := &route{Route: r}
	if r.HSTS > 0 {
		rt.hsts = "max-age=" + strconv.Itoa(r.HSTS)
	}
	rt.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: e.transport,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.Context().Err() != nil {
				return // the client left
			}
			e.log.Warn("upstream", "host", req.Host, "upstream", r.Upstream, "err", err)
			httpguard.WriteProblem(w, http.StatusBadGateway, "upstream_unavailable",
				"The service behind this host name did not answer; try again shortly.", 1)
		},
	}
	return rt, nil
}

// lookup finds the route of a request's Host.
func (e *Edge) lookup(hostport string) (*route, string) {
	host := strings.ToLower(hostport)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	e.mu.RLock()
	rt := e.byHost[host]
	e.mu.RUnlock()
	return rt, host
}

// httpHandler answers port 80: ACME HTTP-01 challenges, else a redirect
// to the same URL over HTTPS (for the hosts the edge routes).
func (e *Edge) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.issuer.HandleHTTPChallenge(w, r) {
			e.m.requests.WithLabelValues("http", "challenge").Inc()
			return
		}
		rt, host := e.lookup(r.Host)
		if rt == nil {
			e.m.requests.WithLabelValues("http", "4xx").Inc()
			httpguard.WriteProblem(w, http.StatusNotFound, "unknown_host", "No service answers this host name here.", 0)
			return
		}
		e.m.requests.WithLabelValues("http", "3xx").Inc()
		http.Redirect(w, r, "https://"+host+e.httpsPort+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// httpsHandler answers port 443: the route of the Host, with HSTS when the
// route asks for it.
func (e *Edge) httpsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, _ := e.lookup(r.Host)
		if rt == nil {
			e.m.requests.WithLabelValues("https", "4xx").Inc()
			httpguard.WriteProblem(w, http.StatusMisdirectedRequest, "unknown_host", "No service answers this host name here.", 0)
			return
		}
		if rt.hsts != "" {
			w.Header().Set("Strict-Transport-Security", rt.hsts)
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		rt.rp.ServeHTTP(sw, r)
		e.m.requests.WithLabelValues("https", strconv.Itoa(sw.code/100)+"xx").Inc()
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tlsConfig is the HTTPS listener's: certificates from the manager (ACME
// and own), TLS 1.2 or newer, HTTP/2, and the TLS-ALPN-01 protocol.
func (e *Edge) tlsConfig() *tls.Config {
	tc := e.magic.TLSConfig()
	tc.MinVersion = tls.VersionTLS12
	tc.NextProtos = []string{"h2", "http/1.1", "acme-tls/1"}
	return tc
}

// CertificateInfo is what the edge serves for one host.
type CertificateInfo struct {
	Host      string    `json:"host"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	Own       bool      `json:"own"`
}

// Certificates lists the certificate the edge holds for each routed host
// (hosts without one yet are left out).
func (e *Edge) Certificates() []CertificateInfo {
	e.mu.RLock()
	t, own := e.table, e.own
	e.mu.RUnlock()
	var out []CertificateInfo
	for _, h := range t.Hosts() {
		certs := e.cache.AllMatchingCertificates(h)
		var best *x509.Certificate
		for _, c := range certs {
			if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.NotAfter)) {
				best = c.Leaf
			}
		}
		if best == nil {
			continue
		}
		out = append(out, CertificateInfo{Host: h, NotBefore: best.NotBefore, NotAfter: best.NotAfter, Issuer: best.Issuer.CommonName, Serial: best.SerialNumber.Text(16), Own: own[h]})
	}
	return out
}

// Table is the routes the edge serves.
func (e *Edge) Table() Table {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.table
}

// update changes the table by f, keeps it in the data directory and
// serves it.
func (e *Edge) update(ctx context.Context, f func(Table) (Table, error)) (Table, error) {
	e.umu.Lock()
	defer e.umu.Unlock()
	t, err := f(e.Table())
	if err != nil {
		return Table{}, err
	}
	if err := saveTable(e.routesPath(), t); err != nil {
		return Table{}, fmt.Errorf("keep routes: %w", err)
	}
	return t, e.apply(ctx, t)
}
