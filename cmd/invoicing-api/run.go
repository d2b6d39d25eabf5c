package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	apihttp "github.com/invdeploy/invdeploy/api/http"
	"github.com/invdeploy/invdeploy/api/postgres"
	"github.com/invdeploy/invdeploy/internal/portprobe"
	"github.com/invdeploy/invdeploy/internal/version"
)

const usage = `usage: invoicing-api [serve | migrate | healthcheck | probe-ports PORT... | version]

environment:
  DATABASE_URL, DATABASE_URL_FILE  postgres://USER@HOST:PORT/DB?sslmode=disable (else libpq PG* variables)
  DATABASE_PASSWORD, DATABASE_PASSWORD_FILE  the database password (overrides one in the URL)
  DATABASE_POOL_MAX_CONNS  most database connections, default max(16, 4 x GOMAXPROCS) (or pool_max_conns in the URL)
  DATABASE_TIMEOUT  most database time of one request (connection, statements, commit), then 503; default 5s
  PORT            listen port, default 8000
  SHUTDOWN_DELAY  how long /readyz reports 503 before the server stops accepting, default 1s
  LOG_LEVEL       debug, info, warn or error, default info (probes of /healthz, /readyz, /metrics log at debug)`

// shutdownTimeout bounds how long in-flight requests may take after SIGTERM.
const shutdownTimeout = 10 * time.Second

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "serve":
		return serve(ctx, getenv, stdout)
	case "migrate":
		return migrate(ctx, getenv, stdout)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "probe-ports":
		return probePorts(args[2:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "invoicing-api", version.String())
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func listenAddr(getenv func(string) string) (string, error) {
	port := getenv("PORT")
	if port == "" {
		port = "8000"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("PORT=%q is not a TCP port", port)
	}
	return ":" + port, nil
}

// dbConfig reads the database configuration from the environment.
func dbConfig(getenv func(string) string) (postgres.Config, error) {
	cfg, err := postgres.ParseConfig(postgres.Env{Getenv: getenv, ReadFile: os.ReadFile})
	if err != nil {
		return cfg, fmt.Errorf("database configuration: %w", err)
	}
	return cfg, nil
}

// logLevel reads LOG_LEVEL (debug, info, warn, error; default info).
func logLevel(getenv func(string) string) (slog.Level, error) {
	var l slog.Level
	v := getenv("LOG_LEVEL")
	if v == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL=%q is not one of debug, info, warn, error", v)
	}
	return l, nil
}

