// Package testacme runs a real ACME server for tests: Let's Encrypt's
// pebble and its pebble-challtestsrv (DNS), built from the Go module proxy
// at a pinned version the first time a test needs them and kept in the
// user's cache directory (their code never enters this repository).
//
// The DNS server answers every name with the address the test gives (the
// edge's), so pebble validates HTTP-01 and TLS-ALPN-01 challenges against
// the edge under test, on the ports the test gives.
package testacme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// Version is the pebble release the tests run.
const Version = "v2.10.3"

// Options shape a pebble.
type Options struct {
	// Address is what the DNS server answers for every name (the edge's);
	// default 127.0.0.1.
	Address string
	// HTTPPort and TLSPort are where pebble validates HTTP-01 and
	// TLS-ALPN-01 challenges (the edge's ports).
	HTTPPort, TLSPort int
	// Validity is the lifetime of the certificates it issues (default 90
	// days).
	Validity time.Duration
	// ListenIP is where pebble listens (default 127.0.0.1); its TLS
	// certificate names it too.
	ListenIP string
}

// Pebble is a running pebble.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is the PEM of the CA that signed the directory's TLS
	// certificate (what the edge's --acme-ca names).
	CAFile string
	// CAPEM is that PEM.
	CAPEM []byte
	mgmt  string
	log   *syncBuffer
	cmd   *exec.Cmd
}

// Stop ends pebble (its DNS server stays): orders and renewals fail from
// now on.
func (p *Pebble) Stop() {
	_ = p.cmd.Process.Kill()
}

// Binaries builds pebble and pebble-challtestsrv (once per version and
// cache directory) and returns their directory; Missing when it cannot.
func Binaries(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "invdeploy-test", "pebble-"+Version)
	if _, err := os.Stat(filepath.Join(dir, "pebble-challtestsrv")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"pebble", "pebble-challtestsrv"} {
		c := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/"+cmd+"@"+Version)
		c.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := c.CombinedOutput(); err != nil {
			testenv.Missing(t, fmt.Sprintf("pebble: go install %s@%s: %v\n%s", cmd, Version, err, out))
		}
	}
	return dir
}

// handedOut are the ports FreePort returned in this process: a port is
// only bound later (the edge's by its container, pebble's by pebble), so a
// second call must not find the first one's port free again.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort is a free TCP port in [lo, hi] (the tests' own range), never
// one it returned before in this process.
func FreePort(t testing.TB, lo, hi int) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	start := lo + int(time.Now().UnixNano()%int64(hi-lo+1))
	for i := 0; i <= hi-lo; i++ {
		p := lo + (start-lo+i)%(hi-lo+1)
		if handedOut.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		if u, err := net.ListenPacket("udp", ":"+strconv.Itoa(p)); err == nil {
			u.Close()
			handedOut.ports[p] = true
			return p
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// Start runs pebble and its DNS server until the test ends. Ports come
// from [lo, hi].
func Start(t testing.TB, o Options, lo, hi int) *Pebble {
	t.Helper()
	bin := Binaries(t)
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	if o.ListenIP == "" {
		o.ListenIP = "127.0.0.1"
	}
	if o.Validity == 0 {
		o.Validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := listenerCert(t, o.ListenIP)
	p := &Pebble{CAFile: filepath.Join(dir, "ca.pem"), CAPEM: caPEM, log: &syncBuffer{}}
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dnsPort, dnsMgmt := FreePort(t, lo, hi), FreePort(t, lo, hi)
	dns := exec.Command(filepath.Join(bin, "pebble-challtestsrv"), "-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort),
		"-management", "127.0.0.1:"+strconv.Itoa(dnsMgmt), "-defaultIPv4", o.Address, "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	dns.Stdout, dns.Stderr = io.Discard, io.Discard
	start(t, dns)
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(dnsMgmt))

	port, mgmt := FreePort(t, lo, hi), FreePort(t, lo, hi)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  net.JoinHostPort(o.ListenIP, strconv.Itoa(port)),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmt),
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{"description": "test",
			"validityPeriod": int(o.Validity / time.Second)}},
	}}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	pb := exec.Command(filepath.Join(bin, "pebble"), "-config", cfgPath, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort))
	pb.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	pb.Stdout, pb.Stderr = p.log, p.log
	start(t, pb)
	p.cmd = pb
	waitTCP(t, net.JoinHostPort(o.ListenIP, strconv.Itoa(port)))
	p.Directory = "https://" + net.JoinHostPort(o.ListenIP, strconv.Itoa(port)) + "/dir"
	p.mgmt = "https://127.0.0.1:" + strconv.Itoa(mgmt)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's log:\n%s", p.log.String())
		}
	})
	return p
}

func start(t testing.TB, c *exec.Cmd) {
	t.Helper()
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", c.Path, err)
	}
	t.Cleanup(func() {
		_ = c.Process.Kill()
		_ = c.Wait()
	})
}

func waitTCP(t testing.TB, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("%s did not listen within 20s", addr)
}

var ordersRE = regexp.MustCompile(`There are now (\d+) orders in the db`)

// Orders is how many orders pebble has received.
func (p *Pebble) Orders() int {
	n := 0
	for _, m := range ordersRE.FindAllStringSubmatch(p.log.String(), -1) {
		n, _ = strconv.Atoi(m[1])
	}
	return n
}

// Roots is a pool of pebble's issuing root (certificates it issues chain
// to it).
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if b := p.RootPEM(t); !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble roots: no certificate in %q", b)
	}
	return pool
}

// RootPEM is pebble's issuing root as PEM.
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(p.CAPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca}}, Timeout: 10 * time.Second}
	resp, err := c.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble roots: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// Log is pebble's output so far.
func (p *Pebble) Log() string { return p.log.String() }

// listenerCert makes a CA and, signed by it, pebble's TLS certificate for
// localhost and ip.
func listenerCert(t testing.TB, ip string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "invdeploy test ACME CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pebble"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost", "pebble"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(ip)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// syncBuffer is a buffer written by a process and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond until it holds or d passes.
func WaitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}
