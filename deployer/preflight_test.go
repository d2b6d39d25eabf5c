package deployer

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// refused runs Up and asserts a preflight refusal that created nothing and
// whose message contains want.
func refused(t *testing.T, f *fakeEngine, st *Stack, o UpOptions, want ...string) {
	t.Helper()
	_, err := New(f, nil).Up(context.Background(), st, o)
	if !errors.Is(err, ErrPreflight) {
		t.Fatalf("want a preflight refusal, got %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("refusal does not mention %q:\n%v", w, err)
		}
	}
	for _, c := range f.mutations() {
		if !strings.HasPrefix(c, "pull ") {
			t.Fatalf("preflight refusal changed something: %v", f.mutations())
		}
	}
}

func TestPreflightPortHeldByContainer(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+port)
	f := fakeWithImages()
	f.runningContainer("squatter", nil, "0.0.0.0", port)
	refused(t, f, st, UpOptions{ConfigDir: cfgDir}, "port 127.0.0.1:"+port, "container squatter")
}

func TestPreflightPortHeldByProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+port)
	f := fakeWithImages()
	want := []string{"port 127.0.0.1:" + port, "is held"}
	if _, err := os.Stat("/proc/net/tcp"); err == nil {
		want = append(want, "(pid "+strconv.Itoa(os.Getpid())+")")
	}
	refused(t, f, st, UpOptions{ConfigDir: cfgDir}, want...)
}

func TestPreflightOwnContainerHoldingPortIsFine(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+port)
	f := fakeWithImages()
	f.runningContainer("inv-api-1", map[string]string{LabelProject: "inv", LabelService: "api"}, "127.0.0.1", port)
	if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{ConfigDir: cfgDir}); err != nil {
		t.Fatalf("the stack's own container holding its port refused: %v", err)
	}
}

func TestPreflightSecrets(t *testing.T) {
	tests := []struct {
		name   string
		files  map[string]string
		mode   os.FileMode
		env    []string
		remote bool
		want   string
	}{
		{name: "missing file", want: "is missing"},
		{name: "empty", files: map[string]string{"pw.txt": ""}, mode: 0o600, want: "is empty"},
		{name: "world-readable for a remote host", files: map[string]string{"pw.txt": "a-long-strong-value-123"}, mode: 0o644, remote: true, want: "world-readable (mode 0644), refused for a remote host; run chmod 600"},
		{name: "group-readable for a remote host", files: map[string]string{"pw.txt": "a-long-strong-value-123"}, mode: 0o640, remote: true, want: "group-readable (mode 0640), refused for a remote host; run chmod 600"},
		{name: "hint says why chmod is safe", files: map[string]string{"pw.txt": "a-long-strong-value-123"}, mode: 0o644, remote: true, want: "delivers a copy owned by the service's user"},
		{name: "weak default", files: map[string]string{"pw.txt": "changeme\n"}, mode: 0o600, want: "weak default"},
		{name: "short", files: map[string]string{"pw.txt": "abc12"}, mode: 0o600, want: "weak default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			if tt.mode != 0 {
				os.Chmod(filepath.Join(dir, "pw.txt"), tt.mode)
			}
			writeFiles(t, dir, map[string]string{"compose.yaml": `services:
  db:
    image: postgres:15
    secrets: [pw]
secrets:
  pw:
    file: ./pw.txt
`})
			st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
			if err != nil {
				t.Fatal(err)
			}
			refused(t, fakeWithImages(), st, UpOptions{Remote: tt.remote}, "secret pw", tt.want)
		})
	}
	t.Run("env unset", func(t *testing.T) {
		st := loadStack(t, "services:\n  db:\n    image: postgres:15\n    secrets: [pw]\nsecrets:\n  pw:\n    environment: TEST_UNSET_SECRET_VAR_X\n", nil)
		refused(t, fakeWithImages(), st, UpOptions{}, "secret pw", "TEST_UNSET_SECRET_VAR_X is not set")
	})
	t.Run("weak env", func(t *testing.T) {
		t.Setenv("TEST_WEAK_SECRET_VAR_X", "password")
		st := loadStack(t, "services:\n  db:\n    image: postgres:15\n    secrets: [pw]\nsecrets:\n  pw:\n    environment: TEST_WEAK_SECRET_VAR_X\n", nil)
		refused(t, fakeWithImages(), st, UpOptions{}, "secret pw", "weak default")
	})
	t.Run("stored generated readable by others", func(t *testing.T) {
		st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
		writeFiles(t, cfgDir, map[string]string{"db_password": "a-strong-generated-value-xyz"})
		os.Chmod(filepath.Join(cfgDir, "db_password"), 0o640)
		refused(t, fakeWithImages(), st, UpOptions{ConfigDir: cfgDir, Remote: true}, "group-readable", "chmod 600")
	})
	t.Run("config file missing", func(t *testing.T) {
		st := loadStack(t, "services:\n  db:\n    image: postgres:15\n    configs: [c]\nconfigs:\n  c:\n    file: ./nope.conf\n", nil)
		refused(t, fakeWithImages(), st, UpOptions{}, "config c", "nope.conf")
	})
}

