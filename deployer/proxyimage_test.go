package deployer

import (
	"context"
	"os"
	"path/filepath"
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
