package httpguard

import (
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
			r.Body = &body{ReadCloser: r.Body}
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

// body remembers the first read error of a request body other than EOF.
type body struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// BodyReadError is the error reading r's body met (nil while none), for
// a handler that must tell a client's fault from an upstream's.
func BodyReadError(r *http.Request) error {
	b, ok := r.Body.(*body)
	if !ok {
		return nil
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
