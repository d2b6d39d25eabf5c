package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/invdeploy/invdeploy/api"
)

// Failures of the database's availability become service_unavailable (503
// with Retry-After); everything else keeps its own code.
func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: syscall.ECONNREFUSED.Error()}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"starting up 57P03", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, api.EUNAVAILABLE},
		{"admin shutdown 57P01", &pgconn.PgError{Code: "57P01"}, api.EUNAVAILABLE},
		{"crash shutdown 57P02", &pgconn.PgError{Code: "57P02"}, api.EUNAVAILABLE},
		{"too many connections", &pgconn.PgError{Code: "53300"}, api.EUNAVAILABLE},
		{"connection failure 08006", &pgconn.PgError{Code: "08006"}, api.EUNAVAILABLE},
		{"connection refused", fmt.Errorf("begin: %w", refused), api.EUNAVAILABLE},
		{"dns failure of db", &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, api.EUNAVAILABLE},
		{"unexpected EOF", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), api.EUNAVAILABLE},
		{"conn closed", fmt.Errorf("commit: %w", pgconn.ErrConnClosed), api.EUNAVAILABLE},
		{"pool closed", puddle.ErrClosedPool, api.EUNAVAILABLE},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), api.EUNAVAILABLE},
		{"statement timeout 57014", &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"}, api.EUNAVAILABLE},
		{"unique violation", &pgconn.PgError{Code: "23505"}, api.EINTERNAL},
		{"syntax error", &pgconn.PgError{Code: "42601"}, api.EINTERNAL},
		{"a bug", errors.New("decode line items: bad"), api.EINTERNAL},
		{"client went away", fmt.Errorf("lock invoice: %w", context.Canceled), api.EINTERNAL},
		{"a refusal", api.Errorf(api.EINVALIDSTATE, "no"), api.EINVALIDSTATE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if code := api.ErrorCode(got); code != tc.want {
				t.Fatalf("classify(%v) = %s, want %s", tc.err, code, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Fatalf("the cause is lost: %v", got)
			}
			if tc.want == api.EUNAVAILABLE && api.ErrorMessage(got) == tc.err.Error() {
				t.Fatalf("driver text reaches the client: %q", api.ErrorMessage(got))
			}
		})
	}
	if classify(nil) != nil {
		t.Fatal("classify(nil) is not nil")
	}
}
