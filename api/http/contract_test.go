package http_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/invdeploy/invdeploy/api"
)

const threeLines = `{"currency":"EUR","customer":{"name":"Ada Lovelace","email":"ada@example.com"},
	"line_items":[
		{"description":"Consulting","quantity":"1.5","unit_amount":10000,"tax_rate":"20"},
		{"description":"Travel","quantity":3,"unit_amount":333,"tax_rate":"20"},
		{"description":"Book","quantity":1,"unit_amount":1999,"tax_rate":"7.5"}],
	"due_date":"2026-12-31","memo":"Thanks","metadata":{"order":"42"}}`

func (e *env) create(body string) resp {
	e.t.Helper()
	return e.want(e.do(req{method: "POST", route: "/v1/invoices", body: body}), 201)
}

func TestPlainEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.want(e.do(req{method: "GET", route: "/"}), 200); string(r.body) != "Welcome to the Invoicing API!" {
		t.Fatalf("welcome: %q", r.body)
	}
	e.want(e.do(req{method: "GET", route: "/healthz"}), 200)
	e.want(e.do(req{method: "GET", route: "/readyz"}), 200)
	if r := e.want(e.do(req{method: "GET", route: "/openapi.json"}), 200); r.str("openapi") != "3.1.0" {
		t.Fatalf("openapi.json: %s", r.body[:80])
	}
	e.create(threeLines)
	e.want(e.do(req{method: "GET", route: "/nope"}), 404, "not_found")
	if r := e.want(e.do(req{method: "PUT", route: "/v1/invoices"}), 405, "method_not_allowed"); strings.Join(r.header.Values("Allow"), ",") != "GET,HEAD,POST" {
		t.Errorf("405 Allow = %q, want GET,HEAD,POST", r.header.Values("Allow"))
	}
	e.want(e.do(req{method: "BREW", route: "/v1/invoices"}), 405, "method_not_allowed")
	m := e.want(e.do(req{method: "GET", route: "/metrics"}), 200)
	for _, s := range []string{
		`invoicing_http_requests_total{method="POST",route="/v1/invoices",status="201"} 1`,
		`invoicing_http_request_duration_seconds_bucket{method="GET",route="/healthz",status="200",le="+Inf"} 1`,
		`invoicing_invoices_created_total 1`,
		`invoicing_invoices_finalized_total 0`,
		`invoicing_http_requests_total{method="OTHER",route="unmatched",status="405"} 1`,
	} {
		if !strings.Contains(string(m.body), s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
	// One JSON log line per request with id, method, route, status, duration.
	if !strings.Contains(e.logs.String(), `"msg":"request","request_id":"req_`) ||
		!strings.Contains(e.logs.String(), `"route":"/v1/invoices","path":"/v1/invoices","status":201,"duration_ms":`) {
		t.Errorf("request log lines lack fields:\n%s", e.logs.String())
	}
}

func TestCreateComputesMoney(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.create(threeLines)
	id := r.str("id")
	if r.header.Get("Location") != "/v1/invoices/"+id || r.header.Get("ETag") != `"v1"` {
		t.Fatalf("headers: %v", r.header)
	}
	// 1.5 x 10000 = 15000; 3 x 333 = 999 (20%: 15999 x 0.2 = 3199.8 -> 3200,
	// split 3000.0 / 199.8 -> 3000 / 200); 1999 at 7.5% = 149.925 -> 150.
	for path, want := range map[string]string{
		"status": "draft", "number": "<nil>", "subtotal": "17998", "tax": "3350", "total": "21348",
		"amount_paid": "0", "amount_due": "21348", "version": "1", "due_date": "2026-12-31",
		"line_items.0.amount": "15000", "line_items.0.tax_amount": "3000", "line_items.0.quantity": "1.5",
		"line_items.1.amount": "999", "line_items.1.tax_amount": "200", "line_items.1.quantity": "3",
		"line_items.2.amount": "1999", "line_items.2.tax_amount": "150", "line_items.2.tax_rate": "7.5",
		"customer.email": "ada@example.com", "metadata.order": "42", "finalized_at": "<nil>",
	} {
		if got := r.str(strings.Split(path, ".")...); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	g := e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id}), 200)
	if string(g.body) != string(r.body) || g.header.Get("ETag") != `"v1"` {
		t.Fatalf("GET differs from POST:\n%s\n%s", g.body, r.body)
	}
	for _, inm := range []string{`"v1"`, `W/"v1"`, `"v9", "v1"`, `*`} {
		n := e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id, header: map[string]string{"If-None-Match": inm}}), 304)
		if n.header.Get("ETag") != `"v1"` || len(n.body) != 0 {
			t.Fatalf("304 for %s: %v %q", inm, n.header, n.body)
		}
	}
	e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id, header: map[string]string{"If-None-Match": `"v2"`}}), 200)
	e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: "inv_missing"}), 404, "not_found")
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	line := func(extra string) string {
		return `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":1` + extra + `}]}`
	}
	many := func(n int, f func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return strings.Join(parts, ",")
	}
	for _, tc := range []struct{ name, body, param, code string }{
		{"unknown field", `{"currency":"EUR","customer":{"name":"A"},"colour":"red"}`, "colour", "unknown_field"},
		{"computed total", `{"currency":"EUR","customer":{"name":"A"},"total":5}`, "total", "read_only"},
		{"computed status", `{"currency":"EUR","customer":{"name":"A"},"status":"paid"}`, "status", "read_only"},
		{"computed line amount", line(`,"amount":1`), "line_items[0].amount", "read_only"},
		{"missing currency", `{"customer":{"name":"A"}}`, "currency", "required"},
		{"lower-case currency", `{"currency":"eur","customer":{"name":"A"}}`, "currency", "invalid_value"},
		{"unknown currency", `{"currency":"ZZZ","customer":{"name":"A"}}`, "currency", "invalid_value"},
		{"missing customer", `{"currency":"EUR"}`, "customer", "required"},
		{"empty name", `{"currency":"EUR","customer":{"name":" "}}`, "customer.name", "required"},
		{"bad email", `{"currency":"EUR","customer":{"name":"A","email":"nope"}}`, "customer.email", "invalid_value"},
		{"zero quantity", line(`,"quantity":0`)[0:0] + `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":"0","unit_amount":1}]}`, "line_items[0].quantity", "out_of_range"},
		{"5 decimals", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":"1.23456","unit_amount":1}]}`, "line_items[0].quantity", "invalid_value"},
		{"float quantity", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1.5,"unit_amount":1}]}`, "line_items[0].quantity", "invalid_value"},
		{"negative quantity", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":-2,"unit_amount":1}]}`, "line_items[0].quantity", "out_of_range"},
		{"negative unit", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":-1}]}`, "line_items[0].unit_amount", "out_of_range"},
		{"fractional unit", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":1.5}]}`, "line_items[0].unit_amount", "invalid_type"},
		{"rate over 100", line(`,"tax_rate":"100.0001"`), "line_items[0].tax_rate", "out_of_range"},
		{"numeric rate", line(`,"tax_rate":20`), "line_items[0].tax_rate", "invalid_type"},
		{"missing description", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"quantity":1,"unit_amount":1}]}`, "line_items[0].description", "required"},
		{"101 lines", `{"currency":"EUR","customer":{"name":"A"},"line_items":[` + many(101, func(int) string { return `{"description":"x","quantity":1,"unit_amount":1}` }) + `]}`, "line_items", "too_many"},
		{"51 metadata keys", `{"currency":"EUR","customer":{"name":"A"},"metadata":{` + many(51, func(i int) string { return fmt.Sprintf(`"k%d":"v"`, i) }) + `}}`, "metadata", "too_many"},
		{"metadata key 41", `{"currency":"EUR","customer":{"name":"A"},"metadata":{"` + strings.Repeat("k", 41) + `":"v"}}`, "metadata", "invalid_value"},
		{"metadata value 501", `{"currency":"EUR","customer":{"name":"A"},"metadata":{"k":"` + strings.Repeat("v", 501) + `"}}`, "metadata.k", "too_long"},
		{"metadata number", `{"currency":"EUR","customer":{"name":"A"},"metadata":{"k":1}}`, "metadata.k", "invalid_type"},
		{"bad due date", `{"currency":"EUR","customer":{"name":"A"},"due_date":"2026-02-30"}`, "due_date", "invalid_value"},
		{"year zero due date", `{"currency":"EUR","customer":{"name":"A"},"due_date":"0000-01-01"}`, "due_date", "invalid_value"},
		{"line overflow", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":"99999999999999","unit_amount":9007199254740991}]}`, "line_items[0]", "overflow"},
		{"sum overflow", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":9007199254740991},{"description":"y","quantity":1,"unit_amount":1}]}`, "line_items", "overflow"},
		{"unit beyond 2^53", `{"currency":"EUR","customer":{"name":"A"},"line_items":[{"description":"x","quantity":1,"unit_amount":9007199254740992}]}`, "line_items[0].unit_amount", "overflow"},
		{"array body", `[1]`, "body", "invalid_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: "POST", route: "/v1/invoices", body: tc.body})
			if r.status != 422 || r.str("code") != "validation_failed" || r.str("type") != "urn:invdeploy:problem:validation_failed" {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			found := false
			for i := 0; r.str("errors", fmt.Sprint(i), "param") != "<nil>"; i++ {
				if r.str("errors", fmt.Sprint(i), "param") == tc.param && r.str("errors", fmt.Sprint(i), "code") == tc.code {
					found = true
				}
			}
			if !found {
				t.Fatalf("no error {param %s, code %s} in %s", tc.param, tc.code, r.body)
			}
		})
	}
	// Payment amounts.
	id := e.create(threeLines).str("id")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id}), 200)
	for _, body := range []string{`{"amount":0}`, `{"amount":-5}`, `{"amount":"5"}`, `{}`, `{"amount":1,"currency":"EUR"}`, `{"amount":21349}`} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: id, body: body}), 422, "validation_failed")
	}
	// List parameters.
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "status=paidish", "starting_after=inv_x", "sort=asc"} {
		e.want(e.do(req{method: "GET", route: "/v1/invoices", query: q}), 422, "validation_failed")
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, body := range []string{`{`, `{"currency":}`, `{"a":1}{"b":2}`, `nul`, ` `} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices", body: body}), 400, "malformed_json")
	}
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: map[string]string{"Content-Type": ct}}), 415, "unsupported_media_type")
	}
	big := `{"currency":"EUR","customer":{"name":"A"},"memo":"` + strings.Repeat("x", 1<<20) + `"}`
	e.want(e.do(req{method: "POST", route: "/v1/invoices", body: big}), 413, "payload_too_large")
	id := e.create(threeLines).str("id")
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: big}), 413, "payload_too_large")
	// PATCH replaces top-level fields whole: a Merge Patch client would
	// lose nested fields, so that media type is refused.
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"m"}`, header: map[string]string{"Content-Type": "application/merge-patch+json"}}), 415, "unsupported_media_type")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, body: `{"x":1}`}), 422, "validation_failed")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, body: `x`, header: map[string]string{"Content-Type": "text/plain"}}), 415, "unsupported_media_type")
	for _, p := range []string{"/v1/invoices/{id}", "/v1/invoices/{id}/events"} {
		e.want(e.do(req{method: "GET", route: p, id: "inv_unknown"}), 404, "not_found")
	}
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: "inv_unknown", body: `{}`}), 404, "not_found")
	e.want(e.do(req{method: "DELETE", route: "/v1/invoices/{id}", id: "inv_unknown"}), 404, "not_found")
	for _, a := range []string{"finalize", "void", "mark_uncollectible"} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/" + a, id: "inv_unknown"}), 404, "not_found")
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: "inv_unknown", body: `{"amount":1}`}), 404, "not_found")
	// Problems carry the request id of the X-Request-Id header.
	r := e.do(req{method: "GET", route: "/v1/invoices/{id}", id: "inv_unknown", header: map[string]string{"X-Request-Id": "abc-123"}})
	if r.str("request_id") != "abc-123" || r.header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("request id not echoed: %s", r.body)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(threeLines).str("id")
	post := func(action string, body any, hdr map[string]string) resp {
		return e.do(req{method: "POST", route: "/v1/invoices/{id}/" + action, id: id, body: body, header: hdr})
	}
	// Draft: any field, totals recomputed, nulls clear.
	p := e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"currency":"USD","customer":{"name":"Bob"},
		"line_items":[{"description":"x","quantity":"0.3333","unit_amount":3}],"due_date":null,"memo":null,"metadata":{"a":"b"}}`}), 200)
	if p.str("currency") != "USD" || p.str("total") != "1" || p.str("due_date") != "<nil>" || p.str("memo") != "<nil>" ||
		p.str("customer", "email") != "<nil>" || p.str("version") != "2" || p.header.Get("ETag") != `"v2"` || p.str("metadata") != `{"a":"b"}` {
		t.Fatalf("patch draft: %s", p.body)
	}
	e.want(post("payments", `{"amount":1}`, nil), 409, "invalid_state")
	e.want(post("void", nil, nil), 409, "invalid_state")
	e.want(post("mark_uncollectible", nil, nil), 409, "invalid_state")
	f := e.want(post("finalize", nil, nil), 200)
	if f.str("status") != "open" || !strings.HasPrefix(f.str("number"), "INV-") || f.str("finalized_at") == "<nil>" {
		t.Fatalf("finalize: %s", f.body)
	}
	e.want(post("finalize", nil, nil), 409, "invalid_state")
	// Open: memo and metadata only.
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"late","metadata":{"x":"y"}}`}), 200)
	for _, b := range []string{`{"currency":"EUR"}`, `{"line_items":[]}`, `{"customer":{"name":"C"}}`, `{"due_date":"2027-01-01"}`} {
		e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: b}), 409, "invalid_state")
	}
	e.want(e.do(req{method: "DELETE", route: "/v1/invoices/{id}", id: id}), 409, "invalid_state")
	e.want(post("mark_uncollectible", nil, nil), 200)
	pay := e.want(post("payments", map[string]int{"amount": 1}, nil), 200)
	if pay.str("status") != "paid" || pay.str("amount_due") != "0" || pay.str("amount_paid") != "1" || pay.str("paid_at") == "<nil>" {
		t.Fatalf("payment: %s", pay.body)
	}
	e.want(post("void", nil, nil), 409, "invalid_state")
	ev := e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}/events", id: id}), 200)
	var types []string
	for i := 0; ev.str("data", fmt.Sprint(i), "type") != "<nil>"; i++ {
		types = append(types, ev.str("data", fmt.Sprint(i), "type")+"@"+ev.str("data", fmt.Sprint(i), "version"))
	}
	want := "invoice.created@1 invoice.updated@2 invoice.finalized@3 invoice.updated@4 invoice.marked_uncollectible@5 invoice.payment_recorded@6 invoice.paid@6"
	if strings.Join(types, " ") != want {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(types, " "), want)
	}

	// Partial payments, then void from open.
	id2 := e.create(threeLines).str("id")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id2}), 200)
	r := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: id2, body: `{"amount":1348}`}), 200)
	if r.str("status") != "open" || r.str("amount_due") != "20000" {
		t.Fatalf("partial payment: %s", r.body)
	}
	v := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id2, body: `{}`}), 200)
	if v.str("status") != "void" || v.str("voided_at") == "<nil>" {
		t.Fatalf("void: %s", v.body)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: id2, body: `{"amount":1}`}), 409, "invalid_state")
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id2, body: `{"memo":"void but annotated"}`}), 200)

	// Uncollectible -> void; a zero total is paid on finalization.
	id3 := e.create(threeLines).str("id")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id3}), 200)
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/mark_uncollectible", id: id3}), 200)
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/mark_uncollectible", id: id3}), 409, "invalid_state")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id3}), 200)
	zero := e.create(`{"currency":"JPY","customer":{"name":"Z"}}`).str("id")
	if z := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: zero}), 200); z.str("status") != "paid" {
		t.Fatalf("zero-total finalize: %s", z.body)
	}
	// Delete a draft; it is gone.
	d := e.create(threeLines).str("id")
	e.want(e.do(req{method: "DELETE", route: "/v1/invoices/{id}", id: d}), 204)
	e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}", id: d}), 404, "not_found")
	e.want(e.do(req{method: "DELETE", route: "/v1/invoices/{id}", id: d}), 404, "not_found")
	// Numbers: 1..3 in order of finalization.
	for i, x := range []string{id, id2, id3} {
		if n := e.do(req{method: "GET", route: "/v1/invoices/{id}", id: x}).str("number"); n != api.FormatNumber(int64(i+1)) {
			t.Errorf("invoice %d number %s", i, n)
		}
	}
}

func TestPreconditions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(threeLines).str("id")
	stale := map[string]string{"If-Match": `"v0"`}
	weak := map[string]string{"If-Match": `W/"v1"`}
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"a"}`, header: stale}), 412, "precondition_failed")
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"a"}`, header: weak}), 412, "precondition_failed")
	e.want(e.do(req{method: "DELETE", route: "/v1/invoices/{id}", id: id, header: stale}), 412, "precondition_failed")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, header: stale}), 412, "precondition_failed")
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"a"}`, header: map[string]string{"If-Match": `"v1"`}}), 200)
	// Two clients both edit version 2: the second is refused, not silently lost.
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"first"}`, header: map[string]string{"If-Match": `"v2"`}}), 200)
	e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: `{"memo":"second"}`, header: map[string]string{"If-Match": `"v2"`}}), 412, "precondition_failed")
	f := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, header: map[string]string{"If-Match": `"v9", "v3"`}}), 200)
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: id, body: `{"amount":1}`, header: stale}), 412, "precondition_failed")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/mark_uncollectible", id: id, header: stale}), 412, "precondition_failed")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id, header: stale}), 412, "precondition_failed")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id, header: map[string]string{"If-Match": "*"}}), 200)
	if f.str("memo") != "first" {
		t.Fatalf("memo %s", f.str("memo"))
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := map[string]string{"Idempotency-Key": "create-1"}
	first := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}), 201)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first response marked replayed")
	}
	again := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}), 201)
	if again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) ||
		again.header.Get("Location") != first.header.Get("Location") || again.header.Get("ETag") != first.header.Get("ETag") {
		t.Fatalf("replay differs:\n%v %s\n%v %s", first.header, first.body, again.header, again.body)
	}
	// The same request spelled differently (keys in another order, no
	// whitespace, an escaped letter, a quantity as a string) is the same
	// request: it replays.
	sameMeaning := `{"metadata":{"order":"42"},"memo":"Thanks","due_date":"2026-12-31","line_items":[` +
		`{"tax_rate":"20","unit_amount":10000,"quantity":"1.5","description":"Consulting"},` +
		`{"description":"Travel","quantity":"3","unit_amount":333,"tax_rate":"20"},` +
		`{"description":"Book","quantity":1,"unit_amount":1999,"tax_rate":"7.5"}],` +
		`"customer":{"email":"ada@example.com","name":"\u0041da Lovelace"},"currency":"EUR"}`
	same := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: sameMeaning, header: key}), 201)
	if same.header.Get("Idempotent-Replayed") != "true" || string(same.body) != string(first.body) {
		t.Fatalf("the same request reformatted was not replayed: %v %s", same.header, same.body)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices", body: strings.Replace(threeLines, "Thanks", "Cheers", 1), header: key}), 422, "idempotency_key_reused")
	e.want(e.do(req{method: "POST", route: "/v1/invoices", body: strings.Replace(sameMeaning, `"quantity":"3"`, `"quantity":"3.5"`, 1), header: key}), 422, "idempotency_key_reused")
	list := e.want(e.do(req{method: "GET", route: "/v1/invoices"}), 200)
	if list.str("data", "1") != "<nil>" {
		t.Fatalf("retries created more than one invoice: %s", list.body)
	}
	// Actions: a retried payment is recorded once.
	id := first.str("id")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, header: map[string]string{"Idempotency-Key": "fin"}}), 200)
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id, header: map[string]string{"Idempotency-Key": "fin"}}), 200)
	pk := map[string]string{"Idempotency-Key": "pay-1"}
	for range 3 {
		e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/payments", id: id, body: `{"amount":100}`, header: pk}), 200)
	}
	if g := e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id}); g.str("amount_paid") != "100" {
		t.Fatalf("payment retried three times, amount_paid %s", g.str("amount_paid"))
	}
	// Same key, different endpoint: a different request.
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id, header: pk}), 422, "idempotency_key_reused")
	// Invalid keys.
	for _, k := range []string{strings.Repeat("k", 256)} {
		e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: map[string]string{"Idempotency-Key": k}}), 422, "validation_failed")
	}
	// While the first request with a key runs (its lock held), a retry is 409.
	ctx := context.Background()
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7301, hashtext('busy'))`); err != nil {
		t.Fatal(err)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: map[string]string{"Idempotency-Key": "busy"}}), 409, "idempotency_key_in_use")
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(7301, hashtext('busy'))`); err != nil {
		t.Fatal(err)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: map[string]string{"Idempotency-Key": "busy"}}), 201)
	// Keys expire after 24 hours: then the key starts afresh.
	if _, err := e.pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'create-1'`); err != nil {
		t.Fatal(err)
	}
	fresh := e.want(e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: key}), 201)
	if fresh.header.Get("Idempotent-Replayed") != "" || fresh.str("id") == id {
		t.Fatalf("expired key replayed: %s", fresh.body)
	}
}

