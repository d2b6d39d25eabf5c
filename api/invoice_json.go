package api

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the wire form of inv to b: byte for byte what
// encoding/json makes of the struct tags (field order, HTML-safe string
// escapes, sorted metadata keys, null for nil), without reflection. The
// invoice is the body of nearly every response, and reflection-based
// encoding was a measurable share of each request's CPU (make bench-api).
// TestInvoiceJSONMatchesEncodingJSON and its fuzz target hold the two equal.
func (inv *Invoice) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, inv.ID)
	b = append(b, `,"number":`...)
	b = appendJSONStringPtr(b, inv.Number)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(inv.Status))
	b = append(b, `,"currency":`...)
	b = appendJSONString(b, inv.Currency)
	b = append(b, `,"customer":{"name":`...)
	b = appendJSONString(b, inv.Customer.Name)
	b = append(b, `,"email":`...)
	b = appendJSONStringPtr(b, inv.Customer.Email)
	b = append(b, `},"line_items":`...)
	if inv.LineItems == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range inv.LineItems {
			if i > 0 {
				b = append(b, ',')
			}
			b = inv.LineItems[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = appendJSONInt(b, `,"subtotal":`, inv.Subtotal)
	b = appendJSONInt(b, `,"tax":`, inv.Tax)
	b = appendJSONInt(b, `,"total":`, inv.Total)
	b = appendJSONInt(b, `,"amount_paid":`, inv.AmountPaid)
	b = appendJSONInt(b, `,"amount_due":`, inv.AmountDue)
	b = append(b, `,"due_date":`...)
	b = appendJSONStringPtr(b, inv.DueDate)
	b = append(b, `,"memo":`...)
	b = appendJSONStringPtr(b, inv.Memo)
	b = append(b, `,"metadata":`...)
	b = appendJSONStringMap(b, inv.Metadata)
	b = appendJSONInt(b, `,"version":`, inv.Version)
	b = append(b, `,"created_at":`...)
	b = appendJSONTime(b, inv.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendJSONTime(b, inv.UpdatedAt)
	b = append(b, `,"finalized_at":`...)
	b = appendJSONTimePtr(b, inv.FinalizedAt)
	b = append(b, `,"paid_at":`...)
	b = appendJSONTimePtr(b, inv.PaidAt)
	b = append(b, `,"voided_at":`...)
	b = appendJSONTimePtr(b, inv.VoidedAt)
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler with AppendJSON, so every encoder
// of an invoice (stored idempotent replies included) writes the same bytes.
func (inv *Invoice) MarshalJSON() ([]byte, error) { return inv.AppendJSON(make([]byte, 0, 1024)), nil }

func (l *LineItem) appendJSON(b []byte) []byte {
	b = append(b, `{"description":`...)
	b = appendJSONString(b, l.Description)
	b = append(b, `,"quantity":"`...)
	b = l.Quantity.appendTo(b)
	b = appendJSONInt(b, `","unit_amount":`, l.UnitAmount)
	b = append(b, `,"tax_rate":"`...)
	b = l.TaxRate.appendTo(b)
	b = appendJSONInt(b, `","amount":`, l.Amount)
	b = appendJSONInt(b, `,"tax_amount":`, l.TaxAmount)
	return append(b, '}')
}

// appendTo appends the canonical form of d (see String) without allocating.
func (d Decimal) appendTo(b []byte) []byte {
	ip, fp := d.scaled/decimalScale, d.scaled%decimalScale
	b = strconv.AppendInt(b, ip, 10)
	if fp == 0 {
		return b
	}
	b = append(b, '.')
	for scale := int64(decimalScale / 10); fp > 0; scale /= 10 {
		b = append(b, byte('0'+fp/scale))
		fp %= scale
	}
	return b
}

func appendJSONInt(b []byte, key string, n int64) []byte {
	return strconv.AppendInt(append(b, key...), n, 10)
}

func appendJSONStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendJSONTimePtr(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	return appendJSONTime(b, *t)
}

func appendJSONStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json writes as they are: not a
// control character, quote, backslash, or one of the HTML-significant <, >, &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s as a JSON string the way encoding/json.Marshal
// does: HTML-safe, invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
