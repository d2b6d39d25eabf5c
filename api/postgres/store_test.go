package postgres_test

import (
	"context"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invdeploy/invdeploy/api"
	"github.com/invdeploy/invdeploy/api/postgres"
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

func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testpg.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return postgres.NewStore(pool, postgres.DefaultTimeout)
}

func draft(t *testing.T, s *postgres.Store) *api.Invoice {
	t.Helper()
	in, err := api.ParseInvoiceInput([]byte(`{"currency":"EUR","customer":{"name":"Ada","email":"ada@example.com"},
		"line_items":[{"description":"a","quantity":"1.5","unit_amount":999,"tax_rate":"20"},
		{"description":"b","quantity":2,"unit_amount":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CreateInvoice(context.Background(), in, api.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out.Invoice
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	inv := draft(t, s)
	got, err := s.FindInvoice(context.Background(), inv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != inv.Total || got.Total != 1499+300+2 || len(got.LineItems) != 2 ||
		got.LineItems[0].Quantity.String() != "1.5" || got.LineItems[0].TaxRate.String() != "20" ||
		!got.CreatedAt.Equal(inv.CreatedAt) || got.Version != 1 {
		t.Fatalf("round trip: got %+v, want %+v", got, inv)
	}
	if _, err := s.FindInvoice(context.Background(), "inv_nope"); api.ErrorCode(err) != api.ENOTFOUND {
		t.Fatalf("missing invoice: got %v", err)
	}
}

// idem is an idempotency key whose stored response is the invoice id.
func idem(key string) *api.Idempotency {
	return &api.Idempotency{Key: key, Fingerprint: []byte("fp"), Respond: func(inv *api.Invoice, err error) api.Replay {
		if err != nil {
			return api.Replay{Status: 1, Body: []byte(err.Error())}
		}
		return api.Replay{Status: 2, Body: []byte(inv.ID)}
	}}
}

// Outcomes older than 24 hours are purged; newer ones stay and replay.
func TestPurgeIdempotencyKeys(t *testing.T) {
	t.Parallel()
	url := testpg.New(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := postgres.NewStore(pool, postgres.DefaultTimeout)
	ctx := context.Background()
	in, err := api.ParseInvoiceInput([]byte(`{"currency":"EUR","customer":{"name":"Ada"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"old", "fresh"} {
		if _, err := s.CreateInvoice(ctx, in, api.WriteOptions{Idempotency: idem(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeIdempotencyKeys(ctx)
	if err != nil || n != 1 {
		t.Fatalf("purge: %d, %v; want 1 deleted", n, err)
	}
	var keys []string
	rows, _ := pool.Query(ctx, `SELECT key FROM idempotency_keys`)
	for rows.Next() {
		var k string
		rows.Scan(&k)
		keys = append(keys, k)
	}
	if rows.Err() != nil || len(keys) != 1 || keys[0] != "fresh" {
		t.Fatalf("keys left: %v (%v), want [fresh]", keys, rows.Err())
	}
	out, err := s.CreateInvoice(ctx, in, api.WriteOptions{Idempotency: idem("fresh")})
	if err != nil || out.Replay == nil {
		t.Fatalf("the fresh key no longer replays: %+v, %v", out, err)
	}
}

// Several replicas starting at once each run Migrate; the advisory lock
// makes exactly one apply the schema and the others see it applied.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testpg.New(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DROP TABLE idempotency_keys, invoice_number_counter, invoice_events, line_items, invoices, goose_db_version`); err != nil {
		t.Fatal(err)
	}
	if err := postgres.NewStore(pool, postgres.DefaultTimeout).Ready(ctx); err == nil {
		t.Fatal("Ready on an empty database: want an error")
	}
	var wg sync.WaitGroup
	applied := make([]int, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := pgxpool.New(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			applied[i], errs[i] = postgres.Migrate(ctx, p)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 4 {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	if total != 1 {
		t.Fatalf("migrations applied %d times in total, want once", total)
	}
	if err := postgres.NewStore(pool, postgres.DefaultTimeout).Ready(ctx); err != nil {
		t.Fatalf("Ready after migrate: %v", err)
	}
}

// Numbers come from a counter row locked by the finalizing transaction: 40
// invoices finalized by 120 concurrent requests, some of which roll back,
// leave no gap.
func TestFinalizeGapless(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = draft(t, s).ID
	}
	// Each invoice gets three requests: one without If-Match (the loser of
	// a race gets invalid_state), one with its current ETag "v1" (412 once
	// another one finalized it first) and one with a stale ETag (always
	// 412). A refused finalization rolls back and may not consume a number.
	ifMatch := [][]string{nil, {api.ETag(1)}, {api.ETag(7)}}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused = map[string]int{}
	)
	numbers := make(chan string, 3*n)
	for i := range 3 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind := i / n
			out, err := s.FinalizeInvoice(ctx, ids[i%n], api.WriteOptions{IfMatch: ifMatch[kind]})
			if err != nil {
				code := api.ErrorCode(err)
				if (kind == 0 && code != api.EINVALIDSTATE) || (kind > 0 && code != api.EPRECONDITION) {
					t.Errorf("finalize (If-Match %v): %v", ifMatch[kind], err)
				}
				mu.Lock()
				refused[code]++
				mu.Unlock()
				return
			}
			if kind == 2 {
				t.Errorf("a finalization with a stale If-Match succeeded")
			}
			numbers <- *out.Invoice.Number
		}()
	}
	wg.Wait()
	close(numbers)
	var got []string
	for n := range numbers {
		got = append(got, n)
	}
	sort.Strings(got)
	if len(got) != n || refused[api.EPRECONDITION] < n || refused[api.EPRECONDITION]+refused[api.EINVALIDSTATE] != 2*n {
		t.Fatalf("got %d finalizations and refusals %v, want %d finalizations, at least %d precondition_failed, %d refusals in all", len(got), refused, n, n, 2*n)
	}
	for i, g := range got {
		if want := api.FormatNumber(int64(i + 1)); g != want {
			t.Fatalf("numbers not contiguous: position %d is %s, want %s (all: %v)", i, g, want, got)
		}
	}
	var last int64
	if err := s.Pool().QueryRow(ctx, `SELECT last_number FROM invoice_number_counter`).Scan(&last); err != nil || last != n {
		t.Fatalf("counter at %d (%v), want %d: a refused finalization consumed a number", last, err, n)
	}
}
