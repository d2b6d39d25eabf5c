package http_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that disconnects while its request waits on the database is
// recorded as 499 client_closed at INFO: not a 500, not an ERROR line.
func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(threeLines).str("id")
	// Another transaction holds the invoice's row lock, so the PATCH waits.
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM invoices WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	reqCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		r, _ := http.NewRequestWithContext(reqCtx, "PATCH", e.url+"/v1/invoices/"+id, strings.NewReader(`{"memo":"m"}`))
		r.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(r)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	waitUntil(t, func() bool {
		var n int
		err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n)
		return err == nil && n > 0
	}, "the PATCH to wait for the row lock")
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the canceled request got an answer")
	}
	want := `invoicing_http_requests_total{method="PATCH",route="/v1/invoices/{id}",status="499"} 1`
	waitUntil(t, func() bool {
		return strings.Contains(string(e.do(req{method: "GET", route: "/metrics"}).body), want)
	}, "the metrics to count a 499")
	waitUntil(t, func() bool { return strings.Contains(e.logs.String(), `"status":499`) }, "the request line of the 499")
	m := string(e.do(req{method: "GET", route: "/metrics"}).body)
	if strings.Contains(m, `status="500"`) {
		t.Errorf("a disconnect was counted as a 500:\n%s", m)
	}
	logs := e.logs.String()
	if strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, `"level":"INFO","msg":"client_closed"`) {
		t.Errorf("a disconnect is logged as an error, or not as client_closed:\n%s", logs)
	}
}

// A client that closes the connection halfway through sending its body is
// a 499 too, not a 400 for a malformed body.
func TestClientDisconnectMidBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "POST /v1/invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: 500\r\n\r\n{\"currency\":\"EU"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	want := `invoicing_http_requests_total{method="POST",route="/v1/invoices",status="499"} 1`
	waitUntil(t, func() bool {
		return strings.Contains(string(e.do(req{method: "GET", route: "/metrics"}).body), want)
	}, "the metrics to count a 499")
	if m := string(e.do(req{method: "GET", route: "/metrics"}).body); strings.Contains(m, `status="400"`) {
		t.Errorf("a cut body was counted as a 400:\n%s", m)
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
