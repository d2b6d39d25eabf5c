package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/invdeploy/invdeploy/api"
)

// dbError wraps err from operation op and classifies it (see classify).
func dbError(op string, err error) error {
	return classify(fmt.Errorf("%s: %w", op, err))
}

// classify is the one place that decides which failures are the database's
// availability: when err says it cannot be reached or is not taking work
// right now (down, restarting, starting up, out of connections, the pool
// shut down), the result is service_unavailable, which clients get as a 503
// to retry rather than a 500. Other errors are returned as they are.
func classify(err error) error {
	var e *api.Error
	if err == nil || errors.As(err, &e) || !unavailable(err) {
		return err // nothing, already decided (a refusal), or a real failure
	}
	return &api.Error{Code: api.EUNAVAILABLE, Message: "The database is unavailable right now; retry in a few seconds.", Cause: err}
}

// unavailableStates are the SQLSTATEs of a server that refuses work for now.
var unavailableStates = map[string]bool{
	"57P01": true, // admin_shutdown: the server is stopping (or a restart)
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: the server is starting up
	"53300": true, // too_many_connections
	"25006": true, // read_only_sql_transaction: a standby after a failover
	"57014": true, // query_canceled: statement_timeout (see boundWaits) ended it
}

// unavailable reports whether err means the database could not do the work
// for reasons of availability, not of the request.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the client went away; api/http records that
	}
	var (
		pgErr   *pgconn.PgError
		connErr *pgconn.ConnectError
		opErr   *net.OpError
		dnsErr  *net.DNSError
	)
	switch {
	case errors.As(err, &pgErr):
		return unavailableStates[pgErr.Code] || len(pgErr.Code) == 5 && pgErr.Code[:2] == "08" // connection exception class
	case errors.As(err, &connErr), errors.As(err, &opErr), errors.As(err, &dnsErr):
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, puddle.ErrClosedPool) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}
