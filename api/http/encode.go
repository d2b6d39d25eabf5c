package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/invdeploy/invdeploy/api"
)

// statusOf maps every error code to its HTTP status.
var statusOf = map[string]int{
	api.EMALFORMED:         http.StatusBadRequest,
	api.ENOTFOUND:          http.StatusNotFound,
	api.EMETHOD:            http.StatusMethodNotAllowed,
	api.EINVALIDSTATE:      http.StatusConflict,
	api.EIDEMPOTENCYINUSE:  http.StatusConflict,
	api.EPRECONDITION:      http.StatusPreconditionFailed,
	api.ETOOLARGE:          http.StatusRequestEntityTooLarge,
	api.EUNSUPPORTEDMEDIA:  http.StatusUnsupportedMediaType,
	api.EVALIDATION:        http.StatusUnprocessableEntity,
	api.EIDEMPOTENCYREUSED: http.StatusUnprocessableEntity,
	api.EINTERNAL:          http.StatusInternalServerError,
	api.EUNAVAILABLE:       http.StatusServiceUnavailable,

	api.EIDEMPOTENCYREPEATED: http.StatusBadRequest,
}

// titleOf is the short, code-specific summary of each problem type.
var titleOf = map[string]string{
	api.EMALFORMED:         "Malformed JSON",
	api.ENOTFOUND:          "Not found",
	api.EMETHOD:            "Method not allowed",
	api.EINVALIDSTATE:      "Invalid state",
	api.EIDEMPOTENCYINUSE:  "Idempotency key in use",
	api.EPRECONDITION:      "Precondition failed",
	api.ETOOLARGE:          "Payload too large",
	api.EUNSUPPORTEDMEDIA:  "Unsupported media type",
	api.EVALIDATION:        "Validation failed",
	api.EIDEMPOTENCYREUSED: "Idempotency key reused",
	api.EINTERNAL:          "Internal error",
	api.EUNAVAILABLE:       "Service unavailable",

	api.EIDEMPOTENCYREPEATED: "Idempotency key repeated",
}

// RetryAfterSeconds is the Retry-After of a 503: the database restarts or
// fails over in seconds, and a short wait spreads the clients' retries.
const RetryAfterSeconds = "2"

// problem is an RFC 9457 problem details object with our extensions.
type problem struct {
	Type      string           `json:"type"`
	Title     string           `json:"title"`
	Status    int              `json:"status"`
	Detail    string           `json:"detail"`
	Code      string           `json:"code"`
	RequestID string           `json:"request_id"`
	Errors    []api.FieldError `json:"errors,omitempty"`
}

// ProblemTypeBase prefixes the code in a problem's type URI.
const ProblemTypeBase = "urn:invdeploy:problem:"

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes err as a problem. Errors that are not *api.Error are
// logged and hidden behind a generic 500: no internals reach a client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if clientClosed(r, err) {
		// Nobody is left to read an answer, and nothing is broken: record
		// it as nginx's 499, not as a 5xx that pages someone.
		s.logger.InfoContext(r.Context(), "client_closed", "request_id", requestID(r.Context()), "error", err.Error())
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	switch api.ErrorCode(err) {
	case api.EINTERNAL:
		s.logger.ErrorContext(r.Context(), "request failed", "request_id", requestID(r.Context()), "error", err.Error())
	case api.EUNAVAILABLE:
		// Expected while the database restarts: a warning, and a hint
		// to the client of when to try again.
		if cause := errors.Unwrap(err); cause != nil {
			s.logger.WarnContext(r.Context(), "service unavailable", "request_id", requestID(r.Context()), "error", cause.Error())
		}
		w.Header().Set("Retry-After", RetryAfterSeconds)
	}
	status, b := renderProblem(r, err)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// StatusClientClosedRequest is the status recorded (in metrics and logs)
// for a request whose client disconnected before it was answered.
const StatusClientClosedRequest = 499

// errBodyCut is a body that ended before its Content-Length (or last
// chunk): the client closed the connection while sending it.
var errBodyCut = errors.New("the client closed the connection while sending the body")

