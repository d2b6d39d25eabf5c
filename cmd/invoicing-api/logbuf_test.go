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
