package deployer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// secretStack is a one-service stack whose secret pw comes from file.
func secretStack(t *testing.T, dir, file string) *Stack {
	t.Helper()
	writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  db:\n    image: postgres:15\n    secrets: [pw]\nsecrets:\n  pw:\n    file: " + file + "\n"})
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPreflightSecretSourceKinds: a secret's file must be a regular file of
// at most 500 KB outside /proc, /sys and /dev (symlinks resolved); the
// refusal says what the file is and gives advice that fits (no chmod of a
// device). A FIFO is refused without being opened, so nothing hangs.
func TestPreflightSecretSourceKinds(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the file: value
		want    []string
		notWant string
	}{
		{name: "FIFO", setup: func(t *testing.T, dir string) string {
			if err := syscall.Mkfifo(filepath.Join(dir, "pw.fifo"), 0o600); err != nil {
				t.Fatal(err)
			}
			return "./pw.fifo"
		}, want: []string{"is a FIFO (named pipe), not a regular file", "put the value in a regular file"}},
		{name: "directory", setup: func(t *testing.T, dir string) string {
			os.Mkdir(filepath.Join(dir, "pwdir"), 0o700)
			return "./pwdir"
		}, want: []string{"is a directory, not a regular file"}},
		{name: "dev zero", setup: func(*testing.T, string) string { return "/dev/zero" },
			want: []string{"/dev/zero is under /dev", "regular file of your own"}, notWant: "chmod"},
		{name: "proc environ", setup: func(*testing.T, string) string { return "/proc/self/environ" },
			want: []string{"is under /proc"}, notWant: "chmod"},
		{name: "sys", setup: func(*testing.T, string) string { return "/sys/kernel/hostname" },
			want: []string{"is under /sys"}},
		{name: "symlink to a device", setup: func(t *testing.T, dir string) string {
			os.Symlink("/dev/urandom", filepath.Join(dir, "pw.txt"))
			return "./pw.txt"
		}, want: []string{"(-> /dev/urandom) is under /dev"}, notWant: "chmod"},
		{name: "symlinked directory into /proc", setup: func(t *testing.T, dir string) string {
			os.Symlink("/proc/self", filepath.Join(dir, "me"))
			return "./me/environ"
		}, want: []string{"is under /proc"}},
		{name: "over 500 KB", setup: func(t *testing.T, dir string) string {
			writeFiles(t, dir, map[string]string{"big.txt": strings.Repeat("x", MaxSecretSize+1)})
			return "./big.txt"
		}, want: []string{"is 512001 bytes, over the limit of 500 KB", "mount larger files as a volume"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			st := secretStack(t, dir, tt.setup(t, dir))
			done := make(chan error, 1)
			go func() {
				_, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("check hung on the secret's file")
			}
			if !IsPreflight(err) {
				t.Fatalf("want a preflight refusal, got %v", err)
			}
			for _, w := range append(tt.want, "secret pw") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("refusal does not say %q:\n%v", w, err)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("refusal says %q:\n%v", tt.notWant, err)
			}
		})
	}
}

// TestPreflightSecretAtLimit: a file of exactly 500 KB is accepted.
func TestPreflightSecretAtLimit(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pw.txt": strings.Repeat("k", MaxSecretSize)})
	st := secretStack(t, dir, "./pw.txt")
	if _, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{}); err != nil {
		t.Fatalf("a 500 KB secret refused: %v", err)
	}
}

// TestReadSourceFileRefusesSwappedFIFO: readSourceFile (what up and Swarm
// read values with) opens non-blocking and checks the open file, so a FIFO
// is refused at once rather than waited on.
func TestReadSourceFileRefusesSwappedFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pw")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readSourceFile(fifo, MaxSecretSize); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "FIFO") {
			t.Fatalf("err = %v, want a FIFO refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readSourceFile hung on a FIFO")
	}
}

