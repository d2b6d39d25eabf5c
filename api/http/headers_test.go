package http_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/invdeploy/invdeploy/api"
	apihttp "github.com/invdeploy/invdeploy/api/http"
)

// keyRecorder is the fake service, recording the Idempotency-Key each
// write was given.
type keyRecorder struct {
	*fakeService
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) note(o api.WriteOptions) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if o.Idempotency != nil {
		k.keys = append(k.keys, o.Idempotency.Key)
	}
}

func (k *keyRecorder) CreateInvoice(ctx context.Context, in *api.InvoiceInput, o api.WriteOptions) (api.Outcome, error) {
	k.note(o)
	return k.fakeService.CreateInvoice(ctx, in, o)
}

func (k *keyRecorder) FinalizeInvoice(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	k.note(o)
	return k.fakeService.FinalizeInvoice(ctx, id, o)
}

func (k *keyRecorder) UpdateInvoice(ctx context.Context, id string, p *api.InvoicePatch, o api.WriteOptions) (api.Outcome, error) {
	k.note(o)
	return k.fakeService.UpdateInvoice(ctx, id, p, o)
}

func (k *keyRecorder) RecordPayment(ctx context.Context, id string, n int64, o api.WriteOptions) (api.Outcome, error) {
	k.note(o)
	return k.fakeService.RecordPayment(ctx, id, n, o)
}

func (k *keyRecorder) VoidInvoice(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	k.note(o)
	return k.fakeService.VoidInvoice(ctx, id, o)
}

func (k *keyRecorder) MarkUncollectible(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	k.note(o)
	return k.fakeService.MarkUncollectible(ctx, id, o)
}

func newKeyRecorder(t testing.TB) (*apihttp.Server, *keyRecorder) {
	t.Helper()
	_, fake := newFakeHandler(t)
	k := &keyRecorder{fakeService: fake}
	return apihttp.NewServer(apihttp.Config{Service: k, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}), k
}

// writeRoutes are the requests that take an Idempotency-Key.
func writeRoutes(id string) []struct{ method, path, body string } {
	return []struct{ method, path, body string }{
		{"POST", "/v1/invoices", threeLines},
		{"PATCH", "/v1/invoices/" + id, `{"memo":"m"}`},
		{"POST", "/v1/invoices/" + id + "/finalize", ""},
		{"POST", "/v1/invoices/" + id + "/payments", `{"amount":1}`},
		{"POST", "/v1/invoices/" + id + "/void", ""},
		{"POST", "/v1/invoices/" + id + "/mark_uncollectible", ""},
	}
}

