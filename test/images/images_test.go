// Package images holds the smoke tests of the images `make images` provides
// (test/images/build.sh): whether pulled from a registry or built here from
// Debian packages, they must behave as the official ones do.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

func engine(t *testing.T) *client.Client {
	t.Helper()
	if testing.Short() && !testenv.InCI() {
		t.Skip("real engine: skipped with -short")
	}
	testenv.NeedDocker(t)
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	for _, ref := range []string{"debian:bookworm", "golang:1.26-bookworm", "postgres:15"} {
		if _, err := c.ImageInspect(context.Background(), ref); err != nil {
			testenv.Missing(t, ref+" is not in the local engine (run make images)")
		}
	}
	return c
}

// TestImagesIsANoOpWhenPresent: the second `make images` does nothing and
// is quick (the first one ran before the tests, in `make test`).
func TestImagesIsANoOpWhenPresent(t *testing.T) {
	engine(t)
	start := time.Now()
	out, err := exec.Command("bash", filepath.Join(testenv.RepoRoot(t), "test/images/build.sh")).CombinedOutput()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "building") || strings.Contains(string(out), "pulling") {
		t.Fatalf("build.sh with every image present built or pulled something:\n%s", out)
	}
	if elapsed > 10*time.Second {
		t.Fatalf("build.sh with every image present took %s, want under 10s", elapsed)
	}
	t.Logf("no-op make images: %s", elapsed.Round(time.Millisecond))
}

// run starts a container of ref with cmd, waits for it to exit, and returns
// its exit code and output.
func run(t *testing.T, c *client.Client, ref string, cmd ...string) (int64, string) {
	t.Helper()
	ctx := context.Background()
	cr, err := c.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: cmd}, nil, nil, nil, "")
	if err != nil {
		t.Fatalf("create %s: %v", ref, err)
	}
	defer c.ContainerRemove(ctx, cr.ID, container.RemoveOptions{Force: true})
	if err := c.ContainerStart(ctx, cr.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", ref, err)
	}
	code := wait(t, c, cr.ID, time.Minute)
	return code, logs(t, c, cr.ID)
}

func wait(t *testing.T, c *client.Client, id string, timeout time.Duration) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	okc, errc := c.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case r := <-okc:
		return r.StatusCode
	case err := <-errc:
		t.Fatalf("wait for container: %v", err)
	}
	return -1
}

func logs(t *testing.T, c *client.Client, id string) string {
	t.Helper()
	rc, err := c.ContainerLogs(context.Background(), id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatalf("logs: %v", err)
	}
	return out.String()
}

// TestGolangImage: the builder image has the Go of this repository's
// go.mod, a C toolchain and git like the official image, and trusts this
// machine's CA bundle so module downloads verify inside builds.
func TestGolangImage(t *testing.T) {
	c := engine(t)
	code, out := run(t, c, "golang:1.26-bookworm", "sh", "-c",
		"go version && go env GOPATH GOTOOLCHAIN && command -v gcc && command -v git && test -s /etc/ssl/certs/ca-certificates.crt && pwd")
	if code != 0 {
		t.Fatalf("golang image: exit %d\n%s", code, out)
	}
	for _, want := range []string{"go version go1.26", "/go\nlocal\n", "/usr/bin/gcc", "/usr/bin/git", "\n/go\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("golang image output lacks %q:\n%s", want, out)
		}
	}
}