// clientClosed reports whether err is the server failing because the
// client went away (its request's context was canceled), rather than a
// refusal or a fault of ours.
func clientClosed(r *http.Request, err error) bool {
	if errors.Is(err, errBodyCut) {
		return true
	}
	if !errors.Is(r.Context().Err(), context.Canceled) {
		return false
	}
	code := api.ErrorCode(err)
	return code == api.EINTERNAL || code == api.EUNAVAILABLE
}

// renderProblem is the status and RFC 9457 body of err for request r.
func renderProblem(r *http.Request, err error) (int, []byte) {
	code := api.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	p := problem{
		Type:      ProblemTypeBase + code,
		Title:     titleOf[code],
		Status:    status,
		Detail:    api.ErrorMessage(err),
		Code:      code,
		RequestID: requestID(r.Context()),
	}
	var e *api.Error
	if errors.As(err, &e) {
		p.Errors = e.Fields
	}
	b, _ := json.Marshal(p)
	return status, b
}

// bodyBuffers recycles response buffers: an invoice body is built by
// appending (api.Invoice.AppendJSON), so a warm buffer makes it allocation-free.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeBody writes a JSON body built by appendBody, with its length, from a
// pooled buffer.
func writeBody(w http.ResponseWriter, status int, appendBody func([]byte) []byte) {
	bp := bodyBuffers.Get().(*[]byte)
	b := appendBody((*bp)[:0])
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	if cap(b) <= 64<<10 { // a rare huge page is left to the GC
		*bp = b
		bodyBuffers.Put(bp)
	}
}

// writeInvoice writes an invoice with its ETag.
func writeInvoice(w http.ResponseWriter, status int, inv *api.Invoice) {
	w.Header().Set("ETag", api.ETag(inv.Version))
	writeBody(w, status, inv.AppendJSON)
}

// writePage writes a page of invoices: {"data":[...],"has_more":...,"next_cursor":...}.
func writePage(w http.ResponseWriter, page *api.InvoicePage) {
	writeBody(w, http.StatusOK, func(b []byte) []byte {
		b = append(b, `{"data":[`...)
		for i, inv := range page.Data {
			if i > 0 {
				b = append(b, ',')
			}
			b = inv.AppendJSON(b)
		}
		b = append(b, `],"has_more":`...)
		b = strconv.AppendBool(b, page.HasMore)
		b = append(b, `,"next_cursor":`...)
		if page.NextCursor == nil {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendQuote(b, *page.NextCursor) // "c" + base 36 digits: nothing to escape
		}
		return append(b, '}')
	})
}

// writeOutcome writes the result of a change, or replays a stored one.
func writeOutcome(w http.ResponseWriter, status int, out api.Outcome) {
	if rp := out.Replay; rp != nil {
		h := w.Header()
		h.Set("Idempotent-Replayed", "true")
		if rp.ETag != "" {
			h.Set("ETag", rp.ETag)
		}
		if rp.Location != "" {
			h.Set("Location", rp.Location)
		}
		if rp.Status >= 400 {
			h.Set("Content-Type", "application/problem+json")
		} else {
			h.Set("Content-Type", "application/json")
		}
		w.WriteHeader(rp.Status)
		_, _ = w.Write(rp.Body)
		return
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/invoices/"+out.Invoice.ID)
	}
	writeInvoice(w, status, out.Invoice)
}

// jsonMediaTypes are the Content-Types accepted for bodies.
var jsonMediaTypes = map[string]bool{"application/json": true}

// patchMediaTypes: PATCH replaces each top-level field given as a whole, so
// JSON Merge Patch (application/merge-patch+json, which merges nested
// objects such as customer and metadata) is refused rather than applied
// with other semantics than the client asked for.
var patchMediaTypes = jsonMediaTypes

