package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/currency"
)

// Limits of what a client may send.
const (
	MaxLineItems        = 100
	MaxMetadataKeys     = 50
	MaxMetadataKeyLen   = 40
	MaxMetadataValueLen = 500
	MaxDescriptionLen   = 500
	MaxNameLen          = 200
	MaxEmailLen         = 254
	MaxMemoLen          = 5000
	MaxListLimit        = 100
	DefaultListLimit    = 10
)

// InvoiceInput is a validated request to create a draft.
type InvoiceInput struct {
	Currency  string
	Customer  Customer
	LineItems []LineItem
	DueDate   *string
	Memo      *string
	Metadata  map[string]string
}

// Nullable is a field that may be absent (Set false), null (Value nil) or set.
type Nullable struct {
	Set   bool
	Value *string
}

// InvoicePatch is a validated partial update; nil / unset fields stay as they are.
type InvoicePatch struct {
	Currency  *string
	Customer  *Customer
	LineItems *[]LineItem
	DueDate   Nullable
	Memo      Nullable
	Metadata  *map[string]string
}

// moneyFields names the first field present that only a draft may change.
func (p *InvoicePatch) moneyFields() string {
	switch {
	case p.Currency != nil:
		return "currency"
	case p.Customer != nil:
		return "customer"
	case p.LineItems != nil:
		return "line_items"
	case p.DueDate.Set:
		return "due_date"
	}
	return ""
}

// computedFields are set by the server; a request that sends one is rejected.
var computedFields = map[string]bool{
	"id": true, "number": true, "status": true, "subtotal": true, "tax": true, "total": true,
	"amount_paid": true, "amount_due": true, "version": true, "created_at": true,
	"updated_at": true, "finalized_at": true, "paid_at": true, "voided_at": true,
}

var computedLineFields = map[string]bool{"amount": true, "tax_amount": true}

// validator collects field errors with their paths.
type validator struct{ errs []FieldError }

func (v *validator) add(param, code, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Param: param, Code: code, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &Error{Code: EVALIDATION, Message: "The request is invalid; see errors.", Fields: v.errs}
}

// decodeObject parses body as one JSON object with numbers kept exact.
// Syntax errors are malformed_json; a valid non-object is a validation error.
func decodeObject(body []byte) (map[string]any, error) {
	if obj, ok := fastObject(body); ok {
		return obj, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Errorf(EMALFORMED, "The body must hold exactly one JSON value.")
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Code: EVALIDATION, Message: "The request is invalid; see errors.",
			Fields: []FieldError{{Param: "body", Code: "invalid_type", Detail: "must be a JSON object"}}}
	}
	return obj, nil
}

func malformed(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return Errorf(EMALFORMED, "The body is not valid JSON (at byte %d).", se.Offset)
	}
	return Errorf(EMALFORMED, "The body is not valid JSON.")
}

