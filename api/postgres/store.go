package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invdeploy/invdeploy/api"
)

// Store implements api.InvoiceService on a pgx pool.
type Store struct {
	pool *pgxpool.Pool
	// timeout bounds each call (see bound).
	timeout time.Duration
	// now is the clock; tests may replace it.
	now func() time.Time
}

var _ api.InvoiceService = (*Store)(nil)

// NewStore returns a Store on pool; the schema must be migrated (Migrate).
// Each call takes at most timeout on the database (DefaultTimeout when
// timeout is not positive), then fails with service_unavailable.
func NewStore(pool *pgxpool.Pool, timeout time.Duration) *Store {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Store{pool: pool, timeout: timeout, now: api.Now}
}

// bound gives one call its database time: waiting for a connection from
// the pool, every statement and the commit. When it runs out, pgx stops
// waiting and closes the connection (the server then ends the session and
// rolls back what it had not committed), and classify makes the failure
// service_unavailable: a 503 with Retry-After, not a request that hangs
// as long as the database does not answer.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Pool returns the underlying pool (for metrics).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ready reports nil when the database answers and holds every embedded migration.
func (s *Store) Ready(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var v *int64
	err := s.pool.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return fmt.Errorf("check schema version: %w", err)
	}
	if v == nil || *v < LatestVersion() {
		return errors.New("database schema is not migrated yet")
	}
	return nil
}

const invoiceColumns = `i.pk, i.id, i.number, i.status, i.currency, i.customer_name, i.customer_email,
	i.subtotal, i.tax, i.total, i.amount_paid, to_char(i.due_date, 'YYYY-MM-DD'), i.memo, i.metadata, i.version,
	i.created_at, i.updated_at, i.finalized_at, i.paid_at, i.voided_at,
	li.d, li.q, li.u, li.r, li.a, li.t`

// invoiceFrom is the FROM clause of invoiceColumns: the line items come as
// one array per column (the inverse of lineArrays), which pgx decodes
// straight into slices; json_agg made PostgreSQL build JSON and the API
// parse it back, a tenth of a GET's CPU. No lines gives NULL arrays.
const invoiceFrom = ` FROM invoices i CROSS JOIN LATERAL (
	SELECT array_agg(l.description ORDER BY l.position) d, array_agg(l.quantity::text ORDER BY l.position) q,
		array_agg(l.unit_amount ORDER BY l.position) u, array_agg(l.tax_rate::text ORDER BY l.position) r,
		array_agg(l.amount ORDER BY l.position) a, array_agg(l.tax_amount ORDER BY l.position) t
	FROM line_items l WHERE l.invoice_pk = i.pk) li`

