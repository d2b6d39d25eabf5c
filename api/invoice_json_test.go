package api

import (
	"encoding/json"
	"testing"
	"time"
)

// plainInvoice has Invoice's fields and tags but not its MarshalJSON, so
// encoding/json encodes it by reflection: the reference AppendJSON must match.
type plainInvoice Invoice

func checkInvoiceJSON(t *testing.T, inv *Invoice) {
	t.Helper()
	want, err := json.Marshal((*plainInvoice)(inv))
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("AppendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
	}
	if got, err := json.Marshal(inv); err != nil || string(got) != string(want) {
		t.Fatalf("json.Marshal(*Invoice) = %s, %v; want %s", got, err, want)
	}
}

func sampleInvoice() *Invoice {
	num, email, due, memo := "INV-000042", "ada@example.com", "2026-12-31", "Thanks!"
	at := time.Date(2026, 12, 1, 23, 14, 4, 0, time.UTC)
	return &Invoice{
		ID: "inv_abcdefghijklmnopqrstuvwx", Number: &num, Status: StatusOpen, Currency: "EUR",
		Customer: Customer{Name: "Ada <Lovelace> & Co", Email: &email},
		LineItems: []LineItem{
			{Description: "Consulting", Quantity: MustDecimal("1.5"), UnitAmount: 10000, TaxRate: MustDecimal("20"), Amount: 15000, TaxAmount: 3000},
			{Description: "Book \"x\"\n\t\u2028é", Quantity: MustDecimal("0.0001"), UnitAmount: 0, TaxRate: MustDecimal("7.25"), Amount: 0, TaxAmount: 0},
		},
		Subtotal: 15000, Tax: 3000, Total: 18000, AmountPaid: 100, AmountDue: 17900, DueDate: &due, Memo: &memo,
		Metadata: map[string]string{"z": "1", "a": "\x00\x1f\x7f", "m": "\xff\xfe bad utf-8"},
		Version:  7, CreatedAt: at, UpdatedAt: at.Add(time.Second), FinalizedAt: &at, PaidAt: nil, VoidedAt: &at,
	}
}

func TestInvoiceJSONMatchesEncodingJSON(t *testing.T) {
	checkInvoiceJSON(t, sampleInvoice())
	checkInvoiceJSON(t, &Invoice{})                                                       // nil slices, maps and pointers
	checkInvoiceJSON(t, &Invoice{LineItems: []LineItem{}, Metadata: map[string]string{}}) // empty ones
	many := sampleInvoice()
	for i := 0; i < 40; i++ {
		many.Metadata[string(rune('A'+i))+"key"] = "v"
	}
	checkInvoiceJSON(t, many)
}

// FuzzInvoiceJSON: for any strings, numbers and times a client or the
// database can put in an invoice, AppendJSON writes what encoding/json does.
func FuzzInvoiceJSON(f *testing.F) {
	f.Add("Ada", "desc", "memo", "key", "value", int64(15000), int64(12345), int64(1764630844), int64(0))
	f.Add("<&>\u2028\u2029", "\x00\b\f\n\r\t\"\\", "\xff", "\xed\xa0\x80", "é€😀", int64(-1), int64(1), int64(0), int64(999999999))
	f.Fuzz(func(t *testing.T, name, desc, memo, key, value string, amount, scaled, unix, nanos int64) {
		inv := sampleInvoice()
		inv.Customer.Name, inv.Memo = name, &memo
		inv.LineItems[0].Description, inv.LineItems[0].Amount = desc, amount
		if scaled >= 0 {
			inv.LineItems[1].Quantity = Decimal{scaled: scaled}
		}
		inv.Metadata[key] = value
		at := time.Unix(int64(uint64(unix)%253402300799), nanos%1e9).UTC() // years 1969..9999: encoding/json refuses others
		inv.CreatedAt, inv.PaidAt = at, &at
		checkInvoiceJSON(t, inv)
	})
}
