package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is the state of an invoice.
type Status string

// The invoice states. draft -> open -> paid | void | uncollectible;
// uncollectible -> paid | void.
const (
	StatusDraft         Status = "draft"
	StatusOpen          Status = "open"
	StatusPaid          Status = "paid"
	StatusVoid          Status = "void"
	StatusUncollectible Status = "uncollectible"
)

// ValidStatus reports whether s names a status.
func ValidStatus(s string) bool {
	switch Status(s) {
	case StatusDraft, StatusOpen, StatusPaid, StatusVoid, StatusUncollectible:
		return true
	}
	return false
}

// Event types appended in the same transaction as the change they record.
const (
	EventCreated             = "invoice.created"
	EventUpdated             = "invoice.updated"
	EventFinalized           = "invoice.finalized"
	EventPaymentRecorded     = "invoice.payment_recorded"
	EventPaid                = "invoice.paid"
	EventVoided              = "invoice.voided"
	EventMarkedUncollectible = "invoice.marked_uncollectible"
)

// Invoice is the resource clients read. JSON tags give its wire form.
type Invoice struct {
	ID          string            `json:"id"`
	Number      *string           `json:"number"`
	Status      Status            `json:"status"`
	Currency    string            `json:"currency"`
	Customer    Customer          `json:"customer"`
	LineItems   []LineItem        `json:"line_items"`
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

// Customer is who the invoice is addressed to.
type Customer struct {
	Name  string  `json:"name"`
	Email *string `json:"email"`
}

// LineItem is one priced line. Amount and TaxAmount are computed.
type LineItem struct {
	Description string  `json:"description"`
	Quantity    Decimal `json:"quantity"`
	UnitAmount  int64   `json:"unit_amount"`
	TaxRate     Decimal `json:"tax_rate"`
	Amount      int64   `json:"amount"`
	TaxAmount   int64   `json:"tax_amount"`
}

// Event records one state change of an invoice.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

// FormatNumber renders invoice number n as INV-000001.
func FormatNumber(n int64) string { return fmt.Sprintf("INV-%06d", n) }

// ETag returns the strong entity tag of an invoice version, quoted.
func ETag(version int64) string { return `"v` + strconv.FormatInt(version, 10) + `"` }

// NewID returns a random opaque identifier with the given prefix, e.g. inv_.
func NewID(prefix string) string {
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on Linux
	}
	return prefix + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// Now returns the current time as the API stores it: UTC, whole seconds.
func Now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// NewInvoice builds a draft from validated input and prices it.
func NewInvoice(in *InvoiceInput, now time.Time) (*Invoice, error) {
	inv := &Invoice{
		ID:        NewID("inv_"),
		Status:    StatusDraft,
		Currency:  in.Currency,
		Customer:  in.Customer,
		LineItems: in.LineItems,
		DueDate:   in.DueDate,
		Memo:      in.Memo,
		Metadata:  in.Metadata,
		Version:   1,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if inv.LineItems == nil {
		inv.LineItems = []LineItem{}
	}
	if inv.Metadata == nil {
		inv.Metadata = map[string]string{}
	}
	if err := inv.price(); err != nil {
		return nil, err
	}
	return inv, nil
}

// price recomputes every line amount and total from quantities, unit
// amounts and rates.
func (inv *Invoice) price() error {
	t, err := ComputeTotals(inv.LineItems)
	if err != nil {
		param := "line_items"
		if oe, ok := err.(*LineOverflowError); ok && oe.Index >= 0 {
			param = fmt.Sprintf("line_items[%d]", oe.Index)
		}
		return &Error{Code: EVALIDATION, Message: "The request is invalid.",
			Fields: []FieldError{{Param: param, Code: "overflow", Detail: ErrOverflow.Error()}}}
	}
	for i := range inv.LineItems {
		inv.LineItems[i].Amount = t.Amounts[i]
		inv.LineItems[i].TaxAmount = t.TaxAmounts[i]
	}
	inv.Subtotal, inv.Tax, inv.Total = t.Subtotal, t.Tax, t.Total
	inv.AmountDue = inv.Total - inv.AmountPaid
	return nil
}

func (inv *Invoice) stateError(action string) error {
	return Errorf(EINVALIDSTATE, "Cannot %s an invoice in status %s.", action, inv.Status)
}

// ApplyPatch changes the fields present in p. Drafts accept any field;
// other states only memo and metadata (anything else is invalid_state,
// even when its value is the current one). It returns the events to
// record: none when the patch changes nothing ({} or the current values),
// and then the invoice keeps its version, updated_at and ETag, so a client
// replaying its own state does not invalidate everyone's If-Match.
func (inv *Invoice) ApplyPatch(p *InvoicePatch, now time.Time) ([]string, error) {
	if inv.Status != StatusDraft {
		if f := p.moneyFields(); f != "" {
			return nil, Errorf(EINVALIDSTATE, "Only memo and metadata can change on an invoice in status %s (got %s).", inv.Status, f)
		}
	}
	before := *inv
	before.LineItems = slices.Clone(inv.LineItems)
	if p.Currency != nil {
		inv.Currency = *p.Currency
	}
	if p.Customer != nil {
		inv.Customer = *p.Customer
	}
	if p.LineItems != nil {
		inv.LineItems = *p.LineItems
	}
	if p.DueDate.Set {
		inv.DueDate = p.DueDate.Value
	}
	if p.Memo.Set {
		inv.Memo = p.Memo.Value
	}
	if p.Metadata != nil {
		inv.Metadata = *p.Metadata
	}
	if err := inv.price(); err != nil {
		return nil, err
	}
	if sameContent(&before, inv) {
		return nil, nil
	}
	inv.touch(now)
	return []string{EventUpdated}, nil
}

// sameContent reports whether a and b hold the same client-set fields (the
// computed ones follow from them).
func sameContent(a, b *Invoice) bool {
	return a.Currency == b.Currency && a.Customer.Name == b.Customer.Name &&
		equalPtr(a.Customer.Email, b.Customer.Email) && slices.Equal(a.LineItems, b.LineItems) &&
		equalPtr(a.DueDate, b.DueDate) && equalPtr(a.Memo, b.Memo) && maps.Equal(a.Metadata, b.Metadata)
}

func equalPtr(a, b *string) bool { return a == b || (a != nil && b != nil && *a == *b) }

func (inv *Invoice) touch(now time.Time) {
	inv.Version++
	inv.UpdatedAt = now
}

// CheckDeletable returns invalid_state unless inv is a draft.
func (inv *Invoice) CheckDeletable() error {
	if inv.Status != StatusDraft {
		return inv.stateError("delete")
	}
	return nil
}

// CheckFinalizable returns invalid_state unless inv is a draft.
func (inv *Invoice) CheckFinalizable() error {
	if inv.Status != StatusDraft {
		return inv.stateError("finalize")
	}
	return nil
}

// Finalize moves a draft to open with the given number. An invoice whose
// total is 0 has nothing to collect and becomes paid at once.
func (inv *Invoice) Finalize(number int64, now time.Time) ([]string, error) {
	if err := inv.CheckFinalizable(); err != nil {
		return nil, err
	}
	n := FormatNumber(number)
	inv.Number = &n
	inv.Status = StatusOpen
	inv.FinalizedAt = &now
	inv.touch(now)
	events := []string{EventFinalized}
	if inv.AmountDue == 0 {
		inv.Status = StatusPaid
		inv.PaidAt = &now
		events = append(events, EventPaid)
	}
	return events, nil
}

// RecordPayment adds amount (minor units, 1..amount_due) to an open or
// uncollectible invoice; when nothing is left due it becomes paid.
func (inv *Invoice) RecordPayment(amount int64, now time.Time) ([]string, error) {
	if inv.Status != StatusOpen && inv.Status != StatusUncollectible {
		return nil, inv.stateError("record a payment on")
	}
	if amount > inv.AmountDue {
		return nil, &Error{Code: EVALIDATION, Message: "The request is invalid.", Fields: []FieldError{{
			Param: "amount", Code: "exceeds_amount_due",
			Detail: fmt.Sprintf("must be at most the amount due (%d)", inv.AmountDue)}}}
	}
	inv.AmountPaid += amount
	inv.AmountDue -= amount
	inv.touch(now)
	events := []string{EventPaymentRecorded}
	if inv.AmountDue == 0 {
		inv.Status = StatusPaid
		inv.PaidAt = &now
		events = append(events, EventPaid)
	}
	return events, nil
}

// Void moves an open or uncollectible invoice to void.
func (inv *Invoice) Void(now time.Time) ([]string, error) {
	if inv.Status != StatusOpen && inv.Status != StatusUncollectible {
		return nil, inv.stateError("void")
	}
	inv.Status = StatusVoid
	inv.VoidedAt = &now
	inv.touch(now)
	return []string{EventVoided}, nil
}

// MarkUncollectible moves an open invoice to uncollectible.
func (inv *Invoice) MarkUncollectible(now time.Time) ([]string, error) {
	if inv.Status != StatusOpen {
		return nil, inv.stateError("mark uncollectible")
	}
	inv.Status = StatusUncollectible
	inv.touch(now)
	return []string{EventMarkedUncollectible}, nil
}

// ListFilter selects and pages invoices, newest first.
type ListFilter struct {
	Limit         int    // 1..100
	StartingAfter string // a cursor from a previous page, or ""
	Status        string // "" for any
	CustomerEmail string // "" for any
}

// InvoicePage is one page of a list.
type InvoicePage struct {
	Data       []*Invoice
	HasMore    bool
	NextCursor *string
}

// WriteOptions carry the preconditions of a change.
type WriteOptions struct {
	// IfMatch holds the entity tags of If-Match; nil means no precondition.
	IfMatch []string
	// Idempotency, when non-nil, makes the change happen at most once per key.
	Idempotency *Idempotency
}

// Idempotency identifies a client's retryable request.
type Idempotency struct {
	Key         string // the Idempotency-Key header, 1..255 chars
	Fingerprint []byte // hash of the request's meaning: the "same request"
	// Respond gives the response to store for the key and replay to a
	// retry: for the changed invoice (err nil), or for a refusal decided by
	// the invoice's state (ReplayableError: invalid_state, not_found, a
	// validation of the change), which is stored and replayed like a
	// success. The adapter that answers clients (api/http) provides it, so
	// storage keeps the response as opaque bytes and knows no wire format.
	// Required.
	Respond func(inv *Invoice, err error) Replay
}

// ReplayableError reports whether err is an outcome of a request that ran:
// a retry with the same key gets it again instead of running once more.
// Refusals before the request ran (malformed body, key in use) are not.
func ReplayableError(err error) bool {
	switch ErrorCode(err) {
	case EINVALIDSTATE, ENOTFOUND, EVALIDATION:
		return true
	}
	// Not a 412: If-Match is outside the fingerprint, and a client that
	// refetched the invoice retries with the same key and a new If-Match.
	return false
}

// Replay is a stored response returned again for a retried request. Its
// fields are produced and read by the client-facing adapter only.
type Replay struct {
	Status   int
	Body     []byte
	ETag     string
	Location string
}

// Outcome is the result of a change: the invoice after it (nil after a
// delete), or a replayed earlier response.
type Outcome struct {
	Invoice *Invoice
	Replay  *Replay
}

// InvoiceService is the storage contract of the invoicing API.
type InvoiceService interface {
	CreateInvoice(ctx context.Context, in *InvoiceInput, opts WriteOptions) (Outcome, error)
	FindInvoice(ctx context.Context, id string) (*Invoice, error)
	ListInvoices(ctx context.Context, f ListFilter) (*InvoicePage, error)
	UpdateInvoice(ctx context.Context, id string, p *InvoicePatch, opts WriteOptions) (Outcome, error)
	DeleteInvoice(ctx context.Context, id string, opts WriteOptions) error
	FinalizeInvoice(ctx context.Context, id string, opts WriteOptions) (Outcome, error)
	RecordPayment(ctx context.Context, id string, amount int64, opts WriteOptions) (Outcome, error)
	VoidInvoice(ctx context.Context, id string, opts WriteOptions) (Outcome, error)
	MarkUncollectible(ctx context.Context, id string, opts WriteOptions) (Outcome, error)
	ListEvents(ctx context.Context, id string) ([]Event, error)
	// Ready reports nil when the database answers and is migrated.
	Ready(ctx context.Context) error
}

// MatchETag reports whether version satisfies an If-Match list (strong
// comparison; "*" matches any existing invoice).
func MatchETag(ifMatch []string, version int64) bool {
	if ifMatch == nil {
		return true
	}
	tag := ETag(version)
	for _, t := range ifMatch {
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}
