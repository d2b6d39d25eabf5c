package http_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testpg"
)

// stallProxy is a TCP proxy in front of PostgreSQL that can stop answering
// the way a paused (docker pause, SIGSTOP) or cut-off database does:
// connections stay open and new ones are accepted, what the client sends is
// taken, nothing comes back, and a client's close does not reach the
// server until the proxy resumes (never, for a connection frozen by its
// trigger: a network partition).
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool   // every connection, new ones too
	trigger []byte // the next connection to send this freezes before forwarding it
	closed  bool
	conns   []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// via is dbURL with its host and port replaced by the proxy's.
func (p *stallProxy) via(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *stallProxy) set(f func()) {
	p.mu.Lock()
	f()
	p.cond.Broadcast()
	p.mu.Unlock()
}

// stall stops forwarding on every connection; resume forwards again.
func (p *stallProxy) stall()  { p.set(func() { p.stalled = true }) }
func (p *stallProxy) resume() { p.set(func() { p.stalled = false }) }

// freezeOn makes the next connection whose client sends text freeze for
// good, without forwarding it.
func (p *stallProxy) freezeOn(text string) { p.set(func() { p.trigger = []byte(text) }) }

func (p *stallProxy) close() {
	p.set(func() { p.closed = true })
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		frozen := new(bool) // this connection's, guarded by mu
		go p.pipe(c, s.(*net.TCPConn), frozen, true)
		go p.pipe(s, c.(*net.TCPConn), frozen, false)
	}
}

// pipe copies src to dst. Whatever it has read waits while the proxy is
// stalled or the connection frozen, a close included.
func (p *stallProxy) pipe(src net.Conn, dst *net.TCPConn, frozen *bool, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		if fromClient && p.trigger != nil && bytes.Contains(buf[:n], p.trigger) {
			*frozen, p.trigger = true, nil
		}
		for (p.stalled || *frozen) && !p.closed {
			p.cond.Wait()
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = dst.CloseWrite()
			return
		}
	}
}

// stallTimeout is the DATABASE_TIMEOUT of newStallEnv.
const stallTimeout = time.Second

// newStallEnv is a server with DATABASE_TIMEOUT=stallTimeout on a fresh
// database reached through a stallProxy. A request that gets no answer
// within 15 s fails the test.
func newStallEnv(t *testing.T) (*env, *stallProxy) {
	t.Helper()
	dbURL := testpg.New(t)
	proxy := newStallProxy(t, hostPort(t, dbURL))
	e := newEnvWith(t, map[string]string{"DATABASE_URL": proxy.via(t, dbURL), "DATABASE_TIMEOUT": stallTimeout.String()})
	// Cleanups run last first: the proxy closes before the pool, which
	// waits for pgx's background close of each timed-out connection
	// (up to 15 s while the database does not answer).
	t.Cleanup(proxy.close)
	e.client = &http.Client{Timeout: 15 * time.Second}
	return e, proxy
}

// timed is one request's response and how long it took.
type timed struct {
	r    req
	res  resp
	took time.Duration
}

// doAll sends the requests at once and returns their responses in order.
func (e *env) doAll(rs []req) []timed {
	out := make([]timed, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res, err := e.send(r)
			if err != nil {
				e.t.Errorf("no answer: %v", err)
			}
			out[i] = timed{r, res, time.Since(start)}
		}()
	}
	wg.Wait()
	return out
}