// readBody reads a request body of at most MaxBodyBytes. A required body
// must carry one of the accepted media types; an optional one (actions) may
// be empty, and is checked only when present.
func readBody(r *http.Request, accepted map[string]bool, required bool) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	if required {
		if err := checkMediaType(ct, accepted); err != nil {
			return nil, err
		}
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, api.Errorf(api.ETOOLARGE, "The body must be at most %d bytes.", MaxBodyBytes)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errBodyCut
	}
	if err != nil {
		return nil, api.Errorf(api.EMALFORMED, "The body could not be read.")
	}
	if len(b) > MaxBodyBytes {
		return nil, api.Errorf(api.ETOOLARGE, "The body must be at most %d bytes.", MaxBodyBytes)
	}
	if !required && len(b) > 0 {
		if err := checkMediaType(ct, accepted); err != nil {
			return nil, err
		}
	}
	if required && len(bytes.TrimSpace(b)) == 0 {
		return nil, api.Errorf(api.EMALFORMED, "The body is empty; send a JSON object.")
	}
	return b, nil
}

func checkMediaType(ct string, accepted map[string]bool) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && accepted[mt] {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return api.Errorf(api.EUNSUPPORTEDMEDIA, "Send the body as Content-Type: application/json.")
}

// writeOptions reads If-Match and Idempotency-Key. The fingerprint of an
// idempotent request covers its method, path and meaning: request is the
// decoded, validated body (nil when there is none), so a retry that differs
// only in whitespace, key order, escapes or number spelling ("1" or 1) is
// the same request.
func writeOptions(r *http.Request, request any, status int) (api.WriteOptions, error) {
	var opts api.WriteOptions
	if v := r.Header.Values("If-Match"); len(v) > 0 {
		opts.IfMatch = parseETags(strings.Join(v, ","))
	}
	if v, ok := r.Header[http.CanonicalHeaderKey("Idempotency-Key")]; ok && r.Method != http.MethodDelete {
		// The key is one opaque value, not a list (RFC 9110 5.3): two
		// lines, even equal ones, are refused rather than joined into a
		// key the client never sent ("k1,k2"). One line is taken whole,
		// commas included, as DESIGN's 1..255 characters allow.
		if len(v) > 1 {
			return opts, api.Errorf(api.EIDEMPOTENCYREPEATED,
				"The request carries %d Idempotency-Key headers; send exactly one.", len(v))
		}
		key := v[0]
		if !api.ValidIdempotencyKey(key) {
			return opts, &api.Error{Code: api.EVALIDATION, Message: "The request is invalid; see errors.",
				Fields: []api.FieldError{{Param: "Idempotency-Key", Code: "invalid_value", Detail: "must be 1 to 255 printable ASCII characters"}}}
		}
		h := sha256.New()
		h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
		if request != nil {
			if err := json.NewEncoder(h).Encode(request); err != nil {
				return opts, fmt.Errorf("fingerprint the request: %w", err)
			}
		}
		opts.Idempotency = &api.Idempotency{Key: key, Fingerprint: h.Sum(nil),
			Respond: func(inv *api.Invoice, err error) api.Replay { return storedResponse(r, status, inv, err) }}
	}
	return opts, nil
}

// storedResponse is the response kept for an Idempotency-Key and replayed
// to retries: what the first request answered, status, headers and body.
func storedResponse(r *http.Request, status int, inv *api.Invoice, err error) api.Replay {
	if err != nil {
		code, body := renderProblem(r, err)
		return api.Replay{Status: code, Body: body}
	}
	body, merr := json.Marshal(inv)
	if merr != nil {
		code, body := renderProblem(r, merr)
		return api.Replay{Status: code, Body: body}
	}
	rp := api.Replay{Status: status, Body: body, ETag: api.ETag(inv.Version)}
	if status == http.StatusCreated {
		rp.Location = "/v1/invoices/" + inv.ID
	}
	return rp
}

// parseETags splits an If-Match / If-None-Match list into its tags.
func parseETags(v string) []string {
	tags := []string{}
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

// noneMatch reports whether If-None-Match matches etag (weak comparison).
func noneMatch(header, etag string) bool {
	for _, t := range parseETags(header) {
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