// Two Idempotency-Key header lines, different or equal, are a 400
// idempotency_key_repeated on every write, and the service never sees the
// request; they used to be joined into the key "k1,k2". One line is taken
// whole, commas included.
func TestRepeatedIdempotencyKey(t *testing.T) {
	h, rec := newKeyRecorder(t)
	for _, rt := range writeRoutes(rec.inv.ID) {
		for _, lines := range [][]string{{"k1", "k2"}, {"k1", "k1"}, {"k1", "k2", "k3"}, {"", "k1"}} {
			r := httptest.NewRequest(rt.method, rt.path, strings.NewReader(rt.body))
			r.Header.Set("Content-Type", "application/json")
			r.Header["Idempotency-Key"] = lines
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var p map[string]any
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			if w.Code != http.StatusBadRequest || p["code"] != "idempotency_key_repeated" || p["status"] != float64(400) ||
				w.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(p["detail"].(string), "exactly one") {
				t.Errorf("%s %s with Idempotency-Key lines %q: %d %s", rt.method, rt.path, lines, w.Code, w.Body)
			}
		}
	}
	if len(rec.keys) != 0 {
		t.Fatalf("the service was called with keys %q", rec.keys)
	}
	// One line with a comma is one key, as sent.
	for _, rt := range writeRoutes(rec.inv.ID) {
		r := httptest.NewRequest(rt.method, rt.path, strings.NewReader(rt.body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", "order-1042,attempt-2")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusBadRequest || w.Code >= 500 {
			t.Errorf("%s %s with one key holding a comma: %d %s", rt.method, rt.path, w.Code, w.Body)
		}
	}
	for i, k := range rec.keys {
		if k != "order-1042,attempt-2" {
			t.Errorf("write %d got key %q", i, k)
		}
	}
	if len(rec.keys) != len(writeRoutes("")) {
		t.Errorf("%d writes saw a key, want %d", len(rec.keys), len(writeRoutes("")))
	}
}

// The same, over a real connection: two header lines on the wire.
func TestRepeatedIdempotencyKeyOnTheWire(t *testing.T) {
	h, _ := newKeyRecorder(t)
	ts := httptest.NewServer(h)
	defer ts.Close()
	r, err := http.NewRequest("POST", ts.URL+"/v1/invoices", strings.NewReader(threeLines))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Add("Idempotency-Key", "k1")
	r.Header.Add("Idempotency-Key", "k2")
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if err := validateResponse("POST", "/v1/invoices", res, b); err != nil {
		t.Errorf("does not match openapi.json: %v", err)
	}
	if res.StatusCode != 400 || !strings.Contains(string(b), `"code":"idempotency_key_repeated"`) {
		t.Fatalf("two Idempotency-Key lines: %d %s", res.StatusCode, b)
	}
}

// FuzzIdempotencyKeyHeaders: whatever Idempotency-Key lines a write
// carries, two or more are idempotency_key_repeated, one is the key as sent
// (or a 422 naming the header when it is not 1..255 printable characters),
// and nothing is a 5xx.
func FuzzIdempotencyKeyHeaders(f *testing.F) {
	for _, s := range []struct {
		k1, k2 string
		lines  uint8
	}{
		{"k1", "k2", 2}, {"k1", "k1", 2}, {"k1,k2", "", 1}, {"", "", 1}, {"k", "", 0},
		{strings.Repeat("x", 256), "", 1}, {"é", "", 1}, {"a\x00b", "", 1}, {" k ", "k", 3},
	} {
		f.Add(s.k1, s.k2, s.lines)
	}
	h, rec := newKeyRecorder(f)
	f.Fuzz(func(t *testing.T, k1, k2 string, lines uint8) {
		n := int(lines % 4)
		var values []string
		for i := range n {
			values = append(values, []string{k1, k2}[i%2])
		}
		rec.mu.Lock()
		rec.keys = nil
		rec.mu.Unlock()
		r := httptest.NewRequest("POST", "/v1/invoices", strings.NewReader(threeLines))
		r.Header.Set("Content-Type", "application/json")
		if n > 0 {
			r.Header["Idempotency-Key"] = values
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var p map[string]any
		if w.Code >= 400 {
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p["status"] != float64(w.Code) {
				t.Fatalf("%q -> %d without a problem: %s", values, w.Code, w.Body)
			}
		}
		switch {
		case n >= 2:
			if w.Code != 400 || p["code"] != "idempotency_key_repeated" {
				t.Fatalf("%q -> %d %s, want 400 idempotency_key_repeated", values, w.Code, w.Body)
			}
		case n == 1 && !api.ValidIdempotencyKey(k1):
			if w.Code != 422 || !strings.Contains(w.Body.String(), `"param":"Idempotency-Key"`) {
				t.Fatalf("%q -> %d %s, want 422 naming Idempotency-Key", values, w.Code, w.Body)
			}
		case n == 1:
			if w.Code != 201 || len(rec.keys) != 1 || rec.keys[0] != k1 {
				t.Fatalf("%q -> %d, service saw %q; want 201 with the key as sent", values, w.Code, rec.keys)
			}
		default:
			if w.Code != 201 || len(rec.keys) != 0 {
				t.Fatalf("no key -> %d, service saw %q", w.Code, rec.keys)
			}
		}
	})
}
