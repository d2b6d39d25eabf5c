package httpguard

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A new connection beyond the cap may close one that has been idle
// between requests for idleEvictAfter (a client that reuses a keep-alive
// connection sends at once, and one that finds it closed retries an
// idempotent request), or one that has sent nothing since it was accepted
// for silentEvictAfter (a client sends its request as soon as it connects).
const (
	idleEvictAfter   = 250 * time.Millisecond
	silentEvictAfter = 2 * time.Second
)

// maxRefusing bounds the refusals in progress (each writes a 503 and
// waits up to refuseLinger for the client to take it); beyond it, a
// connection over the cap is closed without an answer.
const (
	maxRefusing  = 256
	refuseLinger = time.Second
)

// Listener caps the connections open at once at max. Wire ConnState into
// the http.Server so it knows which connections are idle.
type Listener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*conn]struct{}

	refusing         chan struct{}
	refused, evicted atomic.Int64
}

// conn is one admitted connection; its state is guarded by the listener's
// mutex.
type conn struct {
	net.Conn
	l      *Listener
	state  http.ConnState
	since  time.Time
	closed bool
}

// NewListener caps ln at max open connections.
func NewListener(ln net.Listener, max int) *Listener {
	return &Listener{Listener: ln, max: max, conns: make(map[*conn]struct{}, max), refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection within the cap. A connection beyond
// it takes the place of the longest-idle one, or is answered 503 (Retry-After)
// and closed without reaching the server.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		nc := &conn{Conn: c, l: l, state: http.StateNew, since: time.Now()}
		admitted, victim := l.admit(nc)
		if victim != nil {
			l.evicted.Add(1)
			_ = victim.Conn.Close()
		}
		if admitted {
			return nc, nil
		}
		l.refused.Add(1)
		l.refuse(c)
	}
}

// admit adds nc when there is room or an idle connection to close (victim,
// already removed).
func (l *Listener) admit(nc *conn) (ok bool, victim *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		idleCutoff, silentCutoff := nc.since.Add(-idleEvictAfter), nc.since.Add(-silentEvictAfter)
		for c := range l.conns {
			evictable := (c.state == http.StateIdle && !c.since.After(idleCutoff)) ||
				(c.state == http.StateNew && !c.since.After(silentCutoff))
			if evictable && (victim == nil || c.since.Before(victim.since)) {
				victim = c
			}
		}
		if victim == nil {
			return false, nil
		}
		victim.closed = true
		delete(l.conns, victim)
	}
	l.conns[nc] = struct{}{}
	return true, victim
}

// overCapacity is the answer to a connection beyond the cap.
var overCapacity = problemResponse(http.StatusServiceUnavailable, "over_capacity",
	"The server has as many connections open as it takes; try again shortly.", 1)

// refuse answers c 503 and closes it, in the background and at most
// maxRefusing at once. It reads the request's header first (within
// refuseLinger): a client that gets an answer before it has sent its
// request takes it for a broken connection (Go's client does), and closing
// with the request unread would reset the connection before the client
// reads the answer.
func (l *Listener) refuse(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseLinger))
		if !readHeader(c) {
			return
		}
		if _, err := c.Write(overCapacity); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// readHeader reads from c until the end of a request header (an empty
// line), at most 16 KiB; it reports whether the client sent anything.
func readHeader(c net.Conn) bool {
	buf := make([]byte, 16<<10)
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if bytes.Contains(buf[:n], []byte("\r\n\r\n")) || bytes.Contains(buf[:n], []byte("\n\n")) {
			return true
		}
		if err != nil {
			return n > 0
		}
	}
	return true
}

// ConnState is the http.Server hook that tells the listener which
// connections are idle (and so may be closed for a new one).
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	tc, ok := c.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !tc.closed {
		tc.state, tc.since = s, time.Now()
	}
}

// Close of a connection frees its place.
func (c *conn) Close() error {
	c.l.mu.Lock()
	if !c.closed {
		c.closed = true
		delete(c.l.conns, c)
	}
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// Stats are the listener's counts.
type Stats struct {
	Open    int   // connections open now
	Refused int64 // connections answered 503 (or closed) beyond the cap
	Evicted int64 // idle connections closed to make room
}

// Stats returns the listener's counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	n := len(l.conns)
	l.mu.Unlock()
	return Stats{Open: n, Refused: l.refused.Load(), Evicted: l.evicted.Load()}
}
