// Command invoicing-api serves the invoicing HTTP API on PostgreSQL.
//
//	invoicing-api [serve]            run the server (migrates the database first)
//	invoicing-api migrate            apply the embedded migrations and exit
//	invoicing-api healthcheck        exit 0 when the local server is ready (/readyz 200)
//	invoicing-api probe-ports PORT…  exit 1 listing the TCP ports already in use
//	invoicing-api version
//
// Configuration comes from the environment: DATABASE_URL (or
// DATABASE_URL_FILE, or libpq's PG* variables), DATABASE_PASSWORD (or
// DATABASE_PASSWORD_FILE), DATABASE_POOL_MAX_CONNS, DATABASE_TIMEOUT (default
// 5s), PORT (default 8000), SHUTDOWN_DELAY (default 1s), LOG_LEVEL (default
// info).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "invoicing-api:", err)
		os.Exit(1)
	}
}
