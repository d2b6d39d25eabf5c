package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invdeploy/invdeploy/internal/httpguard"
	"github.com/invdeploy/invdeploy/internal/testacme"
)

// The tests' ports: this package takes 24100-24499.
const portLo, portHi = 24100, 24499

type testEdge struct {
	e      *Edge
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startEdge runs an edge in this process against pebble.
func startEdge(t *testing.T, cfg Config, metricsAddr ...string) *testEdge {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	e, err := New(cfg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	te := &testEdge{e: e, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { te.done <- e.Serve(ctx, strings.Join(metricsAddr, ""), reg, 10*time.Second) }()
	t.Cleanup(te.stop)
	admin := NewAdminClient(cfg.AdminSocket)
	if !testacme.WaitFor(context.Background(), 10*time.Second, func() bool { return admin.Health(context.Background()) == nil }) {
		t.Fatal("edge did not turn healthy")
	}
	return te
}

func (te *testEdge) stop() {
	te.cancel()
	<-te.done
	te.done <- nil
}

func testConfig(t *testing.T, p *testacme.Pebble, httpPort, httpsPort int, data string) Config {
	return Config{
		HTTPAddr: ":" + strconv.Itoa(httpPort), HTTPSAddr: ":" + strconv.Itoa(httpsPort),
		DataDir: data, AdminSocket: filepath.Join(t.TempDir(), "admin.sock"),
		ACMEDirectory: p.Directory, ACMECAFile: p.CAFile, RenewCheck: time.Second,
		Limits: httpguard.Defaults(),
	}
}

// backend is a service that names itself.
func backend(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto-Seen", r.Header.Get("X-Forwarded-Proto"))
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// client reaches every host name at 127.0.0.1 (the DNS the test stands
// for), trusting roots only.
func client(roots *x509.CertPool, httpsPort int) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, "127.0.0.1:"+port)
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64},
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func get(c *http.Client, url string) (*http.Response, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// waitServed polls url until it answers want (the certificate was
// obtained).
func waitServed(t *testing.T, c *http.Client, url, want string) *http.Response {
	t.Helper()
	var last error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, body, err := get(c, url)
		if err == nil && body == want {
			return resp
		}
		last = fmt.Errorf("%v %q", err, body)
	}
	t.Fatalf("%s never answered %q: %v", url, want, last)
	return nil
}

// TestEdgeAgainstPebble: two services on one edge, each with its own host
// name, over HTTPS with certificates from a real ACME server (chaining to
// its root), plain HTTP redirected, HTTP/2, TLS 1.2 at least, HSTS only
// where asked; a restart orders no new certificate; a new edge takes the
// listeners over from the running one under 16 clients with no failed
// request.
func TestEdgeAgainstPebble(t *testing.T) {
	httpPort, httpsPort := testacme.FreePort(t, portLo, portHi), testacme.FreePort(t, portLo, portHi)
	p := testacme.Start(t, testacme.Options{HTTPPort: httpPort, TLSPort: httpsPort}, portLo, portHi)
	data := t.TempDir()
	cfg := testConfig(t, p, httpPort, httpsPort, data)
	first := startEdge(t, cfg)
	admin := NewAdminClient(cfg.AdminSocket)
	ctx := context.Background()
	if _, err := admin.SetRoute(ctx, Route{Project: "one", Service: "api", Hosts: []string{"one.edge.test"}, Upstream: backend(t, "one")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetRoute(ctx, Route{Project: "two", Service: "web", Hosts: []string{"two.edge.test"}, Upstream: backend(t, "two"), HSTS: 31536000}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetRoute(ctx, Route{Project: "three", Service: "x", Hosts: []string{"one.edge.test"}, Upstream: "127.0.0.1:1"}); err == nil {
		t.Fatal("a host routed twice was accepted")
	}
	c := client(p.Roots(t), httpsPort)
	base := func(host string) string { return "https://" + host + ":" + strconv.Itoa(httpsPort) }
	start := time.Now()
	r1 := waitServed(t, c, base("one.edge.test")+"/", "one")
	r2 := waitServed(t, c, base("two.edge.test")+"/", "two")
	t.Logf("time to first certificates: %s", time.Since(start).Round(time.Millisecond))
	for _, r := range []*http.Response{r1, r2} {
		if r.ProtoMajor != 2 {
			t.Errorf("served over %s, want HTTP/2", r.Proto)
		}
		if r.TLS.Version < tls.VersionTLS12 {
			t.Errorf("TLS version %x", r.TLS.Version)
		}
		if got := r.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || !strings.HasSuffix(got[0], ".edge.test") {
			t.Errorf("certificate names %v", got)
		}
		if r.Header.Get("X-Proto-Seen") != "https" {
			t.Errorf("upstream saw X-Forwarded-Proto %q", r.Header.Get("X-Proto-Seen"))
		}
	}
	if r1.Header.Get("Strict-Transport-Security") != "" || r2.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Errorf("HSTS: one %q, two %q", r1.Header.Get("Strict-Transport-Security"), r2.Header.Get("Strict-Transport-Security"))
	}
	// TLS 1.1 is refused.
	old := &tls.Config{RootCAs: p.Roots(t), ServerName: "one.edge.test", MaxVersion: tls.VersionTLS11}
	if conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(httpsPort), old); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP redirects to HTTPS, path and query kept; unknown hosts 404.
	resp, _, err := get(c, "http://one.edge.test:"+strconv.Itoa(httpPort)+"/v1/invoices?limit=2")
	if err != nil || resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != base("one.edge.test")+"/v1/invoices?limit=2" {
		t.Fatalf("redirect: %v %v", resp, err)
	}
	resp, _, err = get(c, "http://other.example.com:"+strconv.Itoa(httpPort)+"/")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown host over HTTP: %v %v", resp, err)
	}
	orders := p.Orders()
	if orders != 2 {
		t.Errorf("pebble has %d orders, want 2", orders)
	}
	if got := testutil.ToFloat64(first.e.m.obtained.WithLabelValues("one.edge.test", "false")); got != 1 {
		t.Errorf("obtained counter %v", got)
	}
	certs := first.e.Certificates()
	if len(certs) != 2 || time.Until(certs[0].NotAfter) < 24*time.Hour {
		t.Errorf("certificates %+v", certs)
	}

	// A restart serves the kept certificates: no new order.
	first.stop()
	metrics := "127.0.0.1:" + strconv.Itoa(testacme.FreePort(t, portLo, portHi))
	second := startEdge(t, cfg, metrics)
	waitServed(t, c, base("one.edge.test")+"/", "one")
	waitServed(t, c, base("two.edge.test")+"/", "two")
	if got := p.Orders(); got != orders {
		t.Errorf("restart: pebble has %d orders, want still %d", got, orders)
	}

	// Hand-off under load: a third edge takes the listeners over while the
	// second serves 16 clients, then the second stops.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc := client(p.Roots(t), httpsPort)
			host := []string{"one.edge.test", "two.edge.test"}[i%2]
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				_, body, err := get(lc, base(host)+"/")
				if err != nil || body != strings.TrimSuffix(host, ".edge.test") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %q", err, body))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	cfg3 := cfg
	cfg3.AdminSocket = filepath.Join(t.TempDir(), "admin.sock")
	third := startEdge(t, cfg3, metrics) // takes the metrics listener over too
	time.Sleep(500 * time.Millisecond)
	second.stop()
	time.Sleep(time.Second)
	close(stopLoad)
	wg.Wait()
	t.Logf("hand-off under 16 clients: %d requests, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Fatalf("hand-off: %d failed (first: %v), %d ok", failed.Load(), firstErr.Load(), ok.Load())
	}
	if got := p.Orders(); got != orders {
		t.Errorf("hand-off: pebble has %d orders, want still %d", got, orders)
	}
	if len(third.e.Table().Routes) != 2 {
		t.Errorf("the new edge serves %d routes", len(third.e.Table().Routes))
	}
	_, body, err := get(c, "http://"+metrics+"/metrics")
	if err != nil || !strings.Contains(body, `invdeploy_edge_certificate_expiry_timestamp_seconds{host="one.edge.test",own="false"}`) {
		t.Errorf("the new edge's metrics: %v\n%.500s", err, body)
	}
}

// TestEachChallenge obtains a certificate by HTTP-01 only, then by
// TLS-ALPN-01 only.
func TestEachChallenge(t *testing.T) {
	for _, ch := range []string{ChallengeHTTP01, ChallengeTLSALPN01} {
		t.Run(ch, func(t *testing.T) {
			httpPort, httpsPort := testacme.FreePort(t, portLo, portHi), testacme.FreePort(t, portLo, portHi)
			p := testacme.Start(t, testacme.Options{HTTPPort: httpPort, TLSPort: httpsPort}, portLo, portHi)
			cfg := testConfig(t, p, httpPort, httpsPort, t.TempDir())
			cfg.Challenges = []string{ch}
			te := startEdge(t, cfg)
			if _, err := NewAdminClient(cfg.AdminSocket).SetRoute(context.Background(), Route{Project: "p", Service: "s", Hosts: []string{"c.edge.test"}, Upstream: backend(t, "c")}); err != nil {
				t.Fatal(err)
			}
			waitServed(t, client(p.Roots(t), httpsPort), "https://c.edge.test:"+strconv.Itoa(httpsPort)+"/", "c")
			if n := testutil.ToFloat64(te.e.m.requests.WithLabelValues("http", "challenge")); (ch == ChallengeHTTP01) != (n > 0) {
				t.Errorf("%s: %v HTTP-01 challenge requests answered", ch, n)
			}
		})
	}
}

// TestRenewal: a short-lived certificate is renewed ahead of its expiry
// (a new serial, the renewal counted); once the CA is gone, the failing
// renewal shows in invdeploy_edge_certificate_renewal_failing.
func TestRenewal(t *testing.T) {
	httpPort, httpsPort := testacme.FreePort(t, portLo, portHi), testacme.FreePort(t, portLo, portHi)
	p := testacme.Start(t, testacme.Options{HTTPPort: httpPort, TLSPort: httpsPort, Validity: 30 * time.Second}, portLo, portHi)
	cfg := testConfig(t, p, httpPort, httpsPort, t.TempDir())
	te := startEdge(t, cfg)
	if _, err := NewAdminClient(cfg.AdminSocket).SetRoute(context.Background(), Route{Project: "p", Service: "s", Hosts: []string{"r.edge.test"}, Upstream: backend(t, "r")}); err != nil {
		t.Fatal(err)
	}
	c := client(p.Roots(t), httpsPort)
	url := "https://r.edge.test:" + strconv.Itoa(httpsPort) + "/"
	first := waitServed(t, c, url, "r").TLS.PeerCertificates[0]
	renewed := func() bool { return testutil.ToFloat64(te.e.m.obtained.WithLabelValues("r.edge.test", "true")) >= 1 }
	if !testacme.WaitFor(context.Background(), 40*time.Second, renewed) {
		t.Fatal("the short-lived certificate was not renewed")
	}
	c.CloseIdleConnections()
	second := waitServed(t, c, url, "r").TLS.PeerCertificates[0]
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renewed, but the old certificate is still served")
	}
	p.Stop()
	failing := func() bool { return testutil.ToFloat64(te.e.m.failing.WithLabelValues("r.edge.test")) == 1 }
	if !testacme.WaitFor(context.Background(), 40*time.Second, failing) {
		t.Fatal("a renewal against a CA that is gone did not show as failing")
	}
	if n := testutil.ToFloat64(te.e.m.failures.WithLabelValues("r.edge.test", "true")); n < 1 {
		t.Errorf("renewal failures counted: %v", n)
	}
}

// TestOwnCertificate: a route that brings its certificate and key is
// served with them, and no order is made for its host.
func TestOwnCertificate(t *testing.T) {
	httpPort, httpsPort := testacme.FreePort(t, portLo, portHi), testacme.FreePort(t, portLo, portHi)
	data := t.TempDir()
	certPEM, keyPEM, pool := selfSigned(t, "own.edge.test")
	if err := os.WriteFile(filepath.Join(data, "own.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "own.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{HTTPAddr: ":" + strconv.Itoa(httpPort), HTTPSAddr: ":" + strconv.Itoa(httpsPort), DataDir: data,
		AdminSocket: filepath.Join(t.TempDir(), "admin.sock"), ACMEDirectory: "https://127.0.0.1:1/dir", Limits: httpguard.Defaults()}
	te := startEdge(t, cfg)
	if _, err := NewAdminClient(cfg.AdminSocket).SetRoute(context.Background(), Route{Project: "p", Service: "s", Hosts: []string{"own.edge.test"},
		Upstream: backend(t, "own"), CertFile: "own.crt", KeyFile: "own.key", HSTS: 60}); err != nil {
		t.Fatal(err)
	}
	resp := waitServed(t, client(pool, httpsPort), "https://own.edge.test:"+strconv.Itoa(httpsPort)+"/", "own")
	if resp.Header.Get("Strict-Transport-Security") != "max-age=60" {
		t.Errorf("HSTS %q", resp.Header.Get("Strict-Transport-Security"))
	}
	if n := testutil.CollectAndCount(te.e.m.orders); n != 0 {
		t.Errorf("%d orders for a host with its own certificate", n)
	}
	if cs := te.e.Certificates(); len(cs) != 1 || !cs[0].Own {
		t.Errorf("certificates %+v", cs)
	}
}

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pool
}
