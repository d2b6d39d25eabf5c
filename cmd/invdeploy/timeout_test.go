package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestStatusHungEngineIsBounded: against an engine that accepts the request
// and never answers, status fails within about --engine-timeout (here 1s),
// naming the host, instead of hanging.
func TestStatusHungEngineIsBounded(t *testing.T) {
	_, hung := fakeEngines(t)
	t.Setenv("DOCKER_HOST", hung)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main([]string{"status", "-p", "wdep", "--engine-timeout", "1s"}, strings.NewReader(""), &stdout, &stderr)
	elapsed := time.Since(start)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailure, stderr.String())
	}
	if elapsed > 10*time.Second {
		t.Fatalf("status took %s against a hung engine with --engine-timeout 1s", elapsed)
	}
	if want := "engine " + hung + " did not answer"; !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr does not say %q:\n%s", want, stderr.String())
	}
}
