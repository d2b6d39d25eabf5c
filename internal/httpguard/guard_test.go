package httpguard

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs h within l on a loopback port and returns its address.
func serve(t *testing.T, l Limits, h http.Handler) (string, *Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, cl := l.Server(h, ln)
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), cl
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	io.WriteString(w, "hello")
})

// roundTrip sends raw on c and reads one response.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// checkProblem asserts an RFC 9457 answer with code and Retry-After.
func checkProblem(t *testing.T, resp *http.Response, status int, code string, retry bool) {
	t.Helper()
	defer resp.Body.Close()
	var p Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("%s: body not a problem: %v", resp.Status, err)
	}
	if resp.StatusCode != status || p.Status != status || p.Code != code || p.Type != ProblemTypeBase+code || p.Title == "" {
		t.Fatalf("got %s %+v, want %d %s", resp.Status, p, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if got := resp.Header.Get("Retry-After"); retry && got == "" {
		t.Fatalf("%s without Retry-After", resp.Status)
	}
}

// TestBusyConnectionsOverTheCapAre503: with every place taken by a
// connection in the middle of a request, the next connection is answered
// 503 over_capacity with Retry-After at once; when one finishes, there is
// room again.
func TestBusyConnectionsOverTheCapAre503(t *testing.T) {
	l := Defaults()
	l.MaxConns = 2
	addr, cl := serve(t, l, hello)
	var busy []net.Conn
	for i := 0; i < 2; i++ {
		c, _ := dial(t, addr)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
		busy = append(busy, c)
	}
	waitFor(t, func() bool { return cl.Stats().Open == 2 })
	time.Sleep(silentEvictAfter / 10)
	c, br := dial(t, addr)
	start := time.Now()
	resp := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	checkProblem(t, resp, http.StatusServiceUnavailable, "over_capacity", true)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the 503 took %s", d)
	}
	if st := cl.Stats(); st.Refused != 1 || st.Open != 2 {
		t.Fatalf("stats %+v", st)
	}
	busy[0].Close()
	waitFor(t, func() bool { return cl.Stats().Open == 1 })
	c, br = dial(t, addr)
	if resp := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("after a place freed: %s", resp.Status)
	}
}

// TestIdleConnectionMakesRoom: at the cap, a keep-alive connection idle
// for longer than idleEvictAfter is closed for a new one, which is served.
func TestIdleConnectionMakesRoom(t *testing.T) {
	l := Defaults()
	l.MaxConns = 1
	addr, cl := serve(t, l, hello)
	idle, ibr := dial(t, addr)
	if resp := roundTrip(t, idle, ibr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	time.Sleep(idleEvictAfter + 50*time.Millisecond)
	c, br := dial(t, addr)
	if resp := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("the new connection: %s", resp.Status)
	}
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := ibr.ReadByte(); err == nil {
		t.Fatal("the idle connection is still open")
	}
	if st := cl.Stats(); st.Evicted != 1 || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestIdleKeepAliveIsClosed: a keep-alive connection with no request for
// IdleTimeout is closed by the server.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	l := Defaults()
	l.IdleTimeout = 200 * time.Millisecond
	addr, cl := serve(t, l, hello)
	c, br := dial(t, addr)
	roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").Body.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("closed after %s, want about 200ms", d)
	}
	waitFor(t, func() bool { return cl.Stats().Open == 0 })
}

// TestSlowHeaderAndBodyAreCut: a header sent slower than
// ReadHeaderTimeout and a body slower than ReadTimeout lose their
// connection; the body's handler sees a deadline error.
func TestSlowHeaderAndBodyAreCut(t *testing.T) {
	l := Defaults()
	l.ReadHeaderTimeout, l.ReadTimeout = 200*time.Millisecond, 400*time.Millisecond
	bodyErr := make(chan error, 1)
	addr, _ := serve(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- BodyReadError(r)
		if err != nil {
			w.Header().Set("Connection", "close")
			WriteProblem(w, http.StatusRequestTimeout, "request_timeout", "slow", 0)
		}
	}))
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		// Go answers some header timeouts with 408; either way it ends.
		io.Copy(io.Discard, br)
	}
	c, br = dial(t, addr)
	start := time.Now()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	go func() {
		for i := 0; i < 50; i++ {
			if _, err := io.WriteString(c, "x"); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("slow body: %v", err)
	}
	checkProblem(t, resp, http.StatusRequestTimeout, "request_timeout", false)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("slow body cut after %s, want about 400ms", d)
	}
	if err := <-bodyErr; !ClientTimedOut(err) {
		t.Fatalf("BodyReadError = %v, want a deadline", err)
	}
}

// TestClientThatDoesNotReadIsCut: a response the client does not take is
// abandoned after WriteTimeout without progress; a slow stream that makes
// progress is not cut.
func TestClientThatDoesNotReadIsCut(t *testing.T) {
	l := Defaults()
	l.WriteTimeout = 300 * time.Millisecond
	done := make(chan error, 2)
	big := strings.Repeat("x", 64<<10)
	addr, _ := serve(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			for i := 0; i < 8; i++ {
				io.WriteString(w, "tick\n")
				http.NewResponseController(w).Flush()
				time.Sleep(100 * time.Millisecond)
			}
			done <- nil
			return
		}
		var err error
		for i := 0; i < 1024 && err == nil; i++ {
			_, err = io.WriteString(w, big)
		}
		done <- err
	}))
	c, _ := dial(t, addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("64 MB written to a client that reads nothing")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write to a client that reads nothing was not cut")
	}
	resp, err := http.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(b), "tick") != 8 {
		t.Fatalf("the stream was cut: %q", b)
	}
}

// TestHugeHeaderIsRefused: a header over MaxHeaderBytes is a 431.
func TestHugeHeaderIsRefused(t *testing.T) {
	addr, _ := serve(t, Defaults(), hello)
	c, br := dial(t, addr)
	resp := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: %s", resp.Status)
	}
}

func TestLimitsFromEnvAndFlags(t *testing.T) {
	l := Defaults()
	env := map[string]string{"P_MAX_CONNS": "10", "P_READ_TIMEOUT": "5s"}
	if err := l.FromEnv("P_", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if l.MaxConns != 10 || l.ReadTimeout != 5*time.Second || l.IdleTimeout != Defaults().IdleTimeout {
		t.Fatalf("%+v", l)
	}
	if got := strings.Join(l.Args(), " "); got != "--max-conns 10 --read-timeout 5s" {
		t.Fatalf("Args %q", got)
	}
	for _, bad := range []map[string]string{{"P_MAX_CONNS": "many"}, {"P_IDLE_TIMEOUT": "soon"}} {
		l := Defaults()
		if err := l.FromEnv("P_", func(k string) string { return bad[k] }); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
	l = Defaults()
	l.MaxConns = 0
	if l.Validate() == nil {
		t.Fatal("max-conns 0 accepted")
	}
	l = Defaults()
	l.ReadTimeout = time.Millisecond
	if l.Validate() == nil {
		t.Fatal("read timeout 1ms accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
