// Package testpg gives tests a real PostgreSQL: one throwaway cluster per
// test binary, started from the Debian binaries (/usr/lib/postgresql/15/bin,
// or $PG_BIN) in a temporary directory, and a fresh database per test cloned
// from a prepared (migrated) template, so tests may run in parallel. With
// TEST_DATABASE_URL set, that server is used instead of starting one.
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m, prepare)) }
//	func TestX(t *testing.T) { url := testpg.New(t) ... }
package testpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// DefaultBin is where Debian's postgresql-15 package installs the server.
const DefaultBin = "/usr/lib/postgresql/15/bin"

var (
	server   *Server
	startErr error
	counter  atomic.Int64
)

// Server is a running PostgreSQL reachable at AdminURL.
type Server struct {
	// AdminURL connects as a superuser to the maintenance database.
	AdminURL string
	// Template is the name of the prepared template database.
	Template string
	dir      string
	cmd      *exec.Cmd
	done     chan error
}

// Main starts the server, prepares the template database with prepare
// (given the template's URL; it must close its connections), runs the
// tests and stops the server. It returns the exit code for os.Exit. A
// server that cannot start is reported by New in each test (skip locally,
// failure under CI), so packages still run their other tests.
func Main(m *testing.M, prepare func(ctx context.Context, url string) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, startErr = Start(ctx)
	if startErr == nil {
		startErr = server.prepareTemplate(ctx, prepare)
	}
	cancel()
	code := m.Run()
	if server != nil {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg: stop:", err)
		}
	}
	return code
}

// New returns the URL of a new database cloned from the template, dropped
// when the test ends. Without a server it calls testenv.Missing.
func New(t testing.TB) string {
	t.Helper()
	if server == nil || startErr != nil {
		testenv.Missing(t, fmt.Sprintf("postgresql: %v", startErr))
		return ""
	}
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), counter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := server.exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, server.Template)); err != nil {
		t.Fatalf("testpg: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := server.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testpg: drop database %s: %v", name, err)
		}
	})
	return server.url(name)
}

// Start returns a running server: the one at TEST_DATABASE_URL if set, else
// a new cluster in a temporary directory.
func Start(ctx context.Context) (*Server, error) {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return &Server{AdminURL: u, Template: fmt.Sprintf("testpg_tmpl_%d", os.Getpid())}, nil
	}
	bin := os.Getenv("PG_BIN")
	if bin == "" {
		bin = DefaultBin
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s (install postgresql-15: make deps)", b, bin)
		}
	}
	dir, err := os.MkdirTemp("", "testpg-")
	if err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	s := &Server{dir: dir, Template: "testpg_template", done: make(chan error, 1)}
	cred, err := credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-h", "127.0.0.1",
		"-p", strconv.Itoa(port), "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "log_min_messages=FATAL")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err == nil {
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	s.AdminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := s.waitReady(ctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		_ = s.Stop()
		return nil, fmt.Errorf("%w: %s", err, log)
	}
	return s, nil
}

// credential returns the postgres OS user's credential when running as root
// (the server refuses root) after handing dir to it; nil otherwise.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("chown cluster dir: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	for {
		c, err := pgx.Connect(ctx, s.AdminURL)
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case err := <-s.done:
			return fmt.Errorf("postgres exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// url returns the URL of database name on this server.
func (s *Server) url(name string) string {
	u, err := url.Parse(s.AdminURL)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

func (s *Server) exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

func (s *Server) prepareTemplate(ctx context.Context, prepare func(ctx context.Context, url string) error) error {
	_ = s.exec(ctx, "DROP DATABASE IF EXISTS "+s.Template+" WITH (FORCE)")
	if err := s.exec(ctx, "CREATE DATABASE "+s.Template); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	if prepare != nil {
		if err := prepare(ctx, s.url(s.Template)); err != nil {
			return fmt.Errorf("prepare template database: %w", err)
		}
	}
	return nil
}

// Stop shuts the cluster down (fast mode) and removes its directory; for an
// external server it drops the template.
func (s *Server) Stop() error {
	if s.cmd == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return s.exec(ctx, "DROP DATABASE IF EXISTS "+s.Template+" WITH (FORCE)")
	}
	defer os.RemoveAll(s.dir)
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		return errors.New("postgres did not stop within 15s; killed")
	}
}
