package main

import (
	"io"
	"sync"
	"time"
)

// bufferedLog batches log lines and writes them at most every interval (or
// when maxPendingLog bytes are pending), instead of one write system call per
// request: on a busy server that call is a noticeable share of each
// request's cost. The write happens outside the lock that Write takes: a
// request appends its line to a fresh buffer while the previous one is being
// written, instead of waiting for the write (under load, a stall of the
// writer stalled every request and showed in p99). Close flushes what is
// pending; a crash loses at most one interval of logs.
type bufferedLog struct {
	mu      sync.Mutex // guards pending
	pending []byte
	// writeMu serializes flushes, so batches reach w in order; it guards
	// spare, the buffer the next swap hands to writers.
	writeMu sync.Mutex
	spare   []byte
	w       io.Writer
	stop    chan struct{}
	done    chan struct{}
}

// maxPendingLog bounds the bytes held between flushes; a writer that finds
// more pending flushes them itself, which throttles logging to what the
// output takes.
const maxPendingLog = 256 << 10

func newBufferedLog(w io.Writer, interval time.Duration) *bufferedLog {
	b := &bufferedLog{w: w, pending: make([]byte, 0, 64<<10), spare: make([]byte, 0, 64<<10),
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.flush()
			case <-b.stop:
				b.flush()
				return
			}
		}
	}()
	return b
}

// Write implements io.Writer; slog writes each record with one call.
func (b *bufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.pending = append(b.pending, p...)
	full := len(b.pending) >= maxPendingLog
	b.mu.Unlock()
	if full {
		b.flush()
	}
	return len(p), nil
}

// flush swaps the pending buffer for the spare one and writes it.
func (b *bufferedLog) flush() {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.Lock()
	out := b.pending
	b.pending = b.spare[:0]
	b.mu.Unlock()
	if len(out) > 0 {
		_, _ = b.w.Write(out)
	}
	b.spare = out[:0]
}

// Close flushes pending lines and stops the flusher.
func (b *bufferedLog) Close() error {
	close(b.stop)
	<-b.done
	return nil
}
