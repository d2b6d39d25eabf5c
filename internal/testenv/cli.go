package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// RepoRoot returns the root of the repository (the directory of go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("repo root: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildBinary builds the main package pkg (e.g. "./cmd/invdeploy") of this
// module, static and -trimpath like `make build`, into a directory removed
// when the test ends, and returns the path of the executable. The Go build
// cache makes every build after the first one cheap.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Result is the outcome of one run of a program.
type Result struct {
	Stdout, Stderr string
	// Code is the exit code (0 on success).
	Code    int
	Elapsed time.Duration
}

// Combined returns stdout and stderr, for failure messages.
func (r Result) Combined() string { return r.Stdout + r.Stderr }

// RunOptions tune Run. The zero value runs in the repository root with the
// test process's environment, no stdin and a 10 minute limit.
type RunOptions struct {
	// Dir is the working directory; empty means the repository root.
	Dir string
	// Env replaces the environment when not nil; ExtraEnv is added to it
	// (or to the test's environment).
	Env, ExtraEnv []string
	// Stdin is fed to the program.
	Stdin io.Reader
	// Timeout ends the program (killed) after this long; 0 means 10 minutes.
	Timeout time.Duration
}

// Run runs a program (typically a binary from BuildBinary) to completion and
// returns its output and exit code. It fails the test only when the program
// cannot be started or is killed by the timeout: a non-zero exit is a
// result for the test to check.
func Run(t testing.TB, opts RunOptions, bin string, args ...string) Result {
	t.Helper()
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = opts.Dir
	if cmd.Dir == "" {
		cmd.Dir = RepoRoot(t)
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string{}, env...), opts.ExtraEnv...)
	cmd.Stdin = opts.Stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: killed after %s\n%s", filepath.Base(bin), strings.Join(args, " "), timeout, r.Combined())
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return r
}

// WaitHTTP polls url with GET until it answers 200 or timeout passes, then
// fails the test with the last status or error seen.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := PollHTTP(context.Background(), url, timeout); err != nil {
		t.Fatal(err)
	}
}

// PollHTTP is WaitHTTP as a function that returns an error.
func PollHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: not 200 OK within %s (last: %s)", url, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