// TestPostgres15Image checks the contract of the official postgres image
// that compose files rely on: password from POSTGRES_PASSWORD_FILE (a secret
// delivered through the Engine API, as invdeploy does), POSTGRES_DB,
// scram password auth over TCP, pg_isready, the postgres user, a clean exit
// on SIGTERM and no second initdb on restart.
func TestPostgres15Image(t *testing.T) {
	c := engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := make([]byte, 16)
	rand.Read(b)
	password := "pw-" + hex.EncodeToString(b)

	cr, err := c.ContainerCreate(ctx, &container.Config{
		Image:        "postgres:15",
		Env:          []string{"POSTGRES_PASSWORD_FILE=/run/secrets/db_password", "POSTGRES_DB=smoke"},
		ExposedPorts: nat.PortSet{"5432/tcp": {}},
	}, &container.HostConfig{
		PortBindings: nat.PortMap{"5432/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}}},
	}, nil, nil, "")
	if err != nil {
		t.Fatalf("create postgres:15: %v", err)
	}
	t.Cleanup(func() {
		c.ContainerRemove(context.Background(), cr.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	})
	if err := c.CopyToContainer(ctx, cr.ID, "/", secretTar(t, "run/secrets/db_password", password, 999), container.CopyToContainerOptions{}); err != nil {
		t.Fatalf("copy the password secret: %v", err)
	}

	port := startAndWaitReady(t, c, cr.ID)
	inspect, err := c.ContainerInspect(ctx, cr.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range inspect.Config.Env {
		if strings.Contains(e, password) {
			t.Fatal("the password is in the container's environment")
		}
	}
	if uid := processUID(t, inspect.State.Pid); uid != "999" {
		t.Fatalf("postgres runs as uid %s, want 999 (postgres)", uid)
	}

	dsn := func(pw string) string {
		return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%s/smoke?sslmode=disable&connect_timeout=5", pw, port)
	}
	conn, err := pgx.Connect(ctx, dsn(password))
	if err != nil {
		t.Fatalf("connect with the password from the file: %v", scrub(err, password))
	}
	var user, db, enc string
	if err := conn.QueryRow(ctx, "SELECT current_user, current_database(), current_setting('server_encoding')").Scan(&user, &db, &enc); err != nil {
		t.Fatalf("query: %v", err)
	}
	conn.Close(ctx)
	if user != "postgres" || db != "smoke" || enc != "UTF8" {
		t.Fatalf("connected as %s to %s (%s), want postgres to smoke (UTF8)", user, db, enc)
	}
	_, err = pgx.Connect(ctx, dsn("wrong"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("connect with a wrong password: %v, want invalid_password (28P01)", err)
	}

	if err := c.ContainerKill(ctx, cr.ID, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, c, cr.ID, time.Minute); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0\n%s", code, logs(t, c, cr.ID))
	}
	if l := logs(t, c, cr.ID); !strings.Contains(l, "database system is shut down") {
		t.Fatalf("no clean shutdown in the logs:\n%s", l)
	}

	port = startAndWaitReady(t, c, cr.ID)
	conn, err = pgx.Connect(ctx, dsn(password))
	if err != nil {
		t.Fatalf("connect after restart: %v", scrub(err, password))
	}
	conn.Close(ctx)
	l := logs(t, c, cr.ID)
	if n := strings.Count(l, "init process complete"); n != 1 {
		t.Fatalf("initialization ran %d times over two starts, want 1:\n%s", n, l)
	}
	if strings.Contains(l, password) {
		t.Fatal("the password is in the container's logs")
	}
}

// startAndWaitReady starts the container, waits until pg_isready passes
// inside it and returns the published host port.
func startAndWaitReady(t *testing.T, c *client.Client, id string) string {
	t.Helper()
	ctx := context.Background()
	if err := c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, err := execCode(ctx, c, id, "pg_isready", "-q", "-U", "postgres")
		if err == nil && code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_isready never passed (last exit %d, %v)\n%s", code, err, logs(t, c, id))
		}
		time.Sleep(200 * time.Millisecond)
	}
	inspect, err := c.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	b := inspect.NetworkSettings.Ports["5432/tcp"]
	if len(b) == 0 {
		t.Fatal("5432/tcp is not published")
	}
	return b[0].HostPort
}

func execCode(ctx context.Context, c *client.Client, id string, cmd ...string) (int, error) {
	ex, err := c.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, User: "postgres"})
	if err != nil {
		return -1, err
	}
	if err := c.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{}); err != nil {
		return -1, err
	}
	for {
		in, err := c.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return -1, err
		}
		if !in.Running {
			return in.ExitCode, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processUID reads the real uid of a host process from /proc.
func processUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the container's process: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatal("no Uid line in /proc status")
	return ""
}

// secretTar is a tar stream with one file of mode 0400 owned by uid, as
// invdeploy delivers secrets to /run/secrets.
func secretTar(t *testing.T, name, value string, uid int) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := filepath.Dir(name)
	for _, d := range []string{filepath.Dir(dir), dir} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o400, Uid: uid, Gid: uid, Size: int64(len(value))})
	tw.Write([]byte(value))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// scrub keeps a secret out of test output.
func scrub(err error, secret string) string {
	return strings.ReplaceAll(err.Error(), secret, "[redacted]")
}