// sortedKeys gives deterministic error order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParseInvoiceInput decodes and validates the body of POST /v1/invoices.
func ParseInvoiceInput(body []byte) (*InvoiceInput, error) {
	obj, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	var v validator
	in := &InvoiceInput{LineItems: []LineItem{}, Metadata: map[string]string{}}
	if _, ok := obj["currency"]; !ok {
		v.add("currency", "required", "is required")
	}
	if _, ok := obj["customer"]; !ok {
		v.add("customer", "required", "is required")
	}
	for _, k := range sortedKeys(obj) {
		raw := obj[k]
		switch k {
		case "currency":
			if c, ok := parseCurrency(&v, raw); ok {
				in.Currency = c
			}
		case "customer":
			if c, ok := parseCustomer(&v, raw); ok {
				in.Customer = c
			}
		case "line_items":
			if l, ok := parseLineItems(&v, raw); ok {
				in.LineItems = l
			}
		case "due_date":
			in.DueDate = parseDueDate(&v, raw)
		case "memo":
			in.Memo = parseMemo(&v, raw)
		case "metadata":
			if m, ok := parseMetadata(&v, raw); ok {
				in.Metadata = m
			}
		default:
			unknownField(&v, k, computedFields)
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return in, nil
}

// ParseInvoicePatch decodes and validates the body of PATCH /v1/invoices/{id}.
func ParseInvoicePatch(body []byte) (*InvoicePatch, error) {
	obj, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	var v validator
	p := &InvoicePatch{}
	for _, k := range sortedKeys(obj) {
		raw := obj[k]
		switch k {
		case "currency":
			if c, ok := parseCurrency(&v, raw); ok {
				p.Currency = &c
			}
		case "customer":
			if c, ok := parseCustomer(&v, raw); ok {
				p.Customer = &c
			}
		case "line_items":
			if l, ok := parseLineItems(&v, raw); ok {
				p.LineItems = &l
			}
		case "due_date":
			p.DueDate = Nullable{Set: true, Value: parseDueDate(&v, raw)}
		case "memo":
			p.Memo = Nullable{Set: true, Value: parseMemo(&v, raw)}
		case "metadata":
			if m, ok := parseMetadata(&v, raw); ok {
				p.Metadata = &m
			}
		default:
			unknownField(&v, k, computedFields)
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// ParsePayment decodes and validates {"amount": N} of POST .../payments.
func ParsePayment(body []byte) (int64, error) {
	obj, err := decodeObject(body)
	if err != nil {
		return 0, err
	}
	var v validator
	var amount int64
	if _, ok := obj["amount"]; !ok {
		v.add("amount", "required", "is required")
	}
	for _, k := range sortedKeys(obj) {
		if k != "amount" {
			unknownField(&v, k, nil)
			continue
		}
		if n, ok := parseInt(&v, "amount", obj[k]); ok {
			if n < 1 {
				v.add("amount", "out_of_range", "must be at least 1")
			} else {
				amount = n
			}
		}
	}
	return amount, v.err()
}

// ParseEmptyBody accepts the body of an action: empty or an empty object.
func ParseEmptyBody(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	obj, err := decodeObject(body)
	if err != nil {
		return err
	}
	var v validator
	for _, k := range sortedKeys(obj) {
		unknownField(&v, k, nil)
	}
	return v.err()
}

func unknownField(v *validator, k string, computed map[string]bool) {
	if computed[k] {
		v.add(k, "read_only", "is computed by the server and must not be sent")
		return
	}
	v.add(k, "unknown_field", "is not a field of this request")
}

func parseString(v *validator, param string, raw any, maxLen int, required bool) (string, bool) {
	s, ok := raw.(string)
	if !ok {
		v.add(param, "invalid_type", "must be a string")
		return "", false
	}
	if !storable(s) {
		v.add(param, "invalid_value", "must be valid UTF-8 without NUL characters")
		return "", false
	}
	if required && strings.TrimSpace(s) == "" {
		v.add(param, "required", "must not be empty")
		return "", false
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		v.add(param, "too_long", "must be at most %d characters", maxLen)
		return "", false
	}
	return s, true
}

func parseCurrency(v *validator, raw any) (string, bool) {
	s, ok := raw.(string)
	if !ok {
		v.add("currency", "invalid_type", "must be a string")
		return "", false
	}
	if len(s) != 3 || strings.ToUpper(s) != s {
		v.add("currency", "invalid_value", "must be an upper-case ISO 4217 code such as EUR")
		return "", false
	}
	if _, err := currency.ParseISO(s); err != nil {
		v.add("currency", "invalid_value", "must be an ISO 4217 currency code")
		return "", false
	}
	return s, true
}

func parseCustomer(v *validator, raw any) (Customer, bool) {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.add("customer", "invalid_type", "must be an object")
		return Customer{}, false
	}
	var c Customer
	n := len(v.errs)
	if _, ok := obj["name"]; !ok {
		v.add("customer.name", "required", "is required")
	}
	for _, k := range sortedKeys(obj) {
		switch k {
		case "name":
			c.Name, _ = parseString(v, "customer.name", obj[k], MaxNameLen, true)
		case "email":
			if obj[k] == nil {
				continue
			}
			s, ok := parseString(v, "customer.email", obj[k], MaxEmailLen, true)
			if !ok {
				continue
			}
			if a, err := mail.ParseAddress(s); err != nil || a.Address != s || a.Name != "" {
				v.add("customer.email", "invalid_value", "must be an email address such as ada@example.com")
				continue
			}
			c.Email = &s
		default:
			unknownField(v, "customer."+k, nil)
		}
	}
	return c, len(v.errs) == n
}

func parseLineItems(v *validator, raw any) ([]LineItem, bool) {
	arr, ok := raw.([]any)
	if !ok {
		v.add("line_items", "invalid_type", "must be an array")
		return nil, false
	}
	if len(arr) > MaxLineItems {
		v.add("line_items", "too_many", "must have at most %d items", MaxLineItems)
		return nil, false
	}
	n := len(v.errs)
	items := make([]LineItem, 0, len(arr))
	for i, r := range arr {
		items = append(items, parseLineItem(v, fmt.Sprintf("line_items[%d]", i), r))
	}
	if len(v.errs) != n {
		return nil, false
	}
	// Price now so an overflow is reported with the request's other errors.
	if _, err := ComputeTotals(items); err != nil {
		param := "line_items"
		var oe *LineOverflowError
		if errors.As(err, &oe) && oe.Index >= 0 {
			param = fmt.Sprintf("line_items[%d]", oe.Index)
		}
		v.add(param, "overflow", "%s", ErrOverflow.Error())
		return nil, false
	}
	return items, true
}

func parseLineItem(v *validator, path string, raw any) LineItem {
	obj, ok := raw.(map[string]any)
	li := LineItem{TaxRate: Decimal{}}
	if !ok {
		v.add(path, "invalid_type", "must be an object")
		return li
	}
	for _, f := range []string{"description", "quantity", "unit_amount"} {
		if _, ok := obj[f]; !ok {
			v.add(path+"."+f, "required", "is required")
		}
	}
	for _, k := range sortedKeys(obj) {
		p := path + "." + k
		switch k {
		case "description":
			li.Description, _ = parseString(v, p, obj[k], MaxDescriptionLen, true)
		case "quantity":
			li.Quantity = parseQuantity(v, p, obj[k])
		case "unit_amount":
			if n, ok := parseInt(v, p, obj[k]); ok {
				if n < 0 {
					v.add(p, "out_of_range", "must be at least 0")
				} else {
					li.UnitAmount = n
				}
			}
		case "tax_rate":
			s, ok := obj[k].(string)
			if !ok {
				v.add(p, "invalid_type", `must be a decimal string such as "20" or "7.5"`)
				continue
			}
			d, err := ParseDecimal(s)
			if err != nil {
				v.add(p, "invalid_value", "%s", err.Error())
				continue
			}
			if d.scaled > 100*decimalScale {
				v.add(p, "out_of_range", "must be between 0 and 100")
				continue
			}
			li.TaxRate = d
		default:
			if computedLineFields[k] {
				v.add(p, "read_only", "is computed by the server and must not be sent")
			} else {
				unknownField(v, p, nil)
			}
		}
	}
	return li
}

func parseQuantity(v *validator, p string, raw any) Decimal {
	var s string
	switch q := raw.(type) {
	case json.Number:
		s = q.String()
		if !allDigits(strings.TrimPrefix(s, "-")) {
			v.add(p, "invalid_value", `must be an integer or a decimal string such as "1.5"`)
			return Decimal{}
		}
	case string:
		s = q
	default:
		v.add(p, "invalid_type", `must be an integer or a decimal string such as "1.5"`)
		return Decimal{}
	}
	if strings.HasPrefix(s, "-") {
		v.add(p, "out_of_range", "must be greater than 0")
		return Decimal{}
	}
	d, err := ParseDecimal(s)
	if err != nil {
		v.add(p, "invalid_value", "%s", err.Error())
		return Decimal{}
	}
	if d.IsZero() {
		v.add(p, "out_of_range", "must be greater than 0")
	}
	return d
}

// parseInt accepts a JSON integer (no fraction, no exponent) up to MaxAmount.
func parseInt(v *validator, p string, raw any) (int64, bool) {
	num, ok := raw.(json.Number)
	if !ok {
		v.add(p, "invalid_type", "must be an integer")
		return 0, false
	}
	s := num.String()
	if !allDigits(strings.TrimPrefix(s, "-")) {
		v.add(p, "invalid_type", "must be an integer (minor units, no fraction or exponent)")
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxAmount || n < -MaxAmount {
		v.add(p, "overflow", "%s", ErrOverflow.Error())
		return 0, false
	}
	return n, true
}

func parseDueDate(v *validator, raw any) *string {
	if raw == nil {
		return nil
	}
	s, ok := raw.(string)
	if !ok {
		v.add("due_date", "invalid_type", "must be a date string YYYY-MM-DD or null")
		return nil
	}
	// Year 0 parses in Go but PostgreSQL's date type has no year 0.
	if t, err := time.Parse(time.DateOnly, s); err != nil || len(s) != 10 || t.Year() < 1 {
		v.add("due_date", "invalid_value", "must be a valid date YYYY-MM-DD")
		return nil
	}
	return &s
}

func parseMemo(v *validator, raw any) *string {
	if raw == nil {
		return nil
	}
	s, ok := parseString(v, "memo", raw, MaxMemoLen, false)
	if !ok {
		return nil
	}
	return &s
}

func parseMetadata(v *validator, raw any) (map[string]string, bool) {
	if raw == nil {
		return map[string]string{}, true
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		v.add("metadata", "invalid_type", "must be an object of strings")
		return nil, false
	}
	if len(obj) > MaxMetadataKeys {
		v.add("metadata", "too_many", "must have at most %d keys", MaxMetadataKeys)
		return nil, false
	}
	n := len(v.errs)
	m := make(map[string]string, len(obj))
	for _, k := range sortedKeys(obj) {
		p := "metadata." + k
		if k == "" || utf8.RuneCountInString(k) > MaxMetadataKeyLen || !storable(k) {
			v.add("metadata", "invalid_value", "keys must be 1..%d characters, without NUL", MaxMetadataKeyLen)
			continue
		}
		if s, ok := parseString(v, p, obj[k], MaxMetadataValueLen, false); ok {
			m[k] = s
		}
	}
	return m, len(v.errs) == n
}

// ParseListFilter validates the query of GET /v1/invoices.
func ParseListFilter(q url.Values) (ListFilter, error) {
	var v validator
	f := ListFilter{Limit: DefaultListLimit}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := q[k]
		if len(vals) != 1 {
			v.add(k, "invalid_value", "must be given once")
			continue
		}
		val := vals[0]
		switch k {
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > MaxListLimit || !allDigits(val) {
				v.add(k, "out_of_range", "must be an integer from 1 to %d", MaxListLimit)
				continue
			}
			f.Limit = n
		case "starting_after":
			if _, ok := DecodeCursor(val); !ok {
				v.add(k, "invalid_value", "must be a next_cursor from a previous page")
				continue
			}
			f.StartingAfter = val
		case "status":
			if !ValidStatus(val) {
				v.add(k, "invalid_value", "must be one of draft, open, paid, void, uncollectible")
				continue
			}
			f.Status = val
		case "customer_email":
			if val == "" || len(val) > MaxEmailLen || !storable(val) {
				v.add(k, "invalid_value", "must be an email address")
				continue
			}
			f.CustomerEmail = val
		default:
			v.add(k, "unknown_field", "is not a parameter of this request")
		}
	}
	return f, v.err()
}

// storable reports whether s can be stored as PostgreSQL text: valid UTF-8
// without NUL characters.
func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// ValidID reports whether id has the shape of an invoice id; anything else
// cannot exist, so lookups answer not_found without asking the database.
func ValidID(id string) bool {
	if len(id) != 28 || !strings.HasPrefix(id, "inv_") {
		return false
	}
	for _, c := range id[4:] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidIdempotencyKey reports whether k is 1..255 printable ASCII characters.
func ValidIdempotencyKey(k string) bool {
	if len(k) < 1 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// EncodeCursor returns the opaque cursor for a position in the list. It does
// not refer to an invoice id, so deleting that invoice does not break paging.
func EncodeCursor(position int64) string { return "c" + strconv.FormatInt(position, 36) }

// DecodeCursor reverses EncodeCursor.
func DecodeCursor(c string) (int64, bool) {
	if len(c) < 2 || len(c) > 16 || c[0] != 'c' {
		return 0, false
	}
	n, err := strconv.ParseInt(c[1:], 36, 64)
	if err != nil || n < 1 || EncodeCursor(n) != c {
		return 0, false
	}
	return n, true
}
