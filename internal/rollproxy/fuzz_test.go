package rollproxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

var (
	fuzzOnce sync.Once
	fuzzAddr string
)

// fuzzProxy is one guarded proxy (short timeouts) in front of a backend
// that reads the body and echoes its length, shared by the fuzz inputs.
func fuzzProxy(f *testing.F) string {
	fuzzOnce.Do(func() {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Len", strings.Repeat("9", int(n%7)))
			io.WriteString(w, "ok")
		}))
		p := New(nil)
		p.SetUpstreamTimeout(time.Second)
		if _, err := p.Deploy(f.Context(), strings.TrimPrefix(backend.URL, "http://"), DeployOptions{HealthInterval: 10 * time.Millisecond}); err != nil {
			f.Fatal(err)
		}
		l := httpguard.Defaults()
		l.ReadHeaderTimeout, l.ReadTimeout, l.WriteTimeout, l.IdleTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		srv, cl := l.Server(p, ln)
		go srv.Serve(cl)
		fuzzAddr = ln.Addr().String()
	})
	return fuzzAddr
}

// FuzzProxyRequest sends arbitrary bytes as a client's request to the
// guarded proxy: every answer is a well-formed HTTP response (or the
// connection is closed), never a 500, its own 502/503/504 are problems
// with Retry-After, and the proxy answers an ordinary request afterwards.
func FuzzProxyRequest(f *testing.F) {
	addr := fuzzProxy(f)
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
		"GET http://other/ HTTP/1.1\r\nHost: y\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x00\xff garbage",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(raw); err != nil {
			return
		}
		// The input is all the client sends: the proxy answers what it
		// got and closes, instead of waiting for more.
		c.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break // closed (a bad request may get no answer) or no more answers
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusInternalServerError {
				t.Fatalf("500 for %q: %q", raw, body)
			}
			// 502, 503, 504 are the proxy's own (net/http itself answers
			// a malformed request 400, 431 or 505 in plain text).
			if resp.StatusCode >= 502 && resp.StatusCode <= 504 {
				if resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte(`"code"`)) {
					t.Fatalf("%s without a problem body and Retry-After: %q", resp.Status, body)
				}
			}
		}
		resp, err := http.Get("http://" + addr + "/after")
		if err != nil {
			t.Fatalf("the proxy no longer answers: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("an ordinary request after the input: %s", resp.Status)
		}
	})
}
