package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/invdeploy/invdeploy/deployer"
)

// deliveryStack runs a plain debian container as uid 1000 with a secret at
// /run/secrets and elsewhere, and configs from every source.
const deliveryStack = `services:
  app:
    image: debian:bookworm
    user: "1000:1000"
    command: ["sleep", "infinity"]
    stop_grace_period: 1s
    secrets:
      - pw
      - source: pw
        target: /etc/app/pw.conf
    configs:
      - inline
      - source: fromfile
        target: /etc/app/app.ini
        mode: 0440
      - source: fromenv
        target: env.txt
        uid: "0"
        gid: "0"
secrets:
  pw:
    environment: WSEC_PW
configs:
  inline:
    content: hello inline
  fromfile:
    file: ./app.ini
  fromenv:
    environment: WSEC_CONF
`

// execIn runs cmd in a running container as user and returns its combined
// output and exit code.
func execIn(t *testing.T, c *client.Client, id, user string, cmd ...string) (string, int) {
	t.Helper()
	ctx := context.Background()
	ex, err := c.ContainerExecCreate(ctx, id, container.ExecOptions{User: user, Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	att, err := c.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach: %v", err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		t.Fatalf("exec read: %v", err)
	}
	ins, err := c.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		t.Fatalf("exec inspect: %v", err)
	}
	return out.String(), ins.ExitCode
}

// TestSecretAndConfigDelivery: on the real engine, /run/secrets is
// read-only, noexec, nosuid for the container (root included), the secret is
// 0400 and readable by the container's user, a secret target outside
// /run/secrets and configs from content, file and environment land with
// their modes; a changed secret value recreates the container ("secret pw
// changed") and an unchanged one keeps it; down leaves no delivery volume and
// no loader container; the value never shows in output or inspect.
func TestSecretAndConfigDelivery(t *testing.T) {
	t.Parallel() // its own project; nothing shared but the engine
	e := newLocalEnv(t, "debian:bookworm")
	proj := fmt.Sprintf("wsec-deliver-%d", os.Getpid())
	const first, second = "wsec-canary-first-Hq3vZ8", "wsec-canary-second-Lm5pK2"
	dir := t.TempDir()
	for name, content := range map[string]string{"compose.yaml": deliveryStack, "app.ini": "[app]\nx=1\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.extra = []string{"WSEC_PW=" + first, "WSEC_CONF=from the environment"}
	e.cleanup(proj)

	e.mustRun(dir, "up", "-p", proj)
	id := e.containerIDs(proj)[proj+"-app-1"]
	if id == "" {
		t.Fatalf("no container %s-app-1", proj)
	}
	sh := func(user, script string) (string, int) { return execIn(t, e.docker, id, user, "sh", "-c", script) }

	// Read-only, noexec, nosuid, for the service's user and for root.
	for _, user := range []string{"1000:1000", "0:0"} {
		if out, code := sh(user, "touch /run/secrets/x"); code == 0 || !strings.Contains(out, "Read-only file system") {
			t.Errorf("as %s, touch /run/secrets/x: exit %d %q; want a read-only refusal", user, code, out)
		}
	}
	out, _ := sh("0:0", `awk '$5 == "/run/secrets" {print $6}' /proc/self/mountinfo`)
	opts := "," + strings.TrimSpace(out) + ","
	for _, o := range []string{"ro", "noexec", "nosuid", "nodev"} {
		if !strings.Contains(opts, ","+o+",") {
			t.Errorf("/run/secrets mount options %q lack %s", strings.TrimSpace(out), o)
		}
	}
	// Mode, owner and content of every file (content compared in the
	// container, never printed).
	for _, tc := range []struct{ path, stat, content string }{
		{"/run/secrets/pw", "400 1000:1000", first},
		{"/etc/app/pw.conf", "400 1000:1000", first},
		{"/inline", "444 1000:1000", "hello inline"},
		{"/etc/app/app.ini", "440 1000:1000", "[app]\nx=1\n"},
		{"/env.txt", "444 0:0", "from the environment"},
	} {
		got, code := sh("0:0", "stat -c '%a %u:%g' "+tc.path)
		if code != 0 || strings.TrimSpace(got) != tc.stat {
			t.Errorf("stat %s: %q (exit %d), want %q", tc.path, strings.TrimSpace(got), code, tc.stat)
		}
		if _, code := execIn(t, e.docker, id, "1000:1000", "sh", "-c", `test "$(cat "$1"; echo .)" = "$2."`, "sh", tc.path, tc.content); code != 0 {
			t.Errorf("%s: not readable by uid 1000 with the expected content", tc.path)
		}
	}
	if out, code := sh("1000:1000", "echo x > /etc/app/pw.conf"); code == 0 {
		t.Errorf("secret at /etc/app/pw.conf is writable: %q", out)
	}

	// Unchanged value: kept. Changed value: recreated, new value delivered.
	if r := e.mustRun(dir, "up", "-p", proj); !strings.Contains(r.stderr+r.stdout, proj+"-app-1 unchanged") {
		t.Fatalf("second up did not keep the container:\n%s%s", r.stdout, r.stderr)
	}
	e.extra = []string{"WSEC_PW=" + second, "WSEC_CONF=from the environment"}
	if r := e.mustRun(dir, "up", "-p", proj); !strings.Contains(r.stderr+r.stdout, "secret pw changed") {
		t.Fatalf("changed secret did not recreate with reason 'secret pw changed':\n%s%s", r.stdout, r.stderr)
	}
	id = e.containerIDs(proj)[proj+"-app-1"]
	if _, code := execIn(t, e.docker, id, "1000:1000", "sh", "-c", `test "$(cat /run/secrets/pw)" = "$1"`, "sh", second); code != 0 {
		t.Error("the changed secret was not delivered")
	}
	e.assertNoSecret(proj, first)
	e.assertNoSecret(proj, second)

	ctx := context.Background()
	vols, err := e.docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", deployer.LabelDeliveryFor+"="+proj+"-app-1"))})
	if err != nil {
		t.Fatal(err)
	}
	if len(vols.Volumes) != 2 {
		t.Errorf("%d delivery volumes after a recreate, want the current container's 2", len(vols.Volumes))
	}
	e.mustRun(dir, "down", "-p", proj)
	if n := e.objects(proj); n != 0 {
		t.Errorf("down (without --volumes) left %d objects: delivery volumes must go with their container", n)
	}
	loaders, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "io.invdeploy.delivery-loader="+proj))})
	if err != nil {
		t.Fatal(err)
	}
	if len(loaders) != 0 {
		t.Errorf("%d loader containers left", len(loaders))
	}
}

