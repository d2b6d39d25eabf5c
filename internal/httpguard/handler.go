package httpguard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// writeDeadlines gives each response write of h its own deadline d, and
// wraps the request body so its read error is remembered.
func writeDeadlines(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
		// A 100 Continue is written when the body is first read: it needs
		// a deadline of this request, not one left from the last.
		dw.extend()
		if r.Body != nil && r.Body != http.NoBody {
			// In the context too: a reverse proxy's outgoing request
			// carries the context, not the body wrapper.
			b := &body{ReadCloser: r.Body, failed: make(chan struct{})}
			r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
			r.Body = b
		}
		h.ServeHTTP(dw, r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// Flush extends the deadline before flushing (ReverseProxy flushes
// streamed responses through http.ResponseController).
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach Hijack and friends.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type bodyKey struct{}

// body remembers the first read error of a request body other than EOF
// (and a read after close).
type body struct {
	io.ReadCloser
	mu     sync.Mutex
	err    error
	failed chan struct{} // closed when err is set
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
			close(b.failed)
		}
		b.mu.Unlock()
	}
	return n, err
}

// BodyReadError is the error reading r's body met (nil while none), for
// a handler that must tell a client's fault from an upstream's. The server
// cancels a request's context when its connection fails, which a reader of
// the body may see just before the read error that caused it is
// returned: then the error is awaited a moment.
func BodyReadError(r *http.Request) error {
	b, ok := r.Context().Value(bodyKey{}).(*body)
	if !ok {
		return nil
	}
	if r.Context().Err() != nil {
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-b.failed:
		case <-t.C:
		}
		t.Stop()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// ClientTimedOut reports whether err is a read deadline of the client's
// connection (ReadTimeout: the client sent too slowly).
func ClientTimedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
