package deployer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/invdeploy/invdeploy/deployer/internal/scratchimage"
)

// ProxyImageRepo is the repository of the rollout proxy's image; its tag is
// the first 12 hex digits of the proxy binary's SHA-256.
const ProxyImageRepo = "invdeploy-proxy"

// EnsureProxyImage makes the rollout proxy's image present on the engine
// and returns its reference. The image is the proxy binary (a static Linux
// executable of the engine's architecture, `invdeploy-proxy` beside
// invdeploy) on scratch, with a passwd entry for its non-root user: built by
// the engine from a small context, so nothing is pulled and no registry is
// needed, locally or on a remote host (only a missing image costs bytes).
func (d *Deployer) EnsureProxyImage(ctx context.Context, binaryPath string) (string, error) {
	ref, present, err := d.proxyImage(ctx, binaryPath)
	if err != nil || present {
		return ref, err
	}
	return ref, d.buildProxyImage(ctx, binaryPath, ref)
}

// proxyImage is the reference of the proxy binary's image and whether the
// engine has it; an error says the image cannot be made there (no binary,
// or one that could not run on the engine). It changes nothing.
func (d *Deployer) proxyImage(ctx context.Context, binaryPath string) (ref string, present bool, err error) {
	// The binary's digest is remembered per path, size and modification
	// time, so an up does not read and hash ~10 MB each time.
	if ref, ok := cachedProxyRef(binaryPath); ok {
		if _, err := d.engine.ImageInspect(ctx, ref); err == nil {
			return ref, true, nil
		}
	}
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		return "", false, fmt.Errorf("rollout proxy: %w", err)
	}
	sum := sha256.Sum256(bin)
	ref = ProxyImageRepo + ":" + hex.EncodeToString(sum[:])[:12]
	rememberProxyRef(binaryPath, ref)
	if _, err := d.engine.ImageInspect(ctx, ref); err == nil {
		return ref, true, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", false, fmt.Errorf("inspect %s: %w", ref, err)
	}
	v, err := d.engine.ServerVersion(ctx)
	if err != nil {
		return "", false, fmt.Errorf("rollout proxy: engine version: %w", err)
	}
	if err := checkProxyBinary(bin, v.Os, v.Arch); err != nil {
		return "", false, fmt.Errorf("rollout proxy %s: %w", binaryPath, err)
	}
	return ref, false, nil
}

// buildProxyImage builds the proxy binary's image as ref (see proxyImage).
func (d *Deployer) buildProxyImage(ctx context.Context, binaryPath, ref string) error {
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		return fmt.Errorf("rollout proxy: %w", err)
	}
	if err := scratchimage.Build(ctx, d.engine, ref, map[string]string{LabelManagedBy: "invdeploy"}, proxyContext(bin)); err != nil {
		return err
	}
	d.out.Event("Image %s built (the rollout proxy)", ref)
	return nil
}

// checkProxyBinary refuses what could not run on the engine: not ELF, not
// Linux, another architecture, or dynamically linked (scratch has no libc).
func checkProxyBinary(bin []byte, engineOS, engineArch string) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not a Linux executable (%v); build it with GOOS=linux CGO_ENABLED=0", err)
	}
	defer f.Close()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "x86_64": elf.EM_X86_64, "aarch64": elf.EM_AARCH64}
	if engineOS != "" && engineOS != "linux" {
		return fmt.Errorf("the engine runs %s containers; the proxy needs Linux", engineOS)
	}
	if want, ok := machine[engineArch]; ok && f.Machine != want {
		return fmt.Errorf("built for %v, the engine is %s; build it with GOARCH=%s", f.Machine, engineArch, engineArch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	return nil
}

// proxyContext is the proxy image's build context: the binary, an
// /etc/passwd naming its user and the admin socket's directory owned by it.
func proxyContext(bin []byte) []scratchimage.File {
	dockerfile := "FROM scratch\nCOPY rootfs/ /\nUSER " + proxyUser + "\nENTRYPOINT [\"" + proxyBinary + "\"]\nCMD [\"run\"]\n"
	return []scratchimage.File{
		{Name: "Dockerfile", Mode: 0o644, Body: []byte(dockerfile)},
		{Name: "rootfs/", Mode: 0o755, Dir: true},
		{Name: "rootfs/etc/", Mode: 0o755, Dir: true},
		{Name: "rootfs/etc/passwd", Mode: 0o644, Body: []byte("nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n")},
		{Name: "rootfs/etc/group", Mode: 0o644, Body: []byte("nonroot:x:65532:\n")},
		{Name: "rootfs/run/", Mode: 0o755, Dir: true},
		{Name: "rootfs/run/invdeploy-proxy/", Mode: 0o700, Dir: true, UID: 65532},
		{Name: "rootfs" + proxyBinary, Mode: 0o755, Body: bin},
	}
}

// proxyRefCache is where the proxy binary's image reference is remembered:
// $XDG_CACHE_HOME/invdeploy/proxy-image.json (a cache: losing it costs one
// hash).
func proxyRefCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "invdeploy", "proxy-image.json")
}

type proxyRefEntry struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	Ref   string `json:"ref"`
}

func proxyStamp(path string) (proxyRefEntry, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return proxyRefEntry{}, false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return proxyRefEntry{}, false
	}
	return proxyRefEntry{Path: abs, Size: fi.Size(), MTime: fi.ModTime().UnixNano()}, true
}

func cachedProxyRef(path string) (string, bool) {
	want, ok := proxyStamp(path)
	file := proxyRefCache()
	if !ok || file == "" {
		return "", false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	var got proxyRefEntry
	if json.Unmarshal(b, &got) != nil || got.Ref == "" || got.Path != want.Path || got.Size != want.Size || got.MTime != want.MTime {
		return "", false
	}
	return got.Ref, true
}

func rememberProxyRef(path, ref string) {
	e, ok := proxyStamp(path)
	file := proxyRefCache()
	if !ok || file == "" {
		return
	}
	e.Ref = ref
	b, err := json.Marshal(e)
	if err != nil || os.MkdirAll(filepath.Dir(file), 0o700) != nil {
		return
	}
	tmp := file + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, file)
	}
}