// TestRemoteSecretAndConfigDelivery: the same delivery through remote up
// over SSH to a simulated EC2 host (its own engine, its own volume paths):
// /run/secrets read-only, noexec, nosuid there too, secret and configs in
// place with their modes, a changed config recreates, nothing left after
// down.
func TestRemoteSecretAndConfigDelivery(t *testing.T) {
	h := startNamedRemoteHost(t, 0, bedNaming{netns: "wsecns", hostIf: "wsech", nsIf: "wsecg", dir: "wsec-ec2-", net: 246, bip: 245})
	const canary = "wsec-remote-canary-Tq7mW4"
	dir := t.TempDir()
	for name, content := range map[string]string{"compose.yaml": deliveryStack, "app.ini": "[app]\nx=1\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	proj := fmt.Sprintf("wsec-remote-%d", os.Getpid())
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "WSEC_PW=" + canary, "WSEC_CONF=from the environment"}
	compose := filepath.Join(dir, "compose.yaml")
	r := remoteRun(t, h, env, "up", "-f", compose, "-p", proj)
	mustCode(t, r, 0, "remote up of the delivery stack")
	if strings.Contains(r.Stdout+r.Stderr, canary) {
		t.Fatal("the secret appears in remote up's output")
	}
	name := proj + "-app-1"
	opts := h.Docker(t, "exec", "-u", "0", name, "awk", `$5 == "/run/secrets" {print $6}`, "/proc/self/mountinfo")
	for _, o := range []string{"ro", "noexec", "nosuid", "nodev"} {
		if !strings.Contains(","+strings.TrimSpace(opts)+",", ","+o+",") {
			t.Errorf("remote /run/secrets mount options %q lack %s", strings.TrimSpace(opts), o)
		}
	}
	got := h.Docker(t, "exec", "-u", "1000:1000", name, "sh", "-c",
		`stat -c '%n %a %u' /run/secrets/pw /etc/app/pw.conf /inline /etc/app/app.ini /env.txt; touch /run/secrets/x 2>/dev/null || echo read-only; test "$(cat /run/secrets/pw)" = "$1" && echo same`, "sh", canary)
	want := "/run/secrets/pw 400 1000\n/etc/app/pw.conf 400 1000\n/inline 444 1000\n/etc/app/app.ini 440 1000\n/env.txt 444 0\nread-only\nsame\n"
	if got != want {
		t.Errorf("on the host:\n%s\nwant:\n%s", got, want)
	}
	env[2] = "WSEC_CONF=changed"
	r = remoteRun(t, h, env, "up", "-f", compose, "-p", proj)
	mustCode(t, r, 0, "remote up with a changed config")
	if !strings.Contains(r.Stderr+r.Stdout, "config fromenv changed") {
		t.Errorf("no recreate for the changed config:\n%s", tail(r.Stderr, 10))
	}
	if got := h.Docker(t, "exec", name, "cat", "/env.txt"); got != "changed" {
		t.Errorf("/env.txt after the change: %q", got)
	}
	mustCode(t, remoteRun(t, h, env, "down", "-f", compose, "-p", proj), 0, "remote down")
	// The release history (invdeploy-release-<project>-<N> volumes) outlives
	// down by design; nothing else may.
	var vols []string
	for _, v := range strings.Fields(h.Docker(t, "volume", "ls", "-q")) {
		if !strings.HasPrefix(v, "invdeploy-release-"+proj+"-") {
			vols = append(vols, v)
		}
	}
	if left := strings.Join(vols, " ") + strings.TrimSpace(h.Docker(t, "ps", "-aq")); left != "" {
		t.Errorf("left on the host after down: %s", left)
	}
}

