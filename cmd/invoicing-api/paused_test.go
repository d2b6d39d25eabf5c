package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invdeploy/invdeploy/api/postgres"
	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

// pausableServer is a PostgreSQL cluster of the test's own (pausing the
// shared one would stop every other test) and the pid of its postmaster.
type pausableServer struct {
	url        string
	postmaster int
}

func startPausable(t *testing.T) *pausableServer {
	t.Helper()
	if os.Getenv("TEST_DATABASE_URL") != "" {
		testenv.Missing(t, "pausing PostgreSQL needs a cluster of the test's own; TEST_DATABASE_URL names a shared one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testpg.Start(ctx)
	if err != nil {
		testenv.Missing(t, "postgresql: "+err.Error())
	}
	p := &pausableServer{url: srv.AdminURL}
	t.Cleanup(func() {
		p.resume(t)
		if err := srv.Stop(); err != nil {
			t.Logf("stop the paused test's cluster: %v", err)
		}
	})
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if p.postmaster = parentOf(backend); p.postmaster <= 1 {
		t.Fatalf("no postmaster above backend %d", backend)
	}
	return p
}

// parentOf is the parent pid of pid, from /proc (0 when unknown).
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces, so split after ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// children lists the processes whose parent is pid: PostgreSQL's backends
// and helpers, each in a session of its own, so signalling the
// postmaster's process group would miss them.
func children(pid int) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, p := range paths {
		c, err := strconv.Atoi(filepath.Base(p))
		if err == nil && parentOf(c) == pid {
			out = append(out, c)
		}
	}
	return out
}

// pause stops every process of the cluster, as docker pause freezes a
// container: sockets stay open, the kernel still accepts connections,
// nothing answers. The postmaster first, so it forks no new backend.
func (p *pausableServer) pause(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(p.postmaster, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, c := range children(p.postmaster) {
		_ = syscall.Kill(c, syscall.SIGSTOP)
	}
}

func (p *pausableServer) resume(t *testing.T) {
	t.Helper()
	for _, c := range children(p.postmaster) {
		_ = syscall.Kill(c, syscall.SIGCONT)
	}
	_ = syscall.Kill(p.postmaster, syscall.SIGCONT)
}

// The program with its default DATABASE_TIMEOUT, its PostgreSQL paused
// (SIGSTOP of every server process, as docker pause): reads, writes and
// /readyz answer 503 with Retry-After and a problem body within the
// timeout and a little, never a 500, never a hang; after SIGCONT it serves
// again, and the Idempotency-Key of a request that got 503 is free.
func TestPausedDatabaseAnswers503(t *testing.T) {
	t.Parallel()
	db := startPausable(t)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"invoicing-api"}, getenv(map[string]string{"DATABASE_URL": db.url, "PORT": port, "SHUTDOWN_DELAY": "0s"}), &out, &out)
	}()
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, done)
	const invoice = `{"currency":"EUR","customer":{"name":"A"}}`
	if code, body := status(t, "POST", base+"/v1/invoices", invoice, nil); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	time.Sleep(1500 * time.Millisecond) // the pool's idle connections now get a ping before use

	db.pause(t)
	key := map[string]string{"Idempotency-Key": "while-paused"}
	probes := []struct {
		method, path, body string
		header             map[string]string
		within             time.Duration
	}{
		{"GET", "/v1/invoices", "", nil, postgres.DefaultTimeout},
		{"POST", "/v1/invoices", invoice, key, postgres.DefaultTimeout},
		{"GET", "/readyz", "", nil, 2 * time.Second},
	}
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(p.method, base+p.path, strings.NewReader(p.body))
			if p.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range p.header {
				req.Header.Set(k, v)
			}
			start := time.Now()
			res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			took := time.Since(start)
			if err != nil {
				t.Errorf("%s %s with the database paused: no answer in %s: %v", p.method, p.path, took, err)
				return
			}
			defer res.Body.Close()
			ct := res.Header.Get("Content-Type")
			if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || ct != "application/problem+json" {
				t.Errorf("%s %s with the database paused: %d, Retry-After %q, %s", p.method, p.path, res.StatusCode, res.Header.Get("Retry-After"), ct)
			}
			if took > p.within+3*time.Second {
				t.Errorf("%s %s took %s, want about %s", p.method, p.path, took, p.within)
			}
			t.Logf("%s %s with the database paused: %d in %s", p.method, p.path, res.StatusCode, took.Round(time.Millisecond))
		}()
	}
	wg.Wait()

	db.resume(t)
	waitHealthy(t, base, done)
	if code, body := status(t, "POST", base+"/v1/invoices", invoice, key); code != 201 {
		t.Fatalf("the key of a request answered 503, after the database is back: %d %s", code, body)
	}

	// SIGTERM while the database is paused again: the server exits in
	// time for a container's stop timeout (10 s), without waiting out
	// pgx's close of the connections that timed out (15 s).
	db.pause(t)
	if code, body := status(t, "GET", base+"/v1/invoices", "", nil); code != 503 {
		t.Fatalf("list, paused again: %d %s", code, body)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30 s of SIGTERM with the database paused")
	}
	if took := time.Since(start); took > poolCloseWait+3*time.Second {
		t.Errorf("exit took %s after SIGTERM with the database paused", took)
	} else {
		t.Logf("exit %s after SIGTERM with the database paused", took.Round(time.Millisecond))
	}
	logs := out.String()
	if strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, `"msg":"readiness: not ready"`) ||
		!strings.Contains(logs, "database connections still closing") {
		t.Fatalf("logs of the pause: want WARNs (no ERROR), the readiness change and the unclosed connections:\n%s", logs)
	}
}
