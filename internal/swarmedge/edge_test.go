package swarmedge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// backends listens on 127.0.0.2 and 127.0.0.3 with one port, the way a
// service's tasks share a port on different addresses.
func backends(t *testing.T, handlers ...http.Handler) (port string, ips []string) {
	t.Helper()
	for try := 0; try < 20; try++ {
		ln0, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2 here: %v", err)
		}
		_, port, _ = net.SplitHostPort(ln0.Addr().String())
		lns := []net.Listener{ln0}
		ok := true
		for i := 1; i < len(handlers); i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%s", i+2, port))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		if !ok {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		for i, ln := range lns {
			srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handlers[i]}}
			srv.Start()
			t.Cleanup(srv.Close)
			ips = append(ips, fmt.Sprintf("127.0.0.%d", i+2))
		}
		return port, ips
	}
	t.Fatal("no common free port on 127.0.0.2 and 127.0.0.3")
	return "", nil
}

func counting(n *atomic.Int64, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, body)
	})
}

func newEdge(t *testing.T, port string, ips ...string) *Edge {
	t.Helper()
	e, err := New("tasks.api:"+port, func(context.Context, string) ([]string, error) { return ips, nil }, Options{Penalty: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Refresh(context.Background())
	return e
}

func do(t *testing.T, h http.Handler, method string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://edge/v1/invoices", strings.NewReader(`{"a":1}`))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRoundRobin(t *testing.T) {
	var a, b atomic.Int64
	port, ips := backends(t, counting(&a, "a"), counting(&b, "b"))
	e := newEdge(t, port, ips...)
	for i := 0; i < 10; i++ {
		if rec := do(t, e, http.MethodGet, nil); rec.Code != 200 {
			t.Fatalf("GET: %d %s", rec.Code, rec.Body)
		}
	}
	if a.Load() != 5 || b.Load() != 5 {
		t.Errorf("requests per backend = %d, %d; want 5, 5", a.Load(), b.Load())
	}
}

// A backend that refuses connections (a task gone) costs no request, POST
// included: the request never reached it.
func TestDialFailureGoesToNextBackend(t *testing.T) {
	var b atomic.Int64
	port, ips := backends(t, counting(&b, "b"))
	e := newEdge(t, port, "127.0.0.9", ips[0])
	for i := 0; i < 10; i++ {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if rec := do(t, e, m, nil); rec.Code != 200 || rec.Body.String() != "b" {
				t.Fatalf("%s: %d %s", m, rec.Code, rec.Body)
			}
		}
	}
	if b.Load() != 20 {
		t.Errorf("live backend got %d requests, want 20", b.Load())
	}
}

// A backend that drops the connection after reading the request may have
// acted on it: a POST is retried elsewhere only with an Idempotency-Key.
func TestRetryOnlyWhatIsSafe(t *testing.T) {
	var drops, b atomic.Int64
	drop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drops.Add(1)
		io.Copy(io.Discard, r.Body)
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	})
	port, ips := backends(t, drop, counting(&b, "b"))
	for _, tc := range []struct {
		method string
		hdr    map[string]string
		want   int
	}{
		{http.MethodPost, nil, http.StatusBadGateway},
		{http.MethodPost, map[string]string{"Idempotency-Key": "k1"}, 200},
		{http.MethodGet, nil, 200},
		{http.MethodPut, nil, 200},
	} {
		e := newEdge(t, port, ips...) // a fresh edge: the dropping backend comes first
		e.next.Store(uint64(len(ips)) - 1)
		before := b.Load()
		rec := do(t, e, tc.method, tc.hdr)
		if rec.Code != tc.want {
			t.Errorf("%s %v: %d, want %d", tc.method, tc.hdr, rec.Code, tc.want)
		}
		if retried := b.Load() - before; (tc.want == 200) != (retried == 1) {
			t.Errorf("%s %v: the live backend got %d requests", tc.method, tc.hdr, retried)
		}
	}
	if drops.Load() != 4 {
		t.Errorf("the dropping backend saw %d requests, want 4", drops.Load())
	}
}

// TestNoBackends: no task is a 503 problem with Retry-After; a task that
// refuses is a 502 problem that names no address behind the edge.
func TestNoBackends(t *testing.T) {
	e := newEdge(t, "8000")
	rec := do(t, e, http.MethodGet, nil)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/problem+json" ||
		rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"code":"no_backend"`) {
		t.Errorf("no backends: %d %v %s, want a 503 problem", rec.Code, rec.Header(), rec.Body)
	}
	e, err := New("tasks.api:1", func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Refresh(context.Background())
	rec = do(t, e, http.MethodGet, nil)
	if rec.Code != http.StatusBadGateway || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), `"code":"upstream_unavailable"`) || strings.Contains(rec.Body.String(), "127.0.0.1") {
		t.Errorf("a refusing task: %d %s, want a 502 problem", rec.Code, rec.Body)
	}
	if _, err := New("tasks.api", nil, Options{}, nil); err == nil {
		t.Error("an upstream without a port was accepted")
	}
}

// TestEdgeLimits: behind the guarded server, a body sent slower than the
// read timeout is a 408 and counts no backend as failed; a task that does
// not answer within the upstream timeout is a 504 problem.
func TestEdgeLimits(t *testing.T) {
	var n atomic.Int64
	hang := make(chan struct{})
	port, ips := backends(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/hang" {
			<-hang
		}
	}))
	defer close(hang)
	e, err := New("tasks.api:"+port, func(context.Context, string) ([]string, error) { return ips, nil }, Options{UpstreamTimeout: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Refresh(context.Background())
	l := httpguard.Defaults()
	l.ReadTimeout = 400 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, cl := l.Server(e, ln)
	go srv.Serve(cl)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := pw.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, base+"/", pr)
	req.ContentLength = 100
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), `"code":"request_timeout"`) || n.Load() != 0 {
		t.Fatalf("slow body: %s %s (backend saw %d)", resp.Status, b, n.Load())
	}
	resp, err = http.Post(base+"/hang", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"code":"upstream_timeout"`) {
		t.Fatalf("hanging task: %s %s", resp.Status, b)
	}
}
