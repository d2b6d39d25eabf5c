package api

import (
	"errors"
	"net/url"
	"testing"
)

var bodySeeds = []string{
	`{"currency":"EUR","customer":{"name":"Ada","email":"ada@example.com"},"line_items":[{"description":"x","quantity":"1.5","unit_amount":999,"tax_rate":"20"}],"due_date":"2026-12-31","memo":"m","metadata":{"k":"v"}}`,
	`{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":9007199254740991},{"description":"y","quantity":1,"unit_amount":1}]}`,
	`{"currency":"eur","customer":null,"line_items":[{"quantity":1e3,"unit_amount":-1,"amount":5}],"total":1}`,
	`{"memo":null,"due_date":null,"metadata":null}`,
	`{"line_items":[{"description":"x","quantity":"0.0001","unit_amount":1,"tax_rate":"100"}]}`,
	`[]`, `{`, `"x"`, `{"a":1}{}`, `{"amount":12}`, `{"amount":1.0}`, ``,
	"{\"currency\":\"EUR\",\"customer\":{\"name\":\"\xff\xfe\"}}", `{"currency":"EUR","customer":{"name":"\ud800"}}`,
	`{"currency":"USD","currency":"EUR","customer":{"name":"A"}}`, `{"amount":1,"amount":2}`, `{"memo":"\udc00x"}`,
}

// checkParseError asserts a parser failed the way a client can act on.
func checkParseError(t *testing.T, err error) {
	var e *Error
	if !errors.As(err, &e) || (e.Code != EMALFORMED && e.Code != EVALIDATION) {
		t.Fatalf("want malformed_json or validation_failed, got %#v", err)
	}
	if e.Code == EVALIDATION && len(e.Fields) == 0 {
		t.Fatal("validation error without fields")
	}
}

// FuzzParseInvoiceInput: decoding and validation never panic; accepted
// input always prices without error and adds up.
func FuzzParseInvoiceInput(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := ParseInvoiceInput(body)
		if err != nil {
			checkParseError(t, err)
			return
		}
		inv, err := NewInvoice(in, Now())
		if err != nil {
			t.Fatalf("accepted input does not price: %v", err)
		}
		var sum, tax int64
		for _, l := range inv.LineItems {
			sum += l.Amount
			tax += l.TaxAmount
		}
		if sum != inv.Subtotal || tax != inv.Tax || inv.Total != sum+tax || inv.Total > MaxAmount || len(inv.LineItems) > MaxLineItems {
			t.Fatalf("totals do not add up: %+v", inv)
		}
	})
}

// FuzzParseInvoicePatch: the same for partial updates, applied to a draft.
func FuzzParseInvoicePatch(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseInvoicePatch(body)
		if err != nil {
			checkParseError(t, err)
			return
		}
		inv := &Invoice{Status: StatusDraft, Currency: "EUR", Version: 1, Metadata: map[string]string{}}
		if _, err := inv.ApplyPatch(p, Now()); err != nil {
			t.Fatalf("accepted patch does not apply to a draft: %v", err)
		}
	})
}

func FuzzParsePayment(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParsePayment(body)
		if err != nil {
			checkParseError(t, err)
			return
		}
		if n < 1 || n > MaxAmount {
			t.Fatalf("accepted amount %d", n)
		}
	})
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"1", "1.5", "0.0001", "99999999999999.9999", "1.23456", "-1", "1e3", "", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDecimal(s)
		if err != nil {
			return
		}
		back, err := ParseDecimal(d.String())
		if err != nil || back != d || d.scaled < 0 {
			t.Fatalf("%q -> %q -> %v, %v", s, d.String(), back, err)
		}
	})
}

func FuzzParseListFilter(f *testing.F) {
	for _, s := range []string{"limit=5", "limit=101", "starting_after=c1z&status=open", "customer_email=a@b.c", "limit=1&limit=2", "x=1", "starting_after=c0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		lf, err := ParseListFilter(v)
		if err != nil {
			checkParseError(t, err)
			return
		}
		if lf.Limit < 1 || lf.Limit > MaxListLimit || (lf.Status != "" && !ValidStatus(lf.Status)) {
			t.Fatalf("accepted %+v", lf)
		}
		if lf.StartingAfter != "" {
			if _, ok := DecodeCursor(lf.StartingAfter); !ok {
				t.Fatalf("accepted cursor %q", lf.StartingAfter)
			}
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 35, 36, 1 << 40, 1<<63 - 1} {
		if got, ok := DecodeCursor(EncodeCursor(n)); !ok || got != n {
			t.Errorf("cursor %d -> %s -> %d %v", n, EncodeCursor(n), got, ok)
		}
	}
	for _, bad := range []string{"", "c", "c0", "x1", "c-1", "c01", "cZZ", "inv_abc"} {
		if _, ok := DecodeCursor(bad); ok {
			t.Errorf("DecodeCursor(%q) accepted", bad)
		}
	}
}

func TestStateMachine(t *testing.T) {
	now := Now()
	type step func(inv *Invoice) ([]string, error)
	finalize := func(inv *Invoice) ([]string, error) { return inv.Finalize(7, now) }
	pay := func(n int64) step { return func(inv *Invoice) ([]string, error) { return inv.RecordPayment(n, now) } }
	void := func(inv *Invoice) ([]string, error) { return inv.Void(now) }
	uncollectible := func(inv *Invoice) ([]string, error) { return inv.MarkUncollectible(now) }
	allowed := map[Status]map[string]bool{
		StatusDraft:         {"finalize": true},
		StatusOpen:          {"pay": true, "void": true, "uncollectible": true},
		StatusUncollectible: {"pay": true, "void": true},
		StatusPaid:          {},
		StatusVoid:          {},
	}
	for from, ok := range allowed {
		for name, s := range map[string]step{"finalize": finalize, "pay": pay(1), "void": void, "uncollectible": uncollectible} {
			inv := &Invoice{Status: from, Total: 10, AmountDue: 10, Version: 1}
			_, err := s(inv)
			if ok[name] != (err == nil) {
				t.Errorf("%s from %s: err %v, allowed %v", name, from, err, ok[name])
			}
			if err != nil && ErrorCode(err) != EINVALIDSTATE {
				t.Errorf("%s from %s: code %s", name, from, ErrorCode(err))
			}
			if err == nil && inv.Version != 2 {
				t.Errorf("%s from %s: version %d", name, from, inv.Version)
			}
		}
	}
	inv := &Invoice{Status: StatusOpen, Total: 10, AmountDue: 10, Version: 1}
	if _, err := pay(11)(inv); ErrorCode(err) != EVALIDATION {
		t.Fatalf("overpayment: %v", err)
	}
	ev, _ := pay(10)(inv)
	if inv.Status != StatusPaid || len(ev) != 2 || ev[1] != EventPaid || inv.PaidAt == nil {
		t.Fatalf("full payment: %+v %v", inv, ev)
	}
	if FormatNumber(7) != "INV-000007" || FormatNumber(1234567) != "INV-1234567" {
		t.Fatal("FormatNumber")
	}
}
