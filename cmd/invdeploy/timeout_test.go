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

// TestLockingCommandsHungEngineAreBounded: down and secret rotate take the
// deploy lock first; against an engine that never answers they fail within
// about --engine-timeout too (they hung before the lock's create was
// bounded).
func TestLockingCommandsHungEngineAreBounded(t *testing.T) {
	_, hung := fakeEngines(t)
	t.Setenv("DOCKER_HOST", hung)
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"down", "-p", "wdep"},
		{"secret", "rotate", "db_password", "-p", "wdep"},
	} {
		t.Run(args[0], func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- Main(append(args, "--engine-timeout", "1s"), strings.NewReader(""), &stdout, &stderr)
			}()
			select {
			case code := <-done:
				if code != exitFailure {
					t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailure, stderr.String())
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("%s hung against an engine that never answers, with --engine-timeout 1s", args[0])
			}
			if want := "did not answer create the deploy lock within 1s"; !strings.Contains(stderr.String(), want) {
				t.Fatalf("stderr does not say %q:\n%s", want, stderr.String())
			}
		})
	}
}