// When the database stops answering (paused: its connections open, its
// port accepting, no reply), every route that needs it answers 503
// service_unavailable with Retry-After within DATABASE_TIMEOUT (+ slack),
// never a 500 and never a hang; /readyz too. Once the database answers
// again, so does the API: nothing is left stuck, a key used during the
// stall is free, nothing half-written survives.
func TestDatabaseStopsAnswering(t *testing.T) {
	t.Parallel()
	e, proxy := newStallEnv(t)
	id := e.create(threeLines).str("id")
	e.want(e.do(req{method: "GET", route: "/readyz"}), 200)

	proxy.stall()
	key := map[string]string{"Idempotency-Key": "during-stall"}
	requests := []req{
		{method: "GET", route: "/v1/invoices"},
		{method: "GET", route: "/v1/invoices/{id}", id: id},
		{method: "GET", route: "/v1/invoices/{id}/events", id: id},
		{method: "POST", route: "/v1/invoices", body: threeLines},
		{method: "POST", route: "/v1/invoices", body: threeLines, header: key},
		{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"during the stall"}`},
		{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, header: map[string]string{"Idempotency-Key": "fin-during-stall"}},
		{method: "POST", route: "/v1/invoices/{id}/payments", id: id, body: `{"amount":1}`},
		{method: "DELETE", route: "/v1/invoices/{id}", id: id},
		{method: "GET", route: "/readyz"},
	}
	for _, x := range e.doAll(requests) {
		what := x.r.method + " " + x.r.route
		if x.res.status != 503 || x.res.str("code") != "service_unavailable" {
			t.Errorf("%s with the database paused: %d %s, want 503 service_unavailable", what, x.res.status, x.res.body)
		}
		if ra, err := strconv.Atoi(x.res.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("%s: Retry-After %q", what, x.res.header.Get("Retry-After"))
		}
		if ct := x.res.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", what, ct)
		}
		if x.took > stallTimeout+3*time.Second {
			t.Errorf("%s took %s with DATABASE_TIMEOUT=%s", what, x.took.Round(time.Millisecond), stallTimeout)
		}
		t.Logf("%s with the database paused: %d in %s", what, x.res.status, x.took.Round(time.Millisecond))
	}
	// A second wave meets a pool whose connections are all stuck or being
	// dialled: still bounded.
	for _, x := range e.doAll(requests[:3]) {
		if x.res.status != 503 || x.took > stallTimeout+3*time.Second {
			t.Errorf("%s %s, second wave: %d in %s", x.r.method, x.r.route, x.res.status, x.took)
		}
	}

	proxy.resume()
	deadline := time.Now().Add(20 * time.Second)
	for e.do(req{method: "GET", route: "/readyz"}).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 again within 20s of the database answering")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The key of a request that failed with 503 is free (a 503 is not
	// stored), and none of the transactions that timed out left a trace:
	// each needed an answer the paused database never gave.
	first := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}), 201)
	if r := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}), 201); r.str("id") != first.str("id") {
		t.Errorf("the retry of a key freed after the stall created a second invoice")
	}
	inv := e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id}), 200)
	if inv.str("status") != "draft" || inv.str("memo") != "Thanks" || inv.str("version") != "1" {
		t.Errorf("the invoice changed by requests that timed out: %s", inv.body)
	}
	if logs := e.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("a paused database is logged as an error:\n%s", logs)
	}
}

// A request cut off from the database in the middle of its transaction
// (the server never learns that the client left: a partition) frees its
// Idempotency-Key: the server ends the idle transaction after
// DATABASE_TIMEOUT (idle_in_transaction_session_timeout), releasing the
// key's lock, so a retry is served instead of being told "in use" until
// TCP keepalive notices, hours later. The retry creates the one invoice.
func TestIdempotencyKeyFreedAfterPartition(t *testing.T) {
	t.Parallel()
	e, proxy := newStallEnv(t)
	before := len(e.want(e.do(req{method: "GET", route: "/v1/invoices", query: "limit=100"}), 200).json["data"].([]any))

	// Freeze the connection when it reads the stored outcome: the key's
	// advisory lock is held by then.
	proxy.freezeOn("FROM idempotency_keys")
	key := map[string]string{"Idempotency-Key": "partitioned"}
	start := time.Now()
	r := e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key})
	if r.status != 503 || r.str("code") != "service_unavailable" || time.Since(start) > stallTimeout+3*time.Second {
		t.Fatalf("request cut off mid-transaction: %d in %s: %s", r.status, time.Since(start), r.body)
	}
	var last resp
	for deadline := time.Now().Add(stallTimeout + 10*time.Second); ; time.Sleep(100 * time.Millisecond) {
		if last = e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}); last.status == 201 {
			break
		}
		if last.status != 409 && last.status != 503 || time.Now().After(deadline) {
			t.Fatalf("retry of the cut-off request: %d %s (since the cut: %s)", last.status, last.body, time.Since(start))
		}
	}
	t.Logf("the key was free again %s after the cut", time.Since(start).Round(time.Millisecond))
	replay := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}), 201)
	if replay.header.Get("Idempotent-Replayed") != "true" || replay.str("id") != last.str("id") {
		t.Fatalf("second retry: %v %s, want the replay of %s", replay.header, replay.body, last.str("id"))
	}
	after := len(e.want(e.do(req{method: "GET", route: "/v1/invoices", query: "limit=100"}), 200).json["data"].([]any))
	if after != before+1 {
		t.Fatalf("%d invoices after the cut-off request and its retries, want %d", after, before+1)
	}
}

// hostPort is the host:port of a postgres:// URL.
func hostPort(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatal(errors.Join(err, errors.New("no host in "+dbURL)))
	}
	return u.Host
}
