package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invdeploy/invdeploy/api/postgres"
	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

func TestMain(m *testing.M) {
	os.Exit(testpg.Main(m, func(ctx context.Context, url string) error {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			return err
		}
		defer pool.Close()
		_, err = postgres.Migrate(ctx, pool)
		return err
	}))
}

// canary is a password planted to prove it never reaches logs or errors.
const canary = "Canary-Pw-5e1b0c"

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// syncBuffer collects output written concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// serverEnv is the environment the deployer's stack gives the container:
// a URL without password, the password in a secret file.
func serverEnv(t *testing.T, dbURL, port string) map[string]string {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "db_password")
	if err := os.WriteFile(pw, []byte(canary+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"DATABASE_URL": dbURL, "DATABASE_PASSWORD_FILE": pw, "PORT": port, "SHUTDOWN_DELAY": "500ms"}
}

func waitHealthy(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("server exited early: %v", err)
		default:
		}
		if r, err := http.Get(base + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server not ready within 30s")
}

func status(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// Generous: the SIGTERM test keeps one PATCH waiting on a row lock
	// through several steps, which take long on a loaded 2-core machine.
	r, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// The program end to end in process: serve on a real database, healthcheck
// subcommand, secrets kept out of the logs.
func TestServeInProcess(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	env := serverEnv(t, testpg.New(t), port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"invoicing-api"}, getenv(env), &out, &out) }()
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, done)
	if err := run(context.Background(), []string{"invoicing-api", "healthcheck"}, getenv(map[string]string{"PORT": port}), io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck against a running server: %v", err)
	}
	if code, body := status(t, "GET", base+"/readyz", "", nil); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	if code, body := status(t, "POST", base+"/v1/invoices", `{"currency":"EUR","customer":{"name":"A"}}`, nil); code != 201 {
		t.Fatalf("create %d %s", code, body)
	}
	_, metrics := status(t, "GET", base+"/metrics", "", nil)
	for _, m := range []string{"invoicing_db_pool_total_connections", "invoicing_db_pool_acquires_total", "invoicing_invoices_created_total 1", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after shutdown: %v", err)
	}
	if err := run(context.Background(), []string{"invoicing-api", "healthcheck"}, getenv(map[string]string{"PORT": port}), io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck with no server: want an error")
	}
	logs := out.String()
	if strings.Contains(logs, canary) {
		t.Fatalf("the password reached the log:\n%s", logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
	}
	for _, want := range []string{`"msg":"migrations applied"`, `"msg":"listening"`, `"route":"/v1/invoices"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	// The probes of waitHealthy and the scrape are counted, not logged
	// (LOG_LEVEL=debug would show them).
	for _, probe := range []string{`"route":"/readyz"`, `"route":"/metrics"`} {
		if strings.Contains(logs, probe) {
			t.Errorf("a probe is logged at INFO (%s):\n%s", probe, logs)
		}
	}
	if !strings.Contains(metrics, `invoicing_http_requests_total{method="GET",route="/readyz",status="200"}`) {
		t.Error("/metrics does not count the /readyz probes")
	}
}

func TestConfigErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	port := freePort(t) // nothing listens there: connecting fails
	for name, env := range map[string]map[string]string{
		"unreachable database": {"DATABASE_URL": "postgres://u:" + canary + "@127.0.0.1:" + port + "/d?sslmode=disable&connect_timeout=1"},
		"password var":         {"DATABASE_URL": "postgres://u@127.0.0.1:" + port + "/d?sslmode=disable", "DATABASE_PASSWORD": canary},
		"malformed URL":        {"DATABASE_URL": "postgres://u:" + canary + "@127.0.0.1:x/d"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		var out syncBuffer
		err := run(ctx, []string{"invoicing-api", "migrate"}, getenv(env), &out, &out)
		cancel()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), canary) || strings.Contains(out.String(), canary) {
			t.Errorf("%s: secret leaked:\nerr: %v\nout: %s", name, err, out.String())
		}
	}
	if err := run(context.Background(), []string{"invoicing-api", "serve"}, getenv(map[string]string{"PORT": "http"}), io.Discard, io.Discard); err == nil {
		t.Error("PORT=http accepted")
	}
	for k, v := range map[string]string{"LOG_LEVEL": "verbose", "DATABASE_TIMEOUT": "5"} {
		if err := run(context.Background(), []string{"invoicing-api", "serve"}, getenv(map[string]string{k: v}), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v, want an error naming it", k, v, err)
		}
	}
}

// SIGTERM while the server still waits for its database is a clean stop.
func TestSIGTERMWhileWaitingForTheDatabaseExitsCleanly(t *testing.T) {
	t.Parallel()
	dbPort := freePort(t) // nothing listens there
	port := freePort(t)
	env := map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:" + dbPort + "/d?sslmode=disable&connect_timeout=1", "PORT": port}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"invoicing-api", "serve"}, getenv(env), &out, &out) }()

	// While it waits: alive, not ready, and the API says so in a problem.
	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _ := status(t, "GET", base+"/healthz", "", nil); c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz not 200 while waiting for the database\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, body := status(t, "GET", base+"/readyz", "", nil); c != 503 || !strings.Contains(body, "service_unavailable") {
		t.Errorf("/readyz while starting: %d %s", c, body)
	}
	if c, body := status(t, "POST", base+"/v1/invoices", `{"currency":"EUR","customer":{"name":"A"}}`, nil); c != 503 || !strings.Contains(body, "starting") {
		t.Errorf("POST while starting: %d %s", c, body)
	}
	if err := healthcheck(context.Background(), getenv(env)); err == nil {
		t.Error("the container healthcheck passes before the database is ready")
	}

	// Signal only once it has seen the database refuse (and logged it).
	for !strings.Contains(out.String(), "database not reachable yet") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed database attempt logged within 10s\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve stopped while waiting for the database: %v, want a clean exit\n%s", err, out.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("serve took %s to stop after the signal", d)
	}
	if !strings.Contains(out.String(), "database not reachable yet") || !strings.Contains(out.String(), "stopped before the database was ready") {
		t.Errorf("logs:\n%s", out.String())
	}
}

func TestMigrateSubcommand(t *testing.T) {
	t.Parallel()
	url := testpg.New(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP TABLE idempotency_keys, invoice_number_counter, invoice_events, line_items, invoices, goose_db_version`); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if err := run(ctx, []string{"invoicing-api", "migrate"}, getenv(map[string]string{"DATABASE_URL": url}), &out, &out); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"count":1`) {
		t.Fatalf("migrate output: %s", out.String())
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM invoice_number_counter`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema not applied: %v %d", err, n)
	}
}