// openPool connects to the database, retrying for up to a minute so the
// server may start before its database is ready.
func openPool(ctx context.Context, dbcfg postgres.Config, logger *slog.Logger) (*pgxpool.Pool, error) {
	cfg := dbcfg.Pool
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database configuration: %s", postgres.Redact(cfg, err.Error()))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = pool.Ping(pctx)
		cancel()
		if err == nil {
			logger.Info("database connected", "host", cfg.ConnConfig.Host, "port", cfg.ConnConfig.Port,
				"database", cfg.ConnConfig.Database, "user", cfg.ConnConfig.User)
			return pool, nil
		}
		msg := postgres.Redact(cfg, err.Error())
		if time.Now().After(deadline) || ctx.Err() != nil {
			pool.Close()
			return nil, fmt.Errorf("connect to database: %s", msg)
		}
		logger.Warn("database not reachable yet; retrying", "error", msg)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func migrate(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := dbConfig(getenv)
	if err != nil {
		return err
	}
	pool, err := openMigrated(ctx, cfg, slog.New(slog.NewJSONHandler(stdout, nil)))
	if err != nil {
		return err
	}
	pool.Close()
	return nil
}

// openMigrated connects (see openPool) and applies the embedded migrations.
func openMigrated(ctx context.Context, cfg postgres.Config, logger *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := openPool(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	n, err := postgres.Migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	logger.Info("migrations applied", "count", n, "version", postgres.LatestVersion())
	return pool, nil
}

func serve(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	level, err := logLevel(getenv)
	if err != nil {
		return err
	}
	addr, err := listenAddr(getenv)
	if err != nil {
		return err
	}
	dbcfg, err := dbConfig(getenv)
	if err != nil {
		return err
	}
	logs := newBufferedLog(stdout, 100*time.Millisecond)
	defer logs.Close()
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	delay := time.Second
	if v := getenv("SHUTDOWN_DELAY"); v != "" {
		if delay, err = time.ParseDuration(v); err != nil || delay < 0 {
			return fmt.Errorf("SHUTDOWN_DELAY=%q is not a duration such as 1s", v)
		}
	}
	// Listen first: while the database is awaited and migrated, /healthz
	// answers 200 and /readyz (the container's healthcheck) and every
	// invoice route 503, instead of connections being refused.
	svc := &startingService{}
	reg := prometheus.NewRegistry()
	api := apihttp.NewServer(apihttp.Config{Service: svc, Logger: logger, AccessLog: logs, Registry: reg})
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// Requests keep running to completion after SIGTERM cancels ctx.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	logger.Info("listening", "addr", ln.Addr().String(), "version", version.Version, "revision", version.Revision)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	pool, err := openMigrated(ctx, dbcfg, logger)
	if err != nil {
		_ = srv.Close()
		return stoppedBeforeReady(ctx, logger, err)
	}
	defer closePool(pool, logger)
	store := postgres.NewStore(pool, dbcfg.Timeout)
	reg.MustRegister(postgres.NewPoolCollector(pool))
	svc.set(store)
	logger.Info("ready")
	go purgeIdempotencyKeys(ctx, store, logger)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: readiness off, draining", "delay", delay.String())
	api.Drain()
	time.Sleep(delay)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("in-flight requests did not finish in time; closing", "timeout", shutdownTimeout.String())
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// poolCloseWait bounds how long the server waits at exit for its database
// connections to close.
const poolCloseWait = 2 * time.Second

// closePool closes pool, waiting for it at most poolCloseWait: a
// connection whose request timed out is closed by pgx in the background,
// for up to 15 s while the database does not answer, and pool.Close waits
// for it. At exit the kernel closes the sockets anyway; waiting longer
// would only outlast the stop timeout of the container (10 s) and end in
// SIGKILL.
func closePool(pool *pgxpool.Pool, logger *slog.Logger) {
	closed := make(chan struct{})
	go func() {
		pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(poolCloseWait):
		logger.Warn("database connections still closing (the database does not answer); exiting without waiting for them", "waited", poolCloseWait.String())
	}
}

// purgeIdempotencyKeys deletes expired idempotency outcomes now and then
// every 10 minutes until ctx ends. Replicas may all do it: the deletes are
// idempotent and batched.
func purgeIdempotencyKeys(ctx context.Context, store *postgres.Store, logger *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := store.PurgeIdempotencyKeys(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("purge expired idempotency keys", "error", err.Error())
		} else if n > 0 {
			logger.Info("purged expired idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stoppedBeforeReady is err, unless SIGTERM came while the server was still
// waiting for its database or migrating: that is a clean stop (exit 0).
func stoppedBeforeReady(ctx context.Context, logger *slog.Logger, err error) error {
	if ctx.Err() != nil {
		logger.Info("stopped before the database was ready")
		return nil
	}
	return err
}

// healthcheck is the container's HEALTHCHECK (exit 0 when /readyz answers
// 200): no shell or curl in the image.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr, err := listenAddr(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	// Ready, not merely alive: compose's service_healthy and invdeploy's
	// health gate mean "serves requests", and /healthz is 200 while the
	// database is still awaited.
	url := "http://127.0.0.1" + addr + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}

func probePorts(args []string, stdout io.Writer) error {
	ports, err := portprobe.ParsePorts(args)
	if err != nil {
		return fmt.Errorf("probe-ports: %w", err)
	}
	held, err := portprobe.Held(ports)
	if err != nil {
		return err
	}
	if len(held) == 0 {
		return nil
	}
	s := make([]string, len(held))
	for i, p := range held {
		s[i] = strconv.Itoa(p)
		fmt.Fprintln(stdout, p)
	}
	return fmt.Errorf("ports in use: %s", strings.Join(s, " "))
}
