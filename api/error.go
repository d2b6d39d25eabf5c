// Package api is the invoicing domain: invoices, their money math and state
// machine, the validation of what clients send, and the service contract the
// adapters implement (api/postgres) and expose (api/http). It knows nothing
// about HTTP or SQL.
package api

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in api/http; clients branch on them.
const (
	ENOTFOUND          = "not_found"
	EINVALIDSTATE      = "invalid_state"
	EVALIDATION        = "validation_failed"
	EMALFORMED         = "malformed_json"
	EPRECONDITION      = "precondition_failed"
	EIDEMPOTENCYINUSE  = "idempotency_key_in_use"
	EIDEMPOTENCYREUSED = "idempotency_key_reused"
	EUNSUPPORTEDMEDIA  = "unsupported_media_type"
	ETOOLARGE          = "payload_too_large"
	EMETHOD            = "method_not_allowed"
	EUNAVAILABLE       = "service_unavailable"
	EINTERNAL          = "internal"

	// EIDEMPOTENCYREPEATED is a request with more than one Idempotency-Key
	// header line: which key the client meant is unknown.
	EIDEMPOTENCYREPEATED = "idempotency_key_repeated"
)

// Error is an error a client can act on: a code from the list above, a
// message safe to show, and for validation the fields at fault.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
	// Cause is what went wrong underneath (say, the database error behind
	// service_unavailable), for the log only: never shown to a client.
	Cause error
}

// FieldError names one invalid part of a request. Param is a path such as
// line_items[2].quantity.
type FieldError struct {
	Param  string `json:"param"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Error implements error.
func (e *Error) Error() string {
	if len(e.Fields) > 0 {
		return fmt.Sprintf("%s: %s (%s: %s)", e.Code, e.Message, e.Fields[0].Param, e.Fields[0].Detail)
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause, so errors.Is sees through an *Error.
func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the client-safe message of err: the message of an
// *Error, or a generic sentence for anything else (internal detail never
// reaches a client).
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "An internal error occurred."
}
