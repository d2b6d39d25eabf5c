package http_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/invdeploy/invdeploy/api"
	apihttp "github.com/invdeploy/invdeploy/api/http"
)

// fakeService is an in-memory stand-in: the fuzz test exercises our
// decoding, validation and error mapping, not the database.
type fakeService struct{ inv *api.Invoice }

func (f *fakeService) CreateInvoice(_ context.Context, in *api.InvoiceInput, _ api.WriteOptions) (api.Outcome, error) {
	inv, err := api.NewInvoice(in, api.Now())
	return api.Outcome{Invoice: inv}, err
}

func (f *fakeService) FindInvoice(_ context.Context, id string) (*api.Invoice, error) {
	if id != f.inv.ID {
		return nil, api.Errorf(api.ENOTFOUND, "no invoice")
	}
	c := *f.inv
	return &c, nil
}

func (f *fakeService) ListInvoices(context.Context, api.ListFilter) (*api.InvoicePage, error) {
	return &api.InvoicePage{Data: []*api.Invoice{f.inv}}, nil
}

func (f *fakeService) mutate(id string, opts api.WriteOptions, fn func(*api.Invoice) error) (api.Outcome, error) {
	inv, err := f.FindInvoice(context.Background(), id)
	if err != nil {
		return api.Outcome{}, err
	}
	if !api.MatchETag(opts.IfMatch, inv.Version) {
		return api.Outcome{}, api.Errorf(api.EPRECONDITION, "mismatch")
	}
	return api.Outcome{Invoice: inv}, fn(inv)
}

func (f *fakeService) UpdateInvoice(_ context.Context, id string, p *api.InvoicePatch, o api.WriteOptions) (api.Outcome, error) {
	return f.mutate(id, o, func(inv *api.Invoice) error { _, err := inv.ApplyPatch(p, api.Now()); return err })
}

func (f *fakeService) DeleteInvoice(_ context.Context, id string, o api.WriteOptions) error {
	_, err := f.mutate(id, o, func(inv *api.Invoice) error { return inv.CheckDeletable() })
	return err
}

func (f *fakeService) FinalizeInvoice(_ context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	return f.mutate(id, o, func(inv *api.Invoice) error { _, err := inv.Finalize(1, api.Now()); return err })
}

func (f *fakeService) RecordPayment(_ context.Context, id string, n int64, o api.WriteOptions) (api.Outcome, error) {
	return f.mutate(id, o, func(inv *api.Invoice) error { _, err := inv.RecordPayment(n, api.Now()); return err })
}

func (f *fakeService) VoidInvoice(_ context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	return f.mutate(id, o, func(inv *api.Invoice) error { _, err := inv.Void(api.Now()); return err })
}

func (f *fakeService) MarkUncollectible(_ context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	return f.mutate(id, o, func(inv *api.Invoice) error { _, err := inv.MarkUncollectible(api.Now()); return err })
}

func (f *fakeService) ListEvents(_ context.Context, id string) ([]api.Event, error) {
	if _, err := f.FindInvoice(context.Background(), id); err != nil {
		return nil, err
	}
	return []api.Event{}, nil
}

func (f *fakeService) Ready(context.Context) error { return nil }

func newFakeHandler(t testing.TB) (*apihttp.Server, *fakeService) {
	in, err := api.ParseInvoiceInput([]byte(threeLines))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := api.NewInvoice(in, api.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeService{inv: inv}
	return apihttp.NewServer(apihttp.Config{Service: f, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}), f
}

// FuzzRequests: whatever method, path, headers and body a client sends, the
// server answers without a 5xx, and every error is a problem document.
func FuzzRequests(f *testing.F) {
	for _, s := range []struct{ method, path, ct, ifMatch, body string }{
		{"POST", "/v1/invoices", "application/json", "", threeLines},
		{"POST", "/v1/invoices", "text/plain", "", "x"},
		{"PATCH", "/v1/invoices/ID", "application/merge-patch+json", `"v1"`, `{"memo":null,"line_items":[]}`},
		{"PATCH", "/v1/invoices/ID", "application/json", `W/"v1"`, `{"total":1}`},
		{"POST", "/v1/invoices/ID/payments", "application/json", "*", `{"amount":99999999999999999999}`},
		{"POST", "/v1/invoices/ID/finalize", "", "", ""},
		{"DELETE", "/v1/invoices/ID", "", `"v2"`, ""},
		{"GET", "/v1/invoices?limit=3&starting_after=c1&status=open", "", "", ""},
		{"GET", "/v1/invoices/ID/events", "", "", ""},
		{"POST", "/v1/invoices/ID/void", "application/json", "", `{"a":[`},
		{"POST", "/v1/invoices", "application/json", "", "{\"currency\":\"EUR\",\"customer\":{\"name\":\"\xff\xfe\"}}"},
		{"POST", "/v1/invoices", "application/json", "", `{"currency":"EUR","customer":{"name":"\ud800"}}`},
		{"PATCH", "/v1/invoices/ID", "application/json", "", `{"memo":"\udc00\ud800"}`},
		{"POST", "/v1/invoices", "application/json", "", `{"currency":"USD","currency":"EUR","customer":{"name":"A"}}`},
		{"PATCH", "/v1/invoices/ID", "application/json", "", `{"metadata":{"k":"1","\u006b":"2"}}`},
		{"POST", "/v1/invoices/ID/payments", "application/json", "", `{"amount":1,"amount":1}`},
		{"HEAD", "/v1/invoices/ID", "", "", ""},
	} {
		f.Add(s.method, s.path, s.ct, s.ifMatch, []byte(s.body))
	}
	h, fake := newFakeHandler(f)
	f.Fuzz(func(t *testing.T, method, path, ct, ifMatch string, body []byte) {
		path = strings.ReplaceAll(path, "ID", fake.inv.ID)
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		r, err := http.NewRequest(method, "http://x"+path, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		r.Header.Set("Content-Type", ct)
		if ifMatch != "" {
			r.Header.Set("If-Match", ifMatch)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s -> %d %s", method, path, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var p map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p["code"] == nil || p["status"] != float64(w.Code) {
				t.Fatalf("%s %s -> %d without a problem: %s", method, path, w.Code, w.Body)
			}
		}
	})
}

// Every route the router serves is documented in openapi.json, and every
// documented path is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		Info  struct{ Description string } `json:"info"`
		Paths map[string]map[string]any    `json:"paths"`
	}
	if err := json.Unmarshal(apihttp.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc.Info.Description, "HEAD") {
		t.Error("openapi.json does not say that HEAD is answered wherever GET is")
	}
	h, fake := newFakeHandler(t)
	served := map[string]bool{}
	err := chi.Walk(apihttp.Router(h), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+route] = true
		// HEAD is served wherever GET is, as the document's description
		// says, with GET's status (TestHead checks the rest).
		if method == http.MethodGet {
			path := strings.ReplaceAll(route, "{id}", fake.inv.ID)
			get, head := httptest.NewRecorder(), httptest.NewRecorder()
			h.ServeHTTP(get, httptest.NewRequest(http.MethodGet, path, nil))
			h.ServeHTTP(head, httptest.NewRequest(http.MethodHead, path, nil))
			if head.Code != get.Code {
				t.Errorf("HEAD %s: %d, GET: %d", route, head.Code, get.Code)
			}
		}
		if doc.Paths[route][strings.ToLower(method)] == nil {
			t.Errorf("%s %s is served but not in openapi.json", method, route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if !served[strings.ToUpper(m)+" "+p] {
				t.Errorf("openapi.json documents %s %s, which is not served", m, p)
			}
		}
	}
}