// A refusal decided by the invoice (wrong state) is the response to that
// request: a retry with the same key gets it again, even after the invoice
// changed.
func TestIdempotentRefusalsReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(threeLines).str("id")
	vk := map[string]string{"Idempotency-Key": "void-draft"}
	first := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id, header: vk}), 409, "invalid_state")
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first refusal marked replayed")
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id}), 200)
	again := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id, header: vk}), 409, "invalid_state")
	if again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) ||
		again.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("refusal not replayed:\n%v %s\n%v %s", first.header, first.body, again.header, again.body)
	}
	if g := e.do(req{method: "GET", route: "/v1/invoices/{id}", id: id}); g.str("status") != "open" {
		t.Fatalf("the replayed void changed the invoice: %s", g.body)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/void", id: id, header: map[string]string{"Idempotency-Key": "void-open"}}), 200)

	// A 412 is not stored: after refetching, the client retries with the
	// same key and the current If-Match, and that retry runs.
	id2 := e.create(threeLines).str("id")
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id2, header: map[string]string{"Idempotency-Key": "fin-2", "If-Match": `"v7"`}}), 412, "precondition_failed")
	f := e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id2, header: map[string]string{"Idempotency-Key": "fin-2", "If-Match": `"v1"`}}), 200)
	if f.header.Get("Idempotent-Replayed") != "" || f.str("number") != "INV-000002" {
		t.Fatalf("retry after a 412: replayed %q, number %s", f.header.Get("Idempotent-Replayed"), f.str("number"))
	}
}

