package http

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/api"
)

// TestWritePageMatchesEncodingJSON: the hand-built list body is what
// encoding/json made of the page before, and carries a correct length.
func TestWritePageMatchesEncodingJSON(t *testing.T) {
	memo := "a <b> & \"c\""
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	inv := func(id string) *api.Invoice {
		return &api.Invoice{ID: id, Status: api.StatusDraft, Currency: "USD", Customer: api.Customer{Name: "N"},
			LineItems: []api.LineItem{{Description: "d", Quantity: api.MustDecimal("2.5"), UnitAmount: 3, TaxRate: api.MustDecimal("0")}},
			Memo:      &memo, Metadata: map[string]string{"k": "v"}, Version: 1, CreatedAt: at, UpdatedAt: at}
	}
	cursor := api.EncodeCursor(12345)
	for _, page := range []*api.InvoicePage{
		{Data: []*api.Invoice{}},
		{Data: []*api.Invoice{inv("inv_a")}},
		{Data: []*api.Invoice{inv("inv_a"), inv("inv_b")}, HasMore: true, NextCursor: &cursor},
	} {
		want, err := json.Marshal(struct {
			Data       []*api.Invoice `json:"data"`
			HasMore    bool           `json:"has_more"`
			NextCursor *string        `json:"next_cursor"`
		}{page.Data, page.HasMore, page.NextCursor})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		writePage(rec, page)
		if got := rec.Body.String(); got != string(want) {
			t.Fatalf("page body\n got %s\nwant %s", got, want)
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(want)) {
			t.Fatalf("Content-Length %q for %d bytes", cl, len(want))
		}
	}
}
