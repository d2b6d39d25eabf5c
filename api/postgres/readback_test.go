package postgres_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/invdeploy/invdeploy/api"
)

// TestReadBackEveryField: what the read path decodes (line-item arrays,
// metadata, nullable columns) is exactly what was written, through get, list
// and a change, byte for byte in the wire form.
func TestReadBackEveryField(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for _, body := range []string{
		`{"currency":"EUR","customer":{"name":"Ada <&>","email":"ada@example.com"},"due_date":"2026-12-31","memo":"m\n\u2028",
			"metadata":{"order":"42","z":"é","a":""},
			"line_items":[{"description":"a","quantity":"1.0001","unit_amount":999,"tax_rate":"20.5"},
				{"description":"b","quantity":2,"unit_amount":0},{"description":"c","quantity":"0.5","unit_amount":3,"tax_rate":"100"}]}`,
		`{"currency":"USD","customer":{"name":"No lines"}}`,
	} {
		in, err := api.ParseInvoiceInput([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.CreateInvoice(ctx, in, api.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := string(out.Invoice.AppendJSON(nil))
		got, err := s.FindInvoice(ctx, out.Invoice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if g := string(got.AppendJSON(nil)); g != want {
			t.Fatalf("read back\n got %s\nwant %s", g, want)
		}
		page, err := s.ListInvoices(ctx, api.ListFilter{Limit: 1})
		if err != nil || len(page.Data) != 1 || string(page.Data[0].AppendJSON(nil)) != want {
			t.Fatalf("list: %v %+v", err, page)
		}
		// mutate reads the row through the same path before changing it.
		fin, err := s.FinalizeInvoice(ctx, out.Invoice.ID, api.WriteOptions{})
		if err != nil {
			if len(out.Invoice.LineItems) == 0 && api.ErrorCode(err) == api.EINVALIDSTATE {
				continue // an invoice without lines cannot be finalized
			}
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fin.Invoice.LineItems, out.Invoice.LineItems) || !reflect.DeepEqual(fin.Invoice.Metadata, out.Invoice.Metadata) {
			t.Fatalf("finalize read back lines %+v metadata %v, want %+v %v", fin.Invoice.LineItems, fin.Invoice.Metadata,
				out.Invoice.LineItems, out.Invoice.Metadata)
		}
	}
}