// TestPreflightSecretModeLocalWarns: issue 25: a 0664 secret file works on
// a local engine as with docker compose (a warning that says how to keep
// it private), and is refused for a remote host.
func TestPreflightSecretModeLocalWarns(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pw.txt": "a-long-strong-value-123"})
	os.Chmod(filepath.Join(dir, "pw.txt"), 0o664)
	st := secretStack(t, dir, "./pw.txt")
	rep, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{})
	if err != nil {
		t.Fatalf("a 0664 secret file refused on a local engine: %v", err)
	}
	warned := false
	for _, w := range rep.Warnings {
		if strings.Contains(w, "secret pw") && strings.Contains(w, "world-readable (mode 0664)") && strings.Contains(w, "chmod 600") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no mode warning in %q", rep.Warnings)
	}
	if _, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{Remote: true}); !IsPreflight(err) || !strings.Contains(err.Error(), "refused for a remote host") {
		t.Fatalf("remote: want a refusal, got %v", err)
	}
}

// TestLoadRefusesHugeCompose: compose files over MaxComposeSize together
// are refused at once (exit 3), before compose-go reads them.
func TestLoadRefusesHugeCompose(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("services:\n  web:\n    image: nginx\n    environment:\n")
	for i := 0; b.Len() <= MaxComposeSize; i++ {
		b.WriteString("      K" + strings.Repeat("x", 60) + "_" + time.Duration(i).String() + ": v\n")
	}
	writeFiles(t, dir, map[string]string{"compose.yaml": b.String()})
	start := time.Now()
	_, err := Load(context.Background(), LoadOptions{WorkingDir: dir, ProjectName: "t"})
	if !IsPreflight(err) || !strings.Contains(err.Error(), "over invdeploy's limit of 4 MiB") {
		t.Fatalf("err = %v, want the size refusal", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the refusal took %s", d)
	}
	// Two files: their sizes add up.
	half := strings.Repeat("# padding\n", MaxComposeSize/20+1)
	writeFiles(t, dir, map[string]string{"a.yaml": "services:\n  a:\n    image: nginx\n" + half, "b.yaml": "services:\n  b:\n    image: nginx\n" + half})
	if _, err := Load(context.Background(), LoadOptions{Files: []string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")}, ProjectName: "t"}); !IsPreflight(err) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("two files over the limit together: %v", err)
	}
	// Under the limit loads.
	writeFiles(t, dir, map[string]string{"a.yaml": "services:\n  a:\n    image: nginx\n"})
	if _, err := Load(context.Background(), LoadOptions{Files: []string{filepath.Join(dir, "a.yaml")}, ProjectName: "t"}); err != nil {
		t.Fatal(err)
	}
}

// TestPreflightConfigSourceKinds: a config's file follows the same rules
// (its cap is Swarm's 1000 KB): /proc/self/environ would hand invdeploy's
// own environment to a container.
func TestPreflightConfigSourceKinds(t *testing.T) {
	for file, want := range map[string]string{"/proc/self/environ": "is under /proc", "/dev/urandom": "is under /dev"} {
		st := loadStack(t, "services:\n  db:\n    image: postgres:15\n    configs: [c]\nconfigs:\n  c:\n    file: "+file+"\n", nil)
		refused(t, fakeWithImages(), st, UpOptions{}, "config c", want)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"big.conf": strings.Repeat("x", MaxConfigSize+1), "ok.conf": strings.Repeat("x", MaxConfigSize)})
	st := loadStack(t, "services:\n  db:\n    image: postgres:15\n    configs: [c]\nconfigs:\n  c:\n    file: "+filepath.Join(dir, "big.conf")+"\n", nil)
	refused(t, fakeWithImages(), st, UpOptions{}, "config c", "over the limit of 1000 KB")
	st = loadStack(t, "services:\n  db:\n    image: postgres:15\n    configs: [c]\nconfigs:\n  c:\n    file: "+filepath.Join(dir, "ok.conf")+"\n", nil)
	if _, err := New(fakeWithImages(), nil).Check(context.Background(), st, CheckOptions{}); err != nil {
		t.Fatalf("a 1000 KB config refused: %v", err)
	}
}
