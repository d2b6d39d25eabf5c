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
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

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

// Config is the database configuration read from the environment.
type Config struct {
	// Pool configures the connection pool, with the timeouts of Timeout
	// applied (see ParseConfig).
	Pool *pgxpool.Config
	// Timeout is the most database time one call of the Store may take
	// (DATABASE_TIMEOUT); give it to NewStore.
	Timeout time.Duration
}

// DefaultTimeout is the database time budget of one request when
// DATABASE_TIMEOUT is not set: far above any statement of a healthy
// database (milliseconds), short enough that a client hears 503 and
// Retry-After within seconds when the database does not answer.
const DefaultTimeout = 5 * time.Second

// ParseConfig builds the pool configuration from DATABASE_URL (or
// DATABASE_URL_FILE; without either, libpq's PG* variables and defaults
// apply) and DATABASE_PASSWORD (or DATABASE_PASSWORD_FILE), which overrides
// any password in the URL, and the time budget from DATABASE_TIMEOUT (see
// boundWaits). Errors never contain the URL or the password.
func ParseConfig(env Env) (Config, error) {
	dsn, err := env.secret("DATABASE_URL")
	if err != nil {
		return Config{}, err
	}
	password, err := env.secret("DATABASE_PASSWORD")
	if err != nil {
		return Config{}, err
	}
	timeout, err := parseTimeout(env.Getenv("DATABASE_TIMEOUT"))
	if err != nil {
		return Config{}, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the (best-effort redacted) string: keep it out.
		return Config{}, errors.New("DATABASE_URL is not a valid connection string; expected postgres://USER@HOST:PORT/DB?sslmode=disable")
	}
	if password != "" {
		cfg.ConnConfig.Password = password
	}
	if err := setPoolSize(cfg, dsn, env.Getenv("DATABASE_POOL_MAX_CONNS")); err != nil {
		return Config{}, err
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "invoicing-api"
	}
	boundWaits(cfg, timeout)
	return Config{Pool: cfg, Timeout: timeout}, nil
}

// parseTimeout reads DATABASE_TIMEOUT: a duration such as 5s, default
// DefaultTimeout.
func parseTimeout(v string) (time.Duration, error) {
	if v == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 100*time.Millisecond {
		return 0, fmt.Errorf("DATABASE_TIMEOUT=%q is not a duration of at least 100ms, such as 5s", v)
	}
	return d, nil
}

// sessionTimeouts are the PostgreSQL settings boundWaits gives every
// session; Migrate turns them off.
var sessionTimeouts = []string{"statement_timeout", "idle_in_transaction_session_timeout"}

// boundWaits makes the pool's own waits end within timeout, where the
// context of a Store call (see Store.bound) cannot reach: a new connection
// is dialled by the pool in the background, detached from the request
// that asked for it, and hangs for good on a paused server unless
// connect_timeout ends it. On the server's side, statement_timeout stops a
// statement whose client has given up, and
// idle_in_transaction_session_timeout ends a transaction whose client is
// gone without the server seeing its connection close (a network
// partition): its locks, among them the advisory lock that marks an
// Idempotency-Key in use, would otherwise be held until TCP keepalive
// notices, hours later. A transaction of the Store is never idle longer
// than its whole budget. Values set in DATABASE_URL (connect_timeout, or
// the setting as a parameter or in options) are kept.
func boundWaits(cfg *pgxpool.Config, timeout time.Duration) {
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	ms := strconv.FormatInt(timeout.Milliseconds(), 10)
	params := cfg.ConnConfig.RuntimeParams
	for _, name := range sessionTimeouts {
		if _, ok := params[name]; !ok && !strings.Contains(params["options"], name) {
			params[name] = ms
		}
	}
}

// DefaultPoolMaxConns is the pool size when neither DATABASE_POOL_MAX_CONNS
// nor pool_max_conns in DATABASE_URL sets one: 4 x GOMAXPROCS, at least 16.
// pgx's own default (max(4, CPUs)) left PostgreSQL idle while requests
// queued for a connection: on 2 cores, create-invoice went from 1,445 req/s
// with 4 connections to 2,437 with 16 (make bench-api). A request holds its
// connection during network round trips, not only while PostgreSQL works,
// so the pool must be larger than the cores on either side. 16 is far below
// PostgreSQL's default max_connections (100), leaving room for replicas.
func DefaultPoolMaxConns() int32 { return int32(max(16, 4*runtime.GOMAXPROCS(0))) }

// keywordPoolMaxConns finds pool_max_conns in a keyword/value connection
// string ("host=db pool_max_conns=8").
var keywordPoolMaxConns = regexp.MustCompile(`(^|\s)pool_max_conns\s*=`)

// dsnSetsPoolSize reports whether the connection string names pool_max_conns.
func dsnSetsPoolSize(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		return err == nil && u.Query().Has("pool_max_conns")
	}
	return keywordPoolMaxConns.MatchString(dsn)
}

// setPoolSize applies the pool size: pool_max_conns in the connection
// string, else DATABASE_POOL_MAX_CONNS (envMax), else DefaultPoolMaxConns.
// Setting both is refused, as an ambiguous configuration.
func setPoolSize(cfg *pgxpool.Config, dsn, envMax string) error {
	inDSN := dsnSetsPoolSize(dsn)
	switch {
	case inDSN && envMax != "":
		return errors.New("set the pool size with DATABASE_POOL_MAX_CONNS or pool_max_conns in DATABASE_URL, not both")
	case inDSN:
		return nil
	case envMax != "":
		n, err := strconv.ParseInt(envMax, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("DATABASE_POOL_MAX_CONNS=%q is not a positive integer; set it to the number of database connections, e.g. 16", envMax)
		}
		cfg.MaxConns = int32(n)
	default:
		// pool_min_conns above the default raises it: pgx refuses min > max.
		cfg.MaxConns = max(DefaultPoolMaxConns(), cfg.MinConns)
	}
	return nil
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
// returns the number applied. It runs on connections of its own, without
// the request timeouts of ParseConfig: a migration is not a request, and
// one stopped halfway would stop every start.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	cfg := pool.Config()
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	for _, name := range sessionTimeouts {
		cfg.ConnConfig.RuntimeParams[name] = "0"
	}
	mpool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("connect for migrations: %w", err)
	}
	defer mpool.Close()
	p, err := newProvider(mpool)
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
