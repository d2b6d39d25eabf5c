package rollproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// problemOf decodes an RFC 9457 answer and checks its headers.
func problemOf(t *testing.T, resp *http.Response) httpguard.Problem {
	t.Helper()
	defer resp.Body.Close()
	var p httpguard.Problem
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: Content-Type %q", resp.Status, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.Status != resp.StatusCode || p.Type != httpguard.ProblemTypeBase+p.Code {
		t.Fatalf("%s: problem %+v %v", resp.Status, p, err)
	}
	return p
}

// TestOwnErrorsAreProblems: no backend (503), a backend that refuses
// (502) and one that does not answer within the upstream timeout (504)
// are RFC 9457 problems with Retry-After.
func TestOwnErrorsAreProblems(t *testing.T) {
	p := New(nil)
	p.SetUpstreamTimeout(300 * time.Millisecond)
	front := httptest.NewServer(p)
	defer front.Close()
	check := func(path string, status int, code string) {
		t.Helper()
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		if pr := problemOf(t, resp); resp.StatusCode != status || pr.Code != code || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %s %+v Retry-After %q, want %d %s", path, resp.Status, pr, resp.Header.Get("Retry-After"), status, code)
		}
	}
	check("/", http.StatusServiceUnavailable, "no_backend")

	hang := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-hang
		}
	}))
	target := strings.TrimPrefix(backend.URL, "http://")
	if _, err := p.Deploy(t.Context(), target, fastOpts()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	check("/hang", http.StatusGatewayTimeout, "upstream_timeout")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("504 after %s, want about 300ms", d)
	}
	close(hang)
	backend.Close()
	check("/", http.StatusBadGateway, "upstream_unavailable")
}

// TestSlowBodyIs408: through the guarded server, a request body sent
// slower than the read timeout ends in 408 (the client's fault, not the
// backend's) and the backend error count stays 0.
func TestSlowBodyIs408(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer backend.Close()
	p := New(nil)
	if _, err := p.Deploy(t.Context(), strings.TrimPrefix(backend.URL, "http://"), DeployOptions{HealthInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	l := httpguard.Defaults()
	l.ReadTimeout = 400 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, cl := l.Server(p, ln)
	go srv.Serve(cl)
	defer srv.Close()
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
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/", pr)
	req.ContentLength = 100
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if pb := problemOf(t, resp); resp.StatusCode != http.StatusRequestTimeout || pb.Code != "request_timeout" {
		t.Fatalf("slow body: %s %+v", resp.Status, pb)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cut after %s", d)
	}
	if n := counterValue(t, p.m.errors.WithLabelValues(p.Target())); n != 0 {
		t.Fatalf("a slow client counted %v upstream errors", n)
	}
}

// TestStateSurvivesARestart: a proxy that keeps its state serves, once
// restarted, the target and release of the last switch at once; a state
// file it cannot read is no fatal error and restores nothing.
func TestStateSurvivesARestart(t *testing.T) {
	v1 := newVersion(t, "v1")
	path := filepath.Join(t.TempDir(), "state.json")
	p := New(nil)
	if st, err := p.KeepState(path, func(err error) { t.Error(err) }); err != nil || st.Target != "" {
		t.Fatalf("first start: %+v %v", st, err)
	}
	o := fastOpts()
	o.Release = Release{Project: "shop", Number: "4", Revision: "abc123", Service: "api"}
	if _, err := p.Deploy(t.Context(), v1.addr(), o); err != nil {
		t.Fatal(err)
	}

	restarted := New(nil)
	st, err := restarted.KeepState(path, nil)
	if err != nil || st.Target != v1.addr() || st.Release != o.Release {
		t.Fatalf("restored %+v %v", st, err)
	}
	front := httptest.NewServer(restarted)
	defer front.Close()
	if body, code, err := get(front.Client(), front.URL+"/"); err != nil || code != 200 || body != "v1" {
		t.Fatalf("restarted proxy: %d %q %v", code, body, err)
	}
	if restarted.Release() != o.Release {
		t.Fatalf("release after restart %+v", restarted.Release())
	}

	for _, bad := range []string{"{", `{"target":"http://evil/"}`, `{"target":"a:1","release":"x"}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if st, err := New(nil).KeepState(path, nil); err == nil || st.Target != "" {
			t.Fatalf("state %q: %+v %v, want an error and nothing restored", bad, st, err)
		}
	}
}

// FuzzParseState: whatever the state file holds, ParseState either refuses
// it or returns a state that is valid and writes back the same.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"target":"api-1a2b:8000","project":"shop","release":"4","revision":"abc","service":"api"}`))
	f.Add([]byte(`{"target":"a:1"}`))
	f.Add([]byte(`{"target":"[::1]:80"}`))
	f.Add(bytes.Repeat([]byte("x"), 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseState(b)
		if err != nil {
			return
		}
		if _, err := splitTarget(st.Target); err != nil || st.Release.Validate() != nil {
			t.Fatalf("accepted %+v", st)
		}
		again, _ := json.Marshal(st)
		if st2, err := ParseState(again); err != nil || st2 != st {
			t.Fatalf("round trip %+v -> %+v %v", st, st2, err)
		}
	})
}