func TestPreflightWarnsSystemDirPaths(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  db:\n    image: postgres:15\n    env_file: /etc/os-release\n"})
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{})
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "env_file[0] /etc/os-release is in a system directory") {
		t.Fatalf("no system-directory warning for env_file /etc/os-release: %q", rep.Warnings)
	}
	for _, p := range []string{"/etc/shadow", "/home/u/.ssh/id_ed25519", "/var/lib/docker/x"} {
		if !inSystemDir(p) {
			t.Errorf("inSystemDir(%q) = false", p)
		}
	}
	for _, p := range []string{"/home/u/app/pw.txt", "/root/app/.env", "/etcetera/x", "/tmp/pw"} {
		if inSystemDir(p) {
			t.Errorf("inSystemDir(%q) = true", p)
		}
	}
}

func TestPreflightFiles(t *testing.T) {
	t.Run("secret file in build context not dockerignored", func(t *testing.T) {
		st := loadStack(t, `services:
  app:
    build: .
    secrets: [pw]
secrets:
  pw:
    file: ./pw.txt
`, map[string]string{"Dockerfile": "FROM scratch\n", "pw.txt": "a-long-strong-value-123"})
		refused(t, fakeWithImages(), st, UpOptions{}, "secret file would enter the build context of services.app", "add pw.txt to")
	})
	t.Run("dockerignored secret file is fine", func(t *testing.T) {
		st := loadStack(t, `services:
  app:
    build: .
    secrets: [pw]
secrets:
  pw:
    file: ./pw.txt
`, map[string]string{"Dockerfile": "FROM scratch\n", "pw.txt": "a-long-strong-value-123", ".dockerignore": "pw.txt\n"})
		if _, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{}); err != nil {
			t.Fatalf("refused: %v", err)
		}
	})
	t.Run("env_file in build context not dockerignored", func(t *testing.T) {
		st := loadStack(t, "services:\n  app:\n    build: .\n    env_file: app.env\n",
			map[string]string{"Dockerfile": "FROM scratch\n", "app.env": "API_TOKEN=abc\n"})
		refused(t, fakeWithImages(), st, UpOptions{}, "env_file app.env would enter the build context of services.app", "add app.env to")
	})
	t.Run("dockerignored env_file is fine", func(t *testing.T) {
		st := loadStack(t, "services:\n  app:\n    build: .\n    env_file: app.env\n",
			map[string]string{"Dockerfile": "FROM scratch\n", "app.env": "API_TOKEN=abc\n", ".dockerignore": "*.env\n"})
		if _, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{}); err != nil {
			t.Fatalf("refused: %v", err)
		}
	})
	t.Run("secret-looking file in context", func(t *testing.T) {
		st := loadStack(t, "services:\n  app:\n    build: .\n", map[string]string{"Dockerfile": "FROM scratch\n", "certs/server.key": "x"})
		refused(t, fakeWithImages(), st, UpOptions{}, "certs/server.key", "looks like a secret")
	})
	t.Run(".env tracked by git", func(t *testing.T) {
		// The rule needs git to answer; without it nothing is tracked, so
		// CI=true fails rather than skip.
		git := testenv.NeedCommand(t, "git")
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  db:\n    image: postgres:15\n", ".env": "X=1\n"})
		for _, args := range [][]string{{"init", "-q"}, {"add", ".env"}} {
			cmd := exec.Command(git, args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v %s", args, err, out)
			}
		}
		st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, fakeWithImages(), st, UpOptions{}, ".env is tracked by git", "git rm --cached")
	})
}

