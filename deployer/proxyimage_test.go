package deployer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProxyRefCache: the proxy binary's image reference is remembered per
// path, size and modification time; a rebuilt binary is hashed again.
func TestProxyRefCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	f := newFakeEngine()
	bin := fakeProxyBinary(t, f)
	d := New(f, nil)
	ref, err := d.EnsureProxyImage(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := cachedProxyRef(bin); !ok || got != ref {
		t.Fatalf("not remembered: %q %v", got, ok)
	}
	again, err := d.EnsureProxyImage(context.Background(), bin)
	if err != nil || again != ref {
		t.Fatalf("second ensure: %q %v", again, err)
	}
	// A new binary at the same path: another size and time, hashed anew.
	if err := os.WriteFile(bin, []byte("another proxy build"), 0o755); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(bin, later, later); err != nil {
		t.Fatal(err)
	}
	if _, ok := cachedProxyRef(bin); ok {
		t.Fatal("a rebuilt binary matched the remembered reference")
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "invdeploy", "proxy-image.json")); err != nil {
		t.Fatal(err)
	}
}

// TestProxyRuntimeOfADynamicBinary: a dynamically linked binary (what go
// install gives where a C compiler is found) brings its ELF interpreter and
// every shared library it needs into the proxy image, at the paths the
// loader looks in; a library this machine lacks is refused with the fix.
func TestProxyRuntimeOfADynamicBinary(t *testing.T) {
	bin, err := os.ReadFile("/bin/true") // dynamically linked on Debian
	if err != nil {
		t.Skipf("no /bin/true: %v", err)
	}
	files, err := proxyRuntime(bin, hostLibDirs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	all := strings.Join(names, "\n")
	if !strings.Contains(all, "ld-linux") || !strings.Contains(all, "/libc.so.6") {
		t.Fatalf("runtime of /bin/true lacks the loader or libc:\n%s", all)
	}
	for _, f := range files {
		if !f.Dir && len(f.Body) == 0 {
			t.Fatalf("%s is empty", f.Name)
		}
	}
	if _, err := proxyRuntime(bin, []string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("missing libraries: %v", err)
	}
}