// rotateStack is a PostgreSQL whose password invdeploy generates, and a
// client whose healthcheck logs in over TCP with the delivered secret.
const rotateStack = `services:
  db:
    image: postgres:15
    user: postgres
    environment:
      POSTGRES_USER: wsec
      POSTGRES_DB: wsec
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_password]
    volumes: [data:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "wsec", "-d", "wsec"]
      interval: 1s
      retries: 60
    stop_grace_period: 5s
  client:
    image: postgres:15
    user: postgres
    entrypoint: ["sleep", "infinity"]
    secrets: [db_password]
    depends_on:
      db: {condition: service_healthy}
    healthcheck:
      test: ["CMD-SHELL", "PGPASSWORD=\"$$(cat /run/secrets/db_password)\" psql -h db -U wsec -d wsec -Atc 'select 1'"]
      interval: 1s
      retries: 30
    stop_grace_period: 1s
volumes:
  data: {}
secrets:
  db_password:
    environment: WSEC_UNSET_DB_PASSWORD
    x-invdeploy-generate: true
`

// TestSecretRotate: secret rotate sets a new generated password in the
// running PostgreSQL, stores it, rewrites the database's own copy in place
// (the database is not restarted), recreates what uses it; the client logs in
// with the new password (its healthcheck gates rotate's exit 0) and no
// longer with the old one; neither password shows anywhere.
func TestSecretRotate(t *testing.T) {
	t.Parallel() // its own project; nothing shared but the engine
	e := newLocalEnv(t, "postgres:15")
	proj := fmt.Sprintf("wsec-rotate-%d", os.Getpid())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rotateStack), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cleanup(proj)
	e.mustRun(dir, "up", "-p", proj)
	stored := filepath.Join(e.xdg, "invdeploy", proj, "db_password")
	old, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}

	dbID := e.containerIDs(proj)[proj+"-db-1"]
	// The dry run shows the rotation's operations, then up's, and changes
	// nothing.
	r := e.mustRun(dir, "secret", "rotate", "db_password", "-p", proj, "--dry-run")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  secret +rotate +db_password: a new value: ALTER ROLE wsec in ` + proj + `-db-1, then kept on this machine`),
		regexp.MustCompile(`(?m)^  secret +rewrite +` + proj + `-db-1: its copy of db_password is rewritten in place`),
		regexp.MustCompile(`(?m)^  client +recreate +` + proj + `-client-1: secret db_password changed`),
		regexp.MustCompile(`(?m)^  db +keep +` + proj + `-db-1$`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("secret rotate --dry-run lacks %s:\n%s", want, r.stdout)
		}
	}
	if same, _ := os.ReadFile(stored); !bytes.Equal(same, old) {
		t.Fatal("secret rotate --dry-run changed the stored password")
	}
	r = e.mustRun(dir, "secret", "rotate", "db_password", "-p", proj)
	if got := e.containerIDs(proj)[proj+"-db-1"]; got != dbID {
		t.Errorf("the database container was replaced by rotate")
	}
	for _, want := range []string{"rolling the services that use it onto it", "Container " + proj + "-db-1 unchanged", "recreated (secret db_password changed"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("rotate output lacks %q:\n%s%s", want, r.stdout, lastLines(r.stderr, 15))
		}
	}
	now, err := os.ReadFile(stored)
	if err != nil || len(now) < 32 || bytes.Equal(now, old) {
		t.Fatalf("no new stored password (%v)", err)
	}
	id := e.containerIDs(proj)[proj+"-client-1"]
	login := `PGPASSWORD="$1" psql -h db -U wsec -d wsec -Atc 'select 1'`
	if out, code := execIn(t, e.docker, id, "", "sh", "-c", login, "sh", string(old)); code == 0 || !strings.Contains(out, "password authentication failed") {
		t.Errorf("the old password still logs in (exit %d)", code)
	}
	if out, code := execIn(t, e.docker, id, "", "sh", "-c", login, "sh", string(now)); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("the new password does not log in (exit %d)", code)
	}
	e.assertNoSecret(proj, string(old))
	e.assertNoSecret(proj, string(now))
}

// TestSecretFileModeWarnsLocally: issue 25: a secret file at 0664 (as
// compose samples ship it) deploys on a local engine as with docker
// compose, with a warning that says how to keep it private; the service
// reads the value from its own 0400 copy.
func TestSecretFileModeWarnsLocally(t *testing.T) {
	t.Parallel() // its own project; nothing shared but the engine
	e := newLocalEnv(t, "debian:bookworm")
	proj := fmt.Sprintf("wsec-mode-%d", os.Getpid())
	const value = "wsec-mode-canary-Rt7yB4"
	dir := t.TempDir()
	compose := "services:\n  app:\n    image: debian:bookworm\n    user: \"1000:1000\"\n    command: [\"sleep\", \"infinity\"]\n    stop_grace_period: 1s\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw.txt\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "pw.txt"), 0o664); err != nil {
		t.Fatal(err)
	}
	e.cleanup(proj)
	r := e.mustRun(dir, "up", "-p", proj)
	if !strings.Contains(r.stderr, "warning: secret pw: file "+filepath.Join(dir, "pw.txt")+" is world-readable (mode 0664)") || !strings.Contains(r.stderr, "chmod 600") {
		t.Fatalf("up does not warn about the 0664 secret file:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, value) {
		t.Fatal("the secret's value is in up's output")
	}
	id := e.containerIDs(proj)[proj+"-app-1"]
	if out, code := execIn(t, e.docker, id, "1000:1000", "sh", "-c", `test "$(cat /run/secrets/pw)" = "`+value+`" && stat -c '%a' /run/secrets/pw`); code != 0 || strings.TrimSpace(out) != "400" {
		t.Fatalf("the service does not read its 0400 copy of the secret: exit %d %q", code, out)
	}
	e.mustRun(dir, "down", "-p", proj)
}