func TestPreflightImages(t *testing.T) {
	t.Run("neither present nor pullable", func(t *testing.T) {
		st := loadStack(t, "services:\n  web:\n    image: example.invalid/nothing:1\n", nil)
		f := fakeWithImages()
		refused(t, f, st, UpOptions{}, "image example.invalid/nothing:1", "cannot be pulled")
	})
	t.Run("pullable", func(t *testing.T) {
		st := loadStack(t, "services:\n  web:\n    image: nginx:1\n", nil)
		f := fakeWithImages()
		f.pullable["nginx:1"] = true
		if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{}); err != nil {
			t.Fatalf("pullable image refused: %v", err)
		}
	})
	t.Run("pull_policy always pulls a present image", func(t *testing.T) {
		st := loadStack(t, "services:\n  web:\n    image: nginx:1\n    pull_policy: always\n  db:\n    image: postgres:15\n", nil)
		f := fakeWithImages()
		f.images["nginx:1"] = "sha256:old"
		f.pullable["nginx:1"] = true
		if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{}); err != nil || f.countCalls("pull ") != 0 {
			t.Fatalf("check: %v, calls %v: check must not pull present images", err, f.mutations())
		}
		if _, err := New(f, nil).Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second}); err != nil {
			t.Fatalf("up: %v", err)
		}
		if f.countCalls("pull nginx:1") != 1 || f.countCalls("pull postgres:15") != 0 {
			t.Fatalf("calls %v: want one pull of nginx:1 and none of the present postgres:15", f.mutations())
		}
		if f.images["nginx:1"] == "sha256:old" {
			t.Fatal("the pulled image did not replace the present one")
		}
	})
	t.Run("pull_policy always pulls nothing when preflight refuses", func(t *testing.T) {
		port := strconv.Itoa(freePort(t))
		st := loadStack(t, "services:\n  web:\n    image: nginx:1\n    pull_policy: always\n    ports: [\"127.0.0.1:"+port+":80\"]\n", nil)
		f := fakeWithImages()
		f.images["nginx:1"] = "sha256:old"
		f.pullable["nginx:1"] = true
		f.runningContainer("squatter", nil, "0.0.0.0", port)
		refused(t, f, st, UpOptions{}, "port 127.0.0.1:"+port)
		if f.countCalls("pull ") != 0 || f.images["nginx:1"] != "sha256:old" {
			t.Fatalf("a refused up pulled: %v", f.mutations())
		}
	})
	t.Run("pull_policy always refuses when the pull fails", func(t *testing.T) {
		st := loadStack(t, "services:\n  web:\n    image: nginx:1\n    pull_policy: always\n", nil)
		f := fakeWithImages()
		f.images["nginx:1"] = "sha256:old"
		refused(t, f, st, UpOptions{}, "pull_policy is always and the pull failed")
	})
	t.Run("pull_policy build rebuilds on every up", func(t *testing.T) {
		st := loadStack(t, "services:\n  app:\n    build: .\n    pull_policy: build\n", map[string]string{"Dockerfile": "FROM golang:1.26-bookworm\n"})
		f := fakeWithImages()
		d := New(f, nil)
		for range 2 {
			if _, err := d.Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second}); err != nil {
				t.Fatalf("up: %v", err)
			}
		}
		if n := f.countCalls("build "); n != 2 {
			t.Fatalf("%d builds in two ups with pull_policy build, want 2: %v", n, f.mutations())
		}
	})
	t.Run("pull_policy daily is named as unsupported", func(t *testing.T) {
		st := loadStack(t, "services:\n  web:\n    image: nginx:1\n    pull_policy: daily\n", nil)
		if w := strings.Join(st.Warnings, "\n"); !strings.Contains(w, `services.web.pull_policy "daily" is not supported by invdeploy and is treated as missing`) {
			t.Fatalf("warnings %q", w)
		}
	})
	t.Run("pull_policy never refuses a missing image", func(t *testing.T) {
		st := loadStack(t, "services:\n  web:\n    image: nginx:1\n    pull_policy: never\n", nil)
		f := fakeWithImages()
		f.pullable["nginx:1"] = true
		refused(t, f, st, UpOptions{}, "pull_policy is never")
		if f.countCalls("pull ") != 0 {
			t.Fatalf("pulled under pull_policy never: %v", f.mutations())
		}
	})
	t.Run("base image of build missing", func(t *testing.T) {
		st := loadStack(t, "services:\n  app:\n    build: .\n", map[string]string{"Dockerfile": "FROM golang:1.99 AS b\nFROM b\n"})
		refused(t, fakeWithImages(), st, UpOptions{}, "image golang:1.99", "base image of services.app")
	})
	t.Run("no Dockerfile", func(t *testing.T) {
		st := loadStack(t, "services:\n  app:\n    build: .\n", nil)
		refused(t, fakeWithImages(), st, UpOptions{}, "Dockerfile cannot be read")
	})
}

