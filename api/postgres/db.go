// Package postgres stores invoices in PostgreSQL through pgx (pgxpool) and
// implements api.InvoiceService. Schema migrations are embedded and applied
// with goose under a Postgres advisory lock, so replicas may start together.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Env reads configuration: getenv looks a variable up, readFile reads a
// *_FILE secret.
type Env struct {
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
}

// secret returns $NAME, or the content of the file named by $NAME_FILE
// (trailing newline trimmed). Errors name the variable, never the value.
func (e Env) secret(name string) (string, error) {
	v := e.Getenv(name)
	f := e.Getenv(name + "_FILE")
	if v != "" && f != "" {
		return "", fmt.Errorf("set %s or %s_FILE, not both", name, name)
	}
	if f == "" {
		return v, nil
	}
	b, err := e.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("read %s_FILE: %w", name, errors.Unwrap(err))
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ParseConfig builds the pool configuration from DATABASE_URL (or
// DATABASE_URL_FILE; without either, libpq's PG* variables and defaults
// apply) and DATABASE_PASSWORD (or DATABASE_PASSWORD_FILE), which overrides
// any password in the URL. Errors never contain the URL or the password.
func ParseConfig(env Env) (*pgxpool.Config, error) {
	dsn, err := env.secret("DATABASE_URL")
	if err != nil {
		return nil, err
	}
	password, err := env.secret("DATABASE_PASSWORD")
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the (best-effort redacted) string: keep it out.
		return nil, errors.New("DATABASE_URL is not a valid connection string; expected postgres://USER@HOST:PORT/DB?sslmode=disable")
	}
	if password != "" {
		cfg.ConnConfig.Password = password
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "invoicing-api"
	}
	return cfg, nil
}

// Redact replaces every secret of cfg (password, and the whole connection
// string) in msg, for the rare error text that could echo one.
func Redact(cfg *pgxpool.Config, msg string) string {
	if cfg == nil {
		return msg
	}
	for _, s := range []string{cfg.ConnString(), cfg.ConnConfig.Password} {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[REDACTED]")
		}
	}
	return msg
}

func newProvider(pool *pgxpool.Pool) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("create migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), sub,
		goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// Migrate applies the embedded migrations that are not applied yet, holding
// a Postgres advisory lock so concurrent starts apply each exactly once. It
// returns the number applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	p, err := newProvider(pool)
	if err != nil {
		return 0, err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	return len(res), nil
}

// LatestVersion is the version of the newest embedded migration.
func LatestVersion() int64 {
	entries, _ := migrations.ReadDir("migrations")
	var v int64
	for _, e := range entries {
		var n int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &n); err == nil && n > v {
			v = n
		}
	}
	return v
}