func TestProbePorts(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	free := freePort(t)
	var out bytes.Buffer
	err = run(context.Background(), []string{"invoicing-api", "probe-ports", free, held}, getenv(nil), &out, io.Discard)
	if err == nil || strings.TrimSpace(out.String()) != held {
		t.Fatalf("probe-ports %s %s: err %v, stdout %q", free, held, err, out.String())
	}
	// A port free a moment ago may be taken by a parallel test meanwhile:
	// a few fresh ports, each of which must then probe free.
	for try := 0; ; try++ {
		out.Reset()
		err := run(context.Background(), []string{"invoicing-api", "probe-ports", free}, getenv(nil), &out, io.Discard)
		if err == nil && out.Len() == 0 {
			break
		}
		if try == 2 {
			t.Fatalf("probe-ports on a free port: %v %q", err, out.String())
		}
		free = freePort(t)
	}
	if err := run(context.Background(), []string{"invoicing-api", "probe-ports"}, getenv(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("probe-ports without ports accepted")
	}
}

func TestCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"invoicing-api", "version"}, getenv(nil), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "invoicing-api dev") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"invoicing-api", "frobnicate"}, getenv(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("unknown command accepted")
	}
}

// The real binary under a real SIGTERM: /readyz turns 503 at once, a
// request in flight completes, and the process exits 0.
func TestGracefulShutdownOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	goBin := testenv.NeedCommand(t, "go")
	bin := filepath.Join(t.TempDir(), "invoicing-api")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbURL := testpg.New(t)
	port := freePort(t)
	env := serverEnv(t, dbURL, port)
	env["SHUTDOWN_DELAY"] = "1s"
	env["DATABASE_TIMEOUT"] = "90s" // the PATCH waits on a row lock across several steps
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, done)

	code, body := status(t, "POST", base+"/v1/invoices", `{"currency":"EUR","customer":{"name":"A"}}`, nil)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var inv struct{ ID string }
	_ = json.Unmarshal([]byte(body), &inv)

	// Hold the invoice's row lock so a PATCH is in flight across SIGTERM.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM invoices WHERE id = $1 FOR UPDATE`, inv.ID); err != nil {
		t.Fatal(err)
	}
	patched := make(chan string, 1)
	go func() {
		c, b := status(t, "PATCH", base+"/v1/invoices/"+inv.ID, `{"memo":"in flight"}`, nil)
		patched <- fmt.Sprint(c, " ", b)
	}()
	waitFor(t, func() bool {
		select {
		case r := <-patched:
			t.Fatalf("PATCH finished while its row was locked: %s", r)
		default:
		}
		var n int
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF i'`).Scan(&n)
		return n >= 1
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { c, _ := status(t, "GET", base+"/readyz", "", nil); return c == 503 })
	if c, _ := status(t, "GET", base+"/healthz", "", nil); c != 200 {
		t.Fatalf("healthz while draining: %d", c)
	}
	select {
	case r := <-patched:
		t.Fatalf("PATCH finished while its row was locked: %s", r)
	case <-time.After(1500 * time.Millisecond): // past SHUTDOWN_DELAY: Shutdown is now waiting for it
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-patched; !strings.HasPrefix(r, "200 ") || !strings.Contains(r, `"memo":"in flight"`) {
		t.Fatalf("in-flight request: %s", r)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("process did not exit after SIGTERM")
	}
	if strings.Contains(out.String(), canary) {
		t.Fatal("password in the output")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 30s")
}
