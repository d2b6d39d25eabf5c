package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowStack is a service that turns healthy about 3 s after it starts, so an
// up holds the deploy lock long enough for a second one to meet it.
const slowStack = `services:
  slow:
    image: debian:bookworm
    command: ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep infinity # %s"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 60
`

// afterSlow is a service created once slow is healthy: an up of slowStack
// plus afterSlow still has a change to make after its wait.
const afterSlow = `  after:
    image: debian:bookworm
    command: ["sleep", "infinity"]
    stop_grace_period: 1s
    depends_on:
      slow: {condition: service_healthy}
`

// exitCode is the exit status of a finished command's Wait error.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// startUp starts `invdeploy up` in the background and returns once the
// project's lock container exists on the engine.
func (e *localEnv) startUp(dir, proj string) (*exec.Cmd, *bytes.Buffer) {
	e.t.Helper()
	cmd := exec.Command(e.bin, "up", "-p", proj, "--wait-timeout", "2m")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+e.xdg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := e.docker.ContainerInspect(context.Background(), "invdeploy-lock-"+proj); err == nil {
			return cmd, &out
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			e.t.Fatalf("the first up never took the lock:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeployLock: of two concurrent ups exactly one proceeds and the other
// exits 5 naming the holder; a lock left by a SIGKILLed invdeploy is shown by
// `lock` and taken over by the next up; nothing of the lock stays behind.
func TestDeployLock(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	dir := t.TempDir()
	proj := project(t, "lock")
	e.cleanup(proj)
	write := func(tag string) {
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(strings.Replace(slowStack, "%s", tag, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write("one")
	first, out := e.startUp(dir, proj)
	second := e.run(dir, "up", "-p", proj)
	if second.code != 5 {
		t.Fatalf("second up: exit %d, want 5\n%s", second.code, second.stderr)
	}
	for _, want := range []string{"another deploy holds the lock", "pid " + strconv.Itoa(first.Process.Pid), "(up)"} {
		if !strings.Contains(second.stderr, want) {
			t.Errorf("second up's message lacks %q:\n%s", want, second.stderr)
		}
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first up: %v\n%s", err, out)
	}
	if r := e.mustRun(dir, "lock", "-p", proj); !strings.Contains(r.stdout, "free") {
		t.Fatalf("lock after a finished up: %s", r.stdout)
	}

	// SIGKILL a deploy while it holds the lock (a changed command makes up
	// recreate and wait ~3 s for health).
	write("two")
	killed, _ := e.startUp(dir, proj)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Wait()
	r := e.mustRun(dir, "lock", "-p", proj)
	if !strings.Contains(r.stdout, "pid "+strconv.Itoa(killed.Process.Pid)) {
		t.Fatalf("lock does not show the killed holder:\n%s", r.stdout)
	}
	r = e.mustRun(dir, "up", "-p", proj)
	if !strings.Contains(r.stderr, "taking over the deploy lock") || !strings.Contains(r.stderr, "no longer runs") {
		t.Fatalf("the next up did not say it took over the dead holder's lock:\n%s", r.stderr)
	}
	if r := e.mustRun(dir, "lock", "-p", proj, "-o", "json"); !strings.Contains(r.stdout, `"holder": null`) {
		t.Fatalf("lock after recovery: %s", r.stdout)
	}

	// The lock is a lease with fencing. A live holder: lock says alive,
	// --break refuses it (exit 5), --break --force breaks it, and the up
	// that held it stops before its next change (creating the service that
	// waits for slow's health) with exit 5, instead of going on.
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(strings.Replace(slowStack, "%s", "three", 1)+afterSlow), 0o644); err != nil {
		t.Fatal(err)
	}
	third, thirdOut := e.startUp(dir, proj)
	if r := e.mustRun(dir, "lock", "-p", proj); !strings.Contains(r.stdout, "pid "+strconv.Itoa(third.Process.Pid)) || !strings.Contains(r.stdout, ", alive") {
		t.Fatalf("lock does not say the running up is alive:\n%s", r.stdout)
	}
	if r := e.run(dir, "lock", "-p", proj, "--break"); r.code != 5 || !strings.Contains(r.stderr, "which is alive") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("lock --break of a live holder: exit %d, want 5 and a refusal\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := e.mustRun(dir, "lock", "-p", proj, "--break", "--force"); !strings.Contains(r.stdout, "broke the deploy lock") || !strings.Contains(r.stdout, "alive: that deploy stops before its next change") {
		t.Fatalf("lock --break --force: %s", r.stdout)
	}
	err := third.Wait()
	if code := exitCode(err); code != 5 {
		t.Fatalf("up whose lock was broken: exit %d, want 5\n%s", code, thirdOut)
	}
	for _, want := range []string{"was broken while this deploy held it", "stopped before ", "nobody holds it now"} {
		if !strings.Contains(thirdOut.String(), want) {
			t.Errorf("the displaced up does not say %q:\n%s", want, thirdOut)
		}
	}
	if _, err := e.docker.ContainerInspect(context.Background(), proj+"-after-1"); err == nil {
		t.Fatalf("the displaced up created %s-after-1 after its lock was broken", proj)
	}
	// The next up finishes the job.
	e.mustRun(dir, "up", "-p", proj)
	if _, err := e.docker.ContainerInspect(context.Background(), proj+"-after-1"); err != nil {
		t.Fatalf("the next up did not create after: %v", err)
	}
	e.mustRun(dir, "down", "-p", proj)
	if _, err := e.docker.ContainerInspect(context.Background(), "invdeploy-lock-"+proj); err == nil {
		t.Fatal("the lock container stayed after down")
	}
}
