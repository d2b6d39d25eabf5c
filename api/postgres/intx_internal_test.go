package postgres

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invdeploy/invdeploy/api"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

// A refusal decided after the change wrote something (here: a number taken
// from the counter) is stored for its idempotency key, and nothing the
// change wrote survives: the savepoint is rolled back, the key committed.
func TestRefusalAfterWritesIsStoredAndRolledBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testpg.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := NewStore(pool, DefaultTimeout)
	idem := &api.Idempotency{Key: "k", Fingerprint: []byte("fp"),
		Respond: func(_ *api.Invoice, err error) api.Replay {
			return api.Replay{Status: 409, Body: []byte(`{"code":"` + api.ErrorCode(err) + `"}`)}
		}}
	_, err = s.inTx(ctx, idem, func(tx pgx.Tx) (*api.Invoice, error) {
		if _, err := tx.Exec(ctx, `UPDATE invoice_number_counter SET last_number = last_number + 1`); err != nil {
			return nil, err
		}
		return nil, api.Errorf(api.EINVALIDSTATE, "refused after a write")
	})
	if api.ErrorCode(err) != api.EINVALIDSTATE {
		t.Fatalf("first attempt: %v, want invalid_state", err)
	}
	var last int64
	if err := pool.QueryRow(ctx, `SELECT last_number FROM invoice_number_counter`).Scan(&last); err != nil || last != 0 {
		t.Fatalf("counter %d (%v) after a refused change, want 0: the savepoint did not roll back", last, err)
	}
	out, err := s.inTx(ctx, idem, func(tx pgx.Tx) (*api.Invoice, error) {
		t.Error("the retry ran the change again instead of replaying the refusal")
		return nil, nil
	})
	if err != nil || out.Replay == nil || out.Replay.Status != 409 || string(out.Replay.Body) != `{"code":"invalid_state"}` {
		t.Fatalf("retry: %+v, %v; want the stored 409 replayed", out.Replay, err)
	}
	// An error that is not an outcome (an internal one) is not stored.
	idem2 := &api.Idempotency{Key: "k2", Fingerprint: []byte("fp"), Respond: idem.Respond}
	if _, err := s.inTx(ctx, idem2, func(tx pgx.Tx) (*api.Invoice, error) { return nil, context.DeadlineExceeded }); err == nil {
		t.Fatal("no error")
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE key = 'k2'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("an internal error was stored under its key (%d rows, %v)", n, err)
	}
}