func TestConcurrentIdempotentCreates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 20
	var wg sync.WaitGroup
	results := make([]resp, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = e.do(req{method: "POST", route: "/v1/invoices", body: threeLines, header: map[string]string{"Idempotency-Key": "race"}})
		}()
	}
	close(start)
	wg.Wait()
	ids := map[string]bool{}
	for _, r := range results {
		switch {
		case r.status == 201:
			ids[r.str("id")] = true
		case r.status == 409 && r.str("code") == "idempotency_key_in_use":
		default:
			t.Fatalf("unexpected response %d %s", r.status, r.body)
		}
	}
	var count int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM invoices`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 1 || len(ids) != 1 {
		t.Fatalf("%d racing requests with one key: %d invoices stored, ids answered %v", n, count, ids)
	}
}

func TestConcurrentFinalize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.create(threeLines).str("id")
	}
	var wg sync.WaitGroup
	numbers := make([]string, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: ids[i]})
			if r.status != 200 {
				t.Errorf("finalize %d: %d %s", i, r.status, r.body)
			}
			numbers[i] = r.str("number")
		}()
	}
	close(start)
	wg.Wait()
	sort.Strings(numbers)
	for i, num := range numbers {
		if want := api.FormatNumber(int64(i + 1)); num != want {
			t.Fatalf("numbers not contiguous and unique: %v", numbers)
		}
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ids []string
	for i := range 7 {
		body := strings.Replace(threeLines, "ada@example.com", fmt.Sprintf("c%d@example.com", i%2), 1)
		ids = append(ids, e.create(body).str("id"))
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: ids[0]}), 200)
	e.want(e.do(req{method: "DELETE", route: "/v1/invoices/{id}", id: ids[3]}), 204)
	// Pages of 2, newest first, deletion does not break the cursor.
	var got []string
	query := "limit=2"
	for range 10 {
		r := e.want(e.do(req{method: "GET", route: "/v1/invoices", query: query}), 200)
		for i := 0; r.str("data", fmt.Sprint(i), "id") != "<nil>"; i++ {
			got = append(got, r.str("data", fmt.Sprint(i), "id"))
		}
		if r.str("has_more") != "true" {
			if r.str("next_cursor") != "<nil>" {
				t.Fatalf("last page has a cursor: %s", r.body)
			}
			break
		}
		query = "limit=2&starting_after=" + r.str("next_cursor")
	}
	want := []string{ids[6], ids[5], ids[4], ids[2], ids[1], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages:\n got %v\nwant %v", got, want)
	}
	def := e.want(e.do(req{method: "GET", route: "/v1/invoices"}), 200)
	if def.str("has_more") != "false" || def.str("data", "5", "id") != ids[0] {
		t.Fatalf("default limit 10: %s", def.str("has_more"))
	}
	open := e.want(e.do(req{method: "GET", route: "/v1/invoices", query: "status=open"}), 200)
	if open.str("data", "0", "id") != ids[0] || open.str("data", "1") != "<nil>" {
		t.Fatalf("status filter: %s", open.body)
	}
	byEmail := e.want(e.do(req{method: "GET", route: "/v1/invoices", query: "customer_email=C1@example.com&limit=100"}), 200)
	if byEmail.str("data", "0", "id") != ids[5] || byEmail.str("data", "1", "id") != ids[1] || byEmail.str("data", "2") != "<nil>" {
		t.Fatalf("email filter: %s", byEmail.body)
	}
	_ = http.StatusOK
}

// A PATCH that changes nothing ({} or the current values) answers 200 with
// the same version and ETag and records no event: other clients' If-Match
// stays valid.
func TestNoOpPatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(threeLines).str("id")
	patch := func(body string, hdr map[string]string) resp {
		return e.want(e.do(req{method: "PATCH", route: "/v1/invoices/{id}", id: id, body: body, header: hdr}), 200)
	}
	same := `{"currency":"EUR","customer":{"email":"ada@example.com","name":"Ada Lovelace"},
		"line_items":[
			{"description":"Consulting","quantity":"1.50","unit_amount":10000,"tax_rate":"20.0"},
			{"description":"Travel","quantity":"3","unit_amount":333,"tax_rate":"20"},
			{"description":"Book","quantity":1,"unit_amount":1999,"tax_rate":"7.5"}],
		"due_date":"2026-12-31","memo":"Thanks","metadata":{"order":"42"}}`
	for _, body := range []string{`{}`, same, `{"memo":"Thanks"}`} {
		r := patch(body, map[string]string{"If-Match": `"v1"`})
		if r.str("version") != "1" || r.header.Get("ETag") != `"v1"` {
			t.Fatalf("PATCH %s changed the version: %s %s", body, r.header.Get("ETag"), r.body)
		}
	}
	if r := patch(`{"memo":"Changed"}`, nil); r.str("version") != "2" || r.header.Get("ETag") != `"v2"` {
		t.Fatalf("a real change: %s", r.body)
	}
	e.want(e.do(req{method: "POST", route: "/v1/invoices/{id}/finalize", id: id}), 200)
	if r := patch(`{"memo":"Changed","metadata":{"order":"42"}}`, map[string]string{"If-Match": `"v3"`}); r.str("version") != "3" {
		t.Fatalf("a no-op PATCH of an open invoice: %s", r.body)
	}
	ev := e.want(e.do(req{method: "GET", route: "/v1/invoices/{id}/events", id: id}), 200)
	var types []string
	for i := 0; ev.str("data", fmt.Sprint(i), "type") != "<nil>"; i++ {
		types = append(types, ev.str("data", fmt.Sprint(i), "type"))
	}
	if got := strings.Join(types, " "); got != "invoice.created invoice.updated invoice.finalized" {
		t.Fatalf("events %s, want one update only", got)
	}
}

// HEAD answers like GET on every GET route (RFC 9110 9.3.2): same status
// and headers, no body; it is counted under its own method.
func TestHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.create(threeLines).str("id")
	send := func(method, path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		r, err := http.NewRequest(method, e.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	for _, p := range []string{"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/invoices", "/v1/invoices?limit=1&status=draft",
		"/v1/invoices/" + id, "/v1/invoices/" + id + "/events", "/v1/invoices/inv_unknown", "/v1/invoices?limit=0"} {
		get, gb := send("GET", p, nil)
		head, hb := send("HEAD", p, nil)
		if head.StatusCode != get.StatusCode || len(hb) != 0 || len(gb) == 0 ||
			head.Header.Get("Content-Type") != get.Header.Get("Content-Type") || head.Header.Get("ETag") != get.Header.Get("ETag") {
			t.Errorf("HEAD %s: %d %v %q; GET: %d %v", p, head.StatusCode, head.Header, hb, get.StatusCode, get.Header)
		}
	}
	if res, _ := send("HEAD", "/v1/invoices/"+id, map[string]string{"If-None-Match": `"v1"`}); res.StatusCode != 304 {
		t.Errorf("HEAD with a matching If-None-Match: %d, want 304", res.StatusCode)
	}
	if res, _ := send("HEAD", "/v1/invoices/"+id+"/finalize", nil); res.StatusCode != 405 || strings.Join(res.Header.Values("Allow"), ",") != "POST" {
		t.Errorf("HEAD on a POST route: %d Allow %v, want 405 Allow POST", res.StatusCode, res.Header.Values("Allow"))
	}
	if _, m := send("GET", "/metrics", nil); !strings.Contains(string(m), `invoicing_http_requests_total{method="HEAD",route="/v1/invoices/{id}",status="200"} 1`) {
		t.Errorf("HEAD is not counted under its method and route:\n%s", m)
	}
}
