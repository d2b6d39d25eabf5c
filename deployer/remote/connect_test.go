package remote

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/invdeploy/invdeploy/internal/testenv"
)

func TestPlainTCPToNonLoopbackRefused(t *testing.T) {
	for _, host := range []string{"tcp://203.0.113.7:2375", "tcp://ec2.example.test:2376"} {
		_, err := Connect(context.Background(), host, Options{})
		if FailedStep(err) != StepTLS || !strings.Contains(err.Error(), "--tlscacert") {
			t.Errorf("%s: want a TLS refusal naming the flags, got %v", host, err)
		}
	}
	// Loopback without TLS is allowed (a local engine exposed on 127.0.0.1).
	c, err := Connect(context.Background(), "tcp://127.0.0.1:2375", Options{})
	if err != nil || c.Secure {
		t.Fatalf("loopback tcp: %v, secure=%v", err, c != nil && c.Secure)
	}
}

func TestIncompleteTLSRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o600)
	_, err := Connect(context.Background(), "tcp://203.0.113.7:2376", Options{TLS: TLSOptions{CACert: filepath.Join(dir, "ca.pem")}})
	if FailedStep(err) != StepTLS || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("want a missing-file refusal, got %v", err)
	}
}

// pki writes a CA, a server cert for 127.0.0.1 and a client cert into dir.
func pki(t *testing.T, dir string) (serverTLS *tls.Config) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	write("ca.pem", "CERTIFICATE", caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) (tls.Certificate, []byte, []byte) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return pair, der, kd
	}
	srvPair, _, _ := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	_, cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	write("cert.pem", "CERTIFICATE", cliDER)
	write("key.pem", "EC PRIVATE KEY", cliKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{srvPair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		io.WriteString(w, "OK")
	}))
	srv.TLS = pki(t, dir)
	srv.StartTLS()
	defer srv.Close()
	host := "tcp://" + srv.Listener.Addr().String()

	c, err := Connect(context.Background(), host, Options{TLS: TLSOptions{CertPath: dir}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Secure {
		t.Error("TLS connection not marked secure")
	}
	cli, err := client.NewClientWithOpts(append([]client.Opt{client.WithAPIVersionNegotiation()}, c.ClientOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Ping(context.Background()); err != nil {
		t.Fatalf("ping over mutual TLS: %v", err)
	}
	if st := c.Stats(); st.BytesSent == 0 || st.Dials == 0 {
		t.Errorf("no traffic counted: %+v", st)
	}

	// Without the client certificate the server refuses.
	plain, _ := client.NewClientWithOpts(client.WithHost(host), client.WithTLSClientConfig(filepath.Join(dir, "ca.pem"), "", ""))
	if _, err := plain.Ping(context.Background()); err == nil {
		t.Error("server accepted a client without a certificate; the test proves nothing")
	}
}

func TestSSHClientOptsIgnoreEnvTLS(t *testing.T) {
	certs := t.TempDir()
	pki(t, certs)
	t.Setenv("DOCKER_CERT_PATH", certs) // FromEnv would turn on TLS over the SSH channel
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	r := newRig(t)
	c, err := Connect(context.Background(), r.endpoint(t).String(), Options{SSH: r.opts()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := append([]client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}, c.ClientOpts()...)
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.eng.pings.Load() == 0 {
		t.Error("the fake engine saw no ping")
	}
}

// TestRealEngineOverOneSSHConnection drives the local Docker engine through
// the in-process SSH server: many API calls, one SSH connection.
func TestRealEngineOverOneSSHConnection(t *testing.T) {
	testenv.NeedDocker(t)
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	r := newRig(t)
	c, err := Connect(context.Background(), "ssh://deploy@"+r.srv.addr+sock, Options{SSH: r.opts()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cli, err := client.NewClientWithOpts(append([]client.Opt{client.WithAPIVersionNegotiation()}, c.ClientOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := cli.Info(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if r.srv.accepted.Load() != 1 {
		t.Errorf("%d SSH connections for 11 API calls, want 1", r.srv.accepted.Load())
	}
	t.Logf("engine %s (API %s) over one SSH connection: %+v", v.Version, v.APIVersion, c.Stats())
}
