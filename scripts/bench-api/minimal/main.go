// Command minimal is the reference a developer would write by hand for
// make bench-api: net/http and pgx, no router, no validation beyond JSON
// decoding, no idempotency, logging or metrics. It runs the invoicing API's
// own create and get-by-id statements (a test in api/postgres keeps them
// identical) and writes the row as JSON with encoding/json. It is built and
// started by scripts/bench-api.sh only; no image or binary ships it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// createSQL is api/postgres createSQL.
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

// getSQL is api/postgres invoiceColumns + invoiceFrom, by id.
const getSQL = `SELECT i.pk, i.id, i.number, i.status, i.currency, i.customer_name, i.customer_email,
	i.subtotal, i.tax, i.total, i.amount_paid, to_char(i.due_date, 'YYYY-MM-DD'), i.memo, i.metadata, i.version,
	i.created_at, i.updated_at, i.finalized_at, i.paid_at, i.voided_at,
	li.d, li.q, li.u, li.r, li.a, li.t FROM invoices i CROSS JOIN LATERAL (
	SELECT array_agg(l.description ORDER BY l.position) d, array_agg(l.quantity::text ORDER BY l.position) q,
		array_agg(l.unit_amount ORDER BY l.position) u, array_agg(l.tax_rate::text ORDER BY l.position) r,
		array_agg(l.amount ORDER BY l.position) a, array_agg(l.tax_amount ORDER BY l.position) t
	FROM line_items l WHERE l.invoice_pk = i.pk) li WHERE i.id = $1`

type customer struct {
	Name  string  `json:"name"`
	Email *string `json:"email"`
}

type lineItem struct {
	Description string          `json:"description"`
	Quantity    json.RawMessage `json:"quantity"`
	UnitAmount  int64           `json:"unit_amount"`
	TaxRate     string          `json:"tax_rate"`
	Amount      int64           `json:"amount"`
	TaxAmount   int64           `json:"tax_amount"`
}

type invoice struct {
	ID          string            `json:"id"`
	Number      *string           `json:"number"`
	Status      string            `json:"status"`
	Currency    string            `json:"currency"`
	Customer    customer          `json:"customer"`
	LineItems   []lineItem        `json:"line_items"`
	Subtotal    int64             `json:"subtotal"`
	Tax         int64             `json:"tax"`
	Total       int64             `json:"total"`
	AmountPaid  int64             `json:"amount_paid"`
	AmountDue   int64             `json:"amount_due"`
	DueDate     *string           `json:"due_date"`
	Memo        *string           `json:"memo"`
	Metadata    map[string]string `json:"metadata"`
	Version     int64             `json:"version"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	FinalizedAt *time.Time        `json:"finalized_at"`
	PaidAt      *time.Time        `json:"paid_at"`
	VoidedAt    *time.Time        `json:"voided_at"`
}

func newID(prefix string) string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// scaled parses "1.5" or 3 as an integer x 10^4 (the bench sends valid input).
func scaled(raw string) int64 {
	ip, fp, _ := strings.Cut(strings.Trim(raw, `"`), ".")
	n, _ := strconv.ParseInt(ip, 10, 64)
	f, _ := strconv.ParseInt((fp + "0000")[:4], 10, 64)
	return n*10000 + f
}

func create(pool *pgxpool.Pool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var inv invoice
		if err := json.NewDecoder(r.Body).Decode(&inv); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var d, q, rt []string
		var u, a, t []int64
		for i, l := range inv.LineItems {
			amount := (scaled(string(l.Quantity))*l.UnitAmount + 5000) / 10000
			tax := (amount*scaled(l.TaxRate)/100 + 5000) / 10000
			inv.LineItems[i].Amount, inv.LineItems[i].TaxAmount = amount, tax
			inv.Subtotal += amount
			inv.Tax += tax
			d, q, u = append(d, l.Description), append(q, strings.Trim(string(l.Quantity), `"`)), append(u, l.UnitAmount)
			rt, a, t = append(rt, l.TaxRate), append(a, amount), append(t, tax)
		}
		now := time.Now().UTC().Truncate(time.Second)
		inv.ID, inv.Status, inv.Version, inv.CreatedAt, inv.UpdatedAt = newID("inv_"), "draft", 1, now, now
		inv.Total = inv.Subtotal + inv.Tax
		inv.AmountDue = inv.Total
		if inv.Metadata == nil {
			inv.Metadata = map[string]string{}
		}
		if _, err := pool.Exec(r.Context(), createSQL, inv.ID, inv.Currency, inv.Customer.Name, inv.Customer.Email,
			inv.Subtotal, inv.Tax, inv.Total, inv.DueDate, inv.Memo, inv.Metadata, now, d, q, u, rt, a, t, newID("evt_")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Location", "/v1/invoices/"+inv.ID)
		writeJSON(w, http.StatusCreated, &inv)
	}
}

func get(pool *pgxpool.Pool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			inv      invoice
			pk       int64
			d, q, rt []string
			u, a, t  []int64
		)
		err := pool.QueryRow(r.Context(), getSQL, r.PathValue("id")).Scan(&pk, &inv.ID, &inv.Number, &inv.Status,
			&inv.Currency, &inv.Customer.Name, &inv.Customer.Email, &inv.Subtotal, &inv.Tax, &inv.Total,
			&inv.AmountPaid, &inv.DueDate, &inv.Memo, &inv.Metadata, &inv.Version, &inv.CreatedAt, &inv.UpdatedAt,
			&inv.FinalizedAt, &inv.PaidAt, &inv.VoidedAt, &d, &q, &u, &rt, &a, &t)
		if errors.Is(err, pgx.ErrNoRows) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		inv.AmountDue = inv.Total - inv.AmountPaid
		inv.LineItems = make([]lineItem, len(d))
		for i := range d {
			inv.LineItems[i] = lineItem{Description: d[i], Quantity: json.RawMessage(strconv.Quote(q[i])),
				UnitAmount: u[i], TaxRate: rt[i], Amount: a[i], TaxAmount: t[i]}
		}
		writeJSON(w, http.StatusOK, &inv)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(1)
	}
}

func run() error {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/invoices", create(pool))
	mux.HandleFunc("GET /v1/invoices/{id}", get(pool))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := pool.Ping(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	log.Printf("listening on %s", os.Getenv("ADDR"))
	return http.ListenAndServe(os.Getenv("ADDR"), mux)
}