// scanInvoice reads one row of invoiceColumns.
func scanInvoice(row pgx.Row) (*api.Invoice, int64, error) {
	var (
		inv         api.Invoice
		pk          int64
		desc, q, r  []string
		unit, a, tx []int64
		metadata    []byte
	)
	err := row.Scan(planScans{&pk, &inv.ID, &inv.Number, &inv.Status, &inv.Currency, &inv.Customer.Name,
		&inv.Customer.Email, &inv.Subtotal, &inv.Tax, &inv.Total, &inv.AmountPaid, &inv.DueDate,
		&inv.Memo, &metadata, &inv.Version, &inv.CreatedAt, &inv.UpdatedAt, &inv.FinalizedAt,
		&inv.PaidAt, &inv.VoidedAt, &desc, &q, &unit, &r, &a, &tx})
	if err != nil {
		return nil, 0, err
	}
	inv.AmountDue = inv.Total - inv.AmountPaid
	inv.CreatedAt, inv.UpdatedAt = inv.CreatedAt.UTC(), inv.UpdatedAt.UTC()
	for _, t := range []**time.Time{&inv.FinalizedAt, &inv.PaidAt, &inv.VoidedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	if inv.Metadata, err = decodeMetadata(metadata); err != nil {
		return nil, 0, fmt.Errorf("decode metadata of %s: %w", inv.ID, err)
	}
	if inv.LineItems, err = decodeLines(desc, q, unit, r, a, tx); err != nil {
		return nil, 0, fmt.Errorf("decode line items of %s: %w", inv.ID, err)
	}
	return &inv, pk, nil
}

// decodeMetadata decodes the metadata column; most invoices have none, and
// "{}" skips encoding/json.
func decodeMetadata(b []byte) (map[string]string, error) {
	m := map[string]string{}
	if len(b) == 0 || string(b) == "{}" {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeLines rebuilds line items from the column arrays of invoiceFrom.
func decodeLines(desc, qty []string, unit []int64, rate []string, amount, tax []int64) ([]api.LineItem, error) {
	n := len(desc)
	if len(qty) != n || len(unit) != n || len(rate) != n || len(amount) != n || len(tax) != n {
		return nil, fmt.Errorf("line item columns have different lengths")
	}
	lines := make([]api.LineItem, n)
	for i := range lines {
		q, err := api.ParseDecimal(qty[i])
		if err != nil {
			return nil, fmt.Errorf("quantity %q: %w", qty[i], err)
		}
		r, err := api.ParseDecimal(rate[i])
		if err != nil {
			return nil, fmt.Errorf("tax rate %q: %w", rate[i], err)
		}
		lines[i] = api.LineItem{Description: desc[i], Quantity: q, UnitAmount: unit[i], TaxRate: r,
			Amount: amount[i], TaxAmount: tax[i]}
	}
	return lines, nil
}

// lineArrays flattens line items into the columns of an unnest() insert.
func lineArrays(lines []api.LineItem) (desc, qty []string, unit []int64, rate []string, amount, tax []int64) {
	for _, l := range lines {
		desc = append(desc, l.Description)
		qty = append(qty, l.Quantity.String())
		unit = append(unit, l.UnitAmount)
		rate = append(rate, l.TaxRate.String())
		amount = append(amount, l.Amount)
		tax = append(tax, l.TaxAmount)
	}
	return
}

// createSQL inserts an invoice, its lines and its created event in one
// statement: one round trip, atomic without an explicit transaction.
const createSQL = `WITH inv AS (
	INSERT INTO invoices (id, status, currency, customer_name, customer_email, subtotal, tax, total,
		amount_paid, due_date, memo, metadata, version, created_at, updated_at)
	VALUES ($1, 'draft', $2, $3, $4, $5, $6, $7, 0, $8::date, $9, $10, 1, $11, $11)
	RETURNING pk
), li AS (
	INSERT INTO line_items (invoice_pk, position, description, quantity, unit_amount, tax_rate, amount, tax_amount)
	SELECT inv.pk, l.ord, l.d, l.q::numeric, l.u, l.r::numeric, l.a, l.t
	FROM inv, unnest($12::text[], $13::text[], $14::bigint[], $15::text[], $16::bigint[], $17::bigint[])
		WITH ORDINALITY AS l(d, q, u, r, a, t, ord)
)
INSERT INTO invoice_events (id, invoice_pk, type, version, created_at)
SELECT $18, inv.pk, 'invoice.created', 1, $11 FROM inv`

// CreateInvoice stores a new draft.
func (s *Store) CreateInvoice(ctx context.Context, in *api.InvoiceInput, opts api.WriteOptions) (api.Outcome, error) {
	inv, err := api.NewInvoice(in, s.now())
	if err != nil {
		return api.Outcome{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	d, q, u, r, a, t := lineArrays(inv.LineItems)
	args := []any{inv.ID, inv.Currency, inv.Customer.Name, inv.Customer.Email, inv.Subtotal, inv.Tax,
		inv.Total, inv.DueDate, inv.Memo, inv.Metadata, inv.CreatedAt, d, q, u, r, a, t, api.NewID("evt_")}
	if opts.Idempotency == nil {
		if _, err := s.pool.Exec(ctx, createSQL, args...); err != nil {
			return api.Outcome{}, dbError("insert invoice", err)
		}
		return api.Outcome{Invoice: inv}, nil
	}
	return s.inTx(ctx, opts.Idempotency, func(tx pgx.Tx) (*api.Invoice, error) {
		if _, err := tx.Exec(ctx, createSQL, args...); err != nil {
			return nil, fmt.Errorf("insert invoice: %w", err)
		}
		return inv, nil
	})
}

// FindInvoice returns the invoice with id, or not_found.
func (s *Store) FindInvoice(ctx context.Context, id string) (*api.Invoice, error) {
	if !api.ValidID(id) {
		return nil, notFound(id)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	inv, _, err := scanInvoice(s.pool.QueryRow(ctx, `SELECT `+invoiceColumns+invoiceFrom+` WHERE i.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, dbError("find invoice", err)
	}
	return inv, nil
}

func notFound(id string) error {
	if !api.ValidID(id) {
		return api.Errorf(api.ENOTFOUND, "No such invoice: ids look like inv_ followed by 24 characters.")
	}
	return api.Errorf(api.ENOTFOUND, "No invoice with id %s.", id)
}

// ListInvoices returns a page of invoices, newest first.
func (s *Store) ListInvoices(ctx context.Context, f api.ListFilter) (*api.InvoicePage, error) {
	var (
		where []string
		args  []any
	)
	if f.StartingAfter != "" {
		pos, ok := api.DecodeCursor(f.StartingAfter)
		if !ok {
			return nil, api.Errorf(api.EVALIDATION, "starting_after is not a cursor")
		}
		args = append(args, pos)
		where = append(where, fmt.Sprintf("i.pk < $%d", len(args)))
	}
	if f.Status != "" {
		args = append(args, f.Status)
		where = append(where, fmt.Sprintf("i.status = $%d", len(args)))
	}
	if f.CustomerEmail != "" {
		args = append(args, f.CustomerEmail)
		where = append(where, fmt.Sprintf("lower(i.customer_email) = lower($%d)", len(args)))
	}
	q := `SELECT ` + invoiceColumns + invoiceFrom
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit+1)
	q += fmt.Sprintf(` ORDER BY i.pk DESC LIMIT $%d`, len(args))
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, dbError("list invoices", err)
	}
	defer rows.Close()
	page := &api.InvoicePage{Data: []*api.Invoice{}}
	var lastPK int64
	for rows.Next() {
		inv, pk, err := scanInvoice(rows)
		if err != nil {
			return nil, fmt.Errorf("list invoices: %w", err)
		}
		if len(page.Data) == f.Limit {
			page.HasMore = true
			break
		}
		page.Data = append(page.Data, inv)
		lastPK = pk
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("list invoices", err)
	}
	if page.HasMore {
		c := api.EncodeCursor(lastPK)
		page.NextCursor = &c
	}
	return page, nil
}

// ListEvents returns the events of an invoice, oldest first.
func (s *Store) ListEvents(ctx context.Context, id string) ([]api.Event, error) {
	if !api.ValidID(id) {
		return nil, notFound(id)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT e.id, e.type, e.version, e.created_at
		FROM invoices i LEFT JOIN invoice_events e ON e.invoice_pk = i.pk
		WHERE i.id = $1 ORDER BY e.seq`, id)
	if err != nil {
		return nil, dbError("list events", err)
	}
	defer rows.Close()
	events := []api.Event{}
	found := false
	for rows.Next() {
		found = true
		var (
			eid, typ *string
			version  *int64
			at       *time.Time
		)
		if err := rows.Scan(&eid, &typ, &version, &at); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if eid != nil {
			events = append(events, api.Event{ID: *eid, Type: *typ, Version: *version, CreatedAt: at.UTC()})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("list events", err)
	}
	if !found {
		return nil, notFound(id)
	}
	return events, nil
}

// inTx runs fn in a transaction. With an idempotency key it first takes the
// key's transaction-scoped advisory lock (not available: another request
// with the key is running -> idempotency_key_in_use), replays a stored
// outcome of the same request (a different request -> idempotency_key_reused),
// and stores the new outcome in the same transaction as the change, so a
// change and its stored response commit together or not at all.
//
// ctx must come from bound (the callers' fn use it too). The rollback of a
// failed transaction gets a budget of its own: after a timeout pgx has
// closed the connection and it returns at once; after a refusal it is one
// round trip, which must not hang either if the database stops answering
// right then.
func (s *Store) inTx(ctx context.Context, idem *api.Idempotency, fn func(tx pgx.Tx) (*api.Invoice, error)) (_ api.Outcome, err error) {
	defer func() { err = classify(err) }()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return api.Outcome{}, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		rctx, cancel := s.bound(context.WithoutCancel(ctx))
		defer cancel()
		_ = tx.Rollback(rctx) // a no-op after Commit
	}()
	if idem == nil {
		inv, err := fn(tx)
		if err != nil {
			return api.Outcome{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return api.Outcome{}, fmt.Errorf("commit: %w", err)
		}
		return api.Outcome{Invoice: inv}, nil
	}
	replay, err := claimKey(ctx, tx, idem)
	if err != nil || replay != nil {
		return api.Outcome{Replay: replay}, err
	}
	// The change runs in a savepoint, so a refusal it decides (invalid
	// state, not found) rolls back whatever it wrote (say a number taken
	// from the counter) while its response is still stored.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return api.Outcome{}, fmt.Errorf("savepoint: %w", err)
	}
	inv, err := fn(sp)
	if err != nil {
		if !api.ReplayableError(err) {
			return api.Outcome{}, err
		}
		if rerr := sp.Rollback(ctx); rerr != nil {
			return api.Outcome{}, fmt.Errorf("rollback to savepoint: %w", rerr)
		}
		if serr := storeResponse(ctx, tx, idem, idem.Respond(nil, err)); serr != nil {
			return api.Outcome{}, serr
		}
		if cerr := tx.Commit(ctx); cerr != nil {
			return api.Outcome{}, fmt.Errorf("commit: %w", cerr)
		}
		return api.Outcome{}, err
	}
	if err := sp.Commit(ctx); err != nil {
		return api.Outcome{}, fmt.Errorf("release savepoint: %w", err)
	}
	if err := storeResponse(ctx, tx, idem, idem.Respond(inv, nil)); err != nil {
		return api.Outcome{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return api.Outcome{}, fmt.Errorf("commit: %w", err)
	}
	return api.Outcome{Invoice: inv}, nil
}

// IdempotencyTTL is how long a stored outcome is replayed for its key.
const IdempotencyTTL = 24 * time.Hour

// PurgeIdempotencyKeys deletes stored outcomes older than IdempotencyTTL,
// in batches so a long backlog never holds locks for long, and returns how
// many it deleted. Expired keys are never replayed anyway (claimKey looks
// at the last 24 hours only); this keeps the table from growing forever.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context) (int64, error) {
	var total int64
	for {
		bctx, cancel := s.bound(ctx)
		tag, err := s.pool.Exec(bctx, `DELETE FROM idempotency_keys WHERE key IN (
			SELECT key FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT 1000)`,
			IdempotencyTTL.Seconds())
		cancel()
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}

// idempotencyLockClass namespaces the advisory locks of idempotency keys.
const idempotencyLockClass = 7301

func claimKey(ctx context.Context, tx pgx.Tx, idem *api.Idempotency) (*api.Replay, error) {
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, hashtext($2))`, idempotencyLockClass, idem.Key).Scan(&locked); err != nil {
		return nil, fmt.Errorf("lock idempotency key: %w", err)
	}
	if !locked {
		return nil, api.Errorf(api.EIDEMPOTENCYINUSE, "A request with this Idempotency-Key is still being processed; retry later.")
	}
	var (
		fp []byte
		r  api.Replay
	)
	err := tx.QueryRow(ctx, `SELECT fingerprint, status, body, etag, location FROM idempotency_keys
		WHERE key = $1 AND created_at > now() - make_interval(secs => $2)`,
		idem.Key, IdempotencyTTL.Seconds()).Scan(&fp, &r.Status, &r.Body, &r.ETag, &r.Location)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	if string(fp) != string(idem.Fingerprint) {
		return nil, api.Errorf(api.EIDEMPOTENCYREUSED, "This Idempotency-Key was used with a different request; use a new key.")
	}
	return &r, nil
}

// storeResponse stores the response to replay for idem's key.
func storeResponse(ctx context.Context, tx pgx.Tx, idem *api.Idempotency, r api.Replay) error {
	_, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (key, fingerprint, status, body, etag, location)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status,
			body = excluded.body, etag = excluded.etag, location = excluded.location, created_at = now()`,
		idem.Key, idem.Fingerprint, r.Status, r.Body, r.ETag, r.Location)
	if err != nil {
		return fmt.Errorf("store idempotency key: %w", err)
	}
	return nil
}

// change applies one domain transition to a locked invoice and returns the
// events to append and whether the line items were replaced. ctx is the
// call's, bounded (see Store.bound).
type change func(ctx context.Context, tx pgx.Tx, inv *api.Invoice) (events []string, linesChanged bool, err error)

// mutate locks the invoice, checks If-Match, applies ch, writes the invoice
// and its events, all in one transaction (see inTx for idempotency).
func (s *Store) mutate(ctx context.Context, id string, opts api.WriteOptions, ch change) (api.Outcome, error) {
	if !api.ValidID(id) {
		return api.Outcome{}, notFound(id)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.inTx(ctx, opts.Idempotency, func(tx pgx.Tx) (*api.Invoice, error) {
		inv, pk, err := scanInvoice(tx.QueryRow(ctx, `SELECT `+invoiceColumns+invoiceFrom+` WHERE i.id = $1 FOR UPDATE OF i`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, notFound(id)
		}
		if err != nil {
			return nil, fmt.Errorf("lock invoice: %w", err)
		}
		if !api.MatchETag(opts.IfMatch, inv.Version) {
			return nil, api.Errorf(api.EPRECONDITION, "The invoice is at version %d; If-Match does not match. Fetch it again and retry.", inv.Version)
		}
		events, linesChanged, err := ch(ctx, tx, inv)
		if err != nil {
			return nil, err
		}
		if len(events) == 0 {
			return inv, nil // a change that changes nothing: no write, same version
		}
		if err := writeInvoice(ctx, tx, pk, inv, linesChanged); err != nil {
			return nil, err
		}
		b := &pgx.Batch{}
		for _, e := range events {
			b.Queue(`INSERT INTO invoice_events (id, invoice_pk, type, version, created_at) VALUES ($1, $2, $3, $4, $5)`,
				api.NewID("evt_"), pk, e, inv.Version, inv.UpdatedAt)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("append events: %w", err)
		}
		return inv, nil
	})
}

func writeInvoice(ctx context.Context, tx pgx.Tx, pk int64, inv *api.Invoice, linesChanged bool) error {
	b := &pgx.Batch{}
	b.Queue(`UPDATE invoices SET number = $2, status = $3, currency = $4, customer_name = $5,
		customer_email = $6, subtotal = $7, tax = $8, total = $9, amount_paid = $10, due_date = $11::date,
		memo = $12, metadata = $13, version = $14, updated_at = $15, finalized_at = $16, paid_at = $17,
		voided_at = $18 WHERE pk = $1`,
		pk, inv.Number, inv.Status, inv.Currency, inv.Customer.Name, inv.Customer.Email, inv.Subtotal,
		inv.Tax, inv.Total, inv.AmountPaid, inv.DueDate, inv.Memo, inv.Metadata, inv.Version,
		inv.UpdatedAt, inv.FinalizedAt, inv.PaidAt, inv.VoidedAt)
	if linesChanged {
		d, q, u, r, a, t := lineArrays(inv.LineItems)
		b.Queue(`DELETE FROM line_items WHERE invoice_pk = $1`, pk)
		b.Queue(`INSERT INTO line_items (invoice_pk, position, description, quantity, unit_amount, tax_rate, amount, tax_amount)
			SELECT $1, l.ord, l.d, l.q::numeric, l.u, l.r::numeric, l.a, l.t
			FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[])
				WITH ORDINALITY AS l(d, q, u, r, a, t, ord)`, pk, d, q, u, r, a, t)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write invoice: %w", err)
	}
	return nil
}

// UpdateInvoice applies a partial update.
func (s *Store) UpdateInvoice(ctx context.Context, id string, p *api.InvoicePatch, opts api.WriteOptions) (api.Outcome, error) {
	return s.mutate(ctx, id, opts, func(_ context.Context, _ pgx.Tx, inv *api.Invoice) ([]string, bool, error) {
		ev, err := inv.ApplyPatch(p, s.now())
		return ev, p.LineItems != nil, err
	})
}

// FinalizeInvoice assigns the next number from the counter row, locked until
// this transaction ends: numbers are gapless and unique under concurrency.
func (s *Store) FinalizeInvoice(ctx context.Context, id string, opts api.WriteOptions) (api.Outcome, error) {
	return s.mutate(ctx, id, opts, func(ctx context.Context, tx pgx.Tx, inv *api.Invoice) ([]string, bool, error) {
		if err := inv.CheckFinalizable(); err != nil {
			return nil, false, err
		}
		var n int64
		if err := tx.QueryRow(ctx, `UPDATE invoice_number_counter SET last_number = last_number + 1 RETURNING last_number`).Scan(&n); err != nil {
			return nil, false, fmt.Errorf("next invoice number: %w", err)
		}
		ev, err := inv.Finalize(n, s.now())
		return ev, false, err
	})
}

// RecordPayment records a payment of amount minor units.
func (s *Store) RecordPayment(ctx context.Context, id string, amount int64, opts api.WriteOptions) (api.Outcome, error) {
	return s.mutate(ctx, id, opts, func(_ context.Context, _ pgx.Tx, inv *api.Invoice) ([]string, bool, error) {
		ev, err := inv.RecordPayment(amount, s.now())
		return ev, false, err
	})
}

// VoidInvoice voids an open or uncollectible invoice.
func (s *Store) VoidInvoice(ctx context.Context, id string, opts api.WriteOptions) (api.Outcome, error) {
	return s.mutate(ctx, id, opts, func(_ context.Context, _ pgx.Tx, inv *api.Invoice) ([]string, bool, error) {
		ev, err := inv.Void(s.now())
		return ev, false, err
	})
}

// MarkUncollectible marks an open invoice uncollectible.
func (s *Store) MarkUncollectible(ctx context.Context, id string, opts api.WriteOptions) (api.Outcome, error) {
	return s.mutate(ctx, id, opts, func(_ context.Context, _ pgx.Tx, inv *api.Invoice) ([]string, bool, error) {
		ev, err := inv.MarkUncollectible(s.now())
		return ev, false, err
	})
}

// DeleteInvoice deletes a draft (its lines and events go with it).
func (s *Store) DeleteInvoice(ctx context.Context, id string, opts api.WriteOptions) error {
	if !api.ValidID(id) {
		return notFound(id)
	}
	// DELETE takes no Idempotency-Key (it is idempotent by nature: a retry
	// answers not_found), hence no key here.
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := s.inTx(ctx, nil, func(tx pgx.Tx) (*api.Invoice, error) {
		var (
			pk      int64
			status  api.Status
			version int64
		)
		err := tx.QueryRow(ctx, `SELECT pk, status, version FROM invoices WHERE id = $1 FOR UPDATE`, id).Scan(&pk, &status, &version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, notFound(id)
		}
		if err != nil {
			return nil, fmt.Errorf("lock invoice: %w", err)
		}
		if !api.MatchETag(opts.IfMatch, version) {
			return nil, api.Errorf(api.EPRECONDITION, "The invoice is at version %d; If-Match does not match. Fetch it again and retry.", version)
		}
		if err := (&api.Invoice{Status: status}).CheckDeletable(); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM invoices WHERE pk = $1`, pk); err != nil {
			return nil, fmt.Errorf("delete invoice: %w", err)
		}
		return nil, nil
	})
	return err
}