func TestPreflightEngine(t *testing.T) {
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	f.pingErr = errors.New("connection refused")
	refused(t, f, st, UpOptions{ConfigDir: cfgDir}, "engine unix:///fake.sock", "does not answer")
	f = fakeWithImages()
	f.apiVersion = "1.40"
	refused(t, f, st, UpOptions{ConfigDir: cfgDir}, "too old")
	// An engine whose ping names a supported API is not asked its version
	// (GET /version costs an engine 20.10 ~9 ms: most of a no-op up's
	// engine time).
	f = fakeWithImages()
	if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{ConfigDir: cfgDir}); err != nil {
		t.Fatal(err)
	}
	if f.pings != 1 || f.versions != 0 {
		t.Errorf("a passing check pinged the engine %d times and asked its version %d times, want 1 and 0", f.pings, f.versions)
	}
}

func TestPreflightWeakLiteralPassword(t *testing.T) {
	compose := "services:\n  db:\n    image: postgres:15\n    environment:\n      POSTGRES_PASSWORD: password\n"
	st := loadStack(t, compose, nil)
	rep, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{})
	if err != nil {
		t.Fatalf("local engine: weak literal password must only warn, got %v", err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "services.db.environment.POSTGRES_PASSWORD") {
		t.Fatalf("warnings %v", rep.Warnings)
	}
	refused(t, fakeWithImages(), st, UpOptions{Remote: true}, "POSTGRES_PASSWORD", "refused on a remote engine")
	if strings.Contains(strings.Join(rep.Warnings, " "), ": password") {
		t.Fatal("warning repeats the password value")
	}
}

func TestIsRemoteHost(t *testing.T) {
	for host, want := range map[string]bool{
		"": false, "unix:///var/run/docker.sock": false, "tcp://127.0.0.1:2375": false, "tcp://localhost:2376": false,
		"tcp://[::1]:2376": false, "ssh://root@10.0.0.2": true, "tcp://10.0.0.2:2376": true,
	} {
		if got := IsRemoteHost(host); got != want {
			t.Errorf("IsRemoteHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestPreflightPingRefused: an engine (or a proxy in front of it) that
// refuses /_ping but answers its version is there.
func TestPreflightPingRefused(t *testing.T) {
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := &pingRefusing{fakeWithImages()}
	if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{ConfigDir: cfgDir}); err != nil {
		t.Fatalf("an engine answering its version but not pings was refused: %v", err)
	}
}

type pingRefusing struct{ *fakeEngine }

func (p *pingRefusing) Ping(context.Context) (types.Ping, error) {
	return types.Ping{}, errors.New("403 Forbidden")
}
