package main

import (
	"strings"
	"testing"
	"time"
)

func TestBufferedLog(t *testing.T) {
	var out syncBuffer
	b := newBufferedLog(&out, 20*time.Millisecond)
	_, _ = b.Write([]byte("one\n"))
	if out.String() != "" {
		t.Fatal("written through at once; want batched")
	}
	deadline := time.Now().Add(2 * time.Second)
	for out.String() != "one\n" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if out.String() != "one\n" {
		t.Fatalf("not flushed after the interval: %q", out.String())
	}
	_, _ = b.Write([]byte("two\n"))
	_ = b.Close()
	if !strings.HasSuffix(out.String(), "two\n") {
		t.Fatalf("Close did not flush: %q", out.String())
	}
}

// blockingWriter holds every Write until release is closed.
type blockingWriter struct {
	syncBuffer
	entered chan struct{}
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return w.syncBuffer.Write(p)
}

// TestBufferedLogWritesOutsideTheLock: while the output is stuck writing a
// batch, requests still log without waiting; nothing is lost or reordered.
func TestBufferedLogWritesOutsideTheLock(t *testing.T) {
	out := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := newBufferedLog(out, time.Millisecond)
	_, _ = b.Write([]byte("one\n"))
	select {
	case <-out.entered: // the flusher is now blocked inside Write
	case <-time.After(2 * time.Second):
		t.Fatal("the batch was never written")
	}
	logged := make(chan struct{})
	go func() {
		for i := 0; i < 1000; i++ {
			_, _ = b.Write([]byte("two\n"))
		}
		close(logged)
	}()
	select {
	case <-logged:
	case <-time.After(2 * time.Second):
		t.Fatal("Write waited for the stuck output")
	}
	close(out.release)
	_ = b.Close()
	if got := out.String(); got != "one\n"+strings.Repeat("two\n", 1000) {
		t.Fatalf("output %d bytes, want one then 1000 x two", len(got))
	}
}
