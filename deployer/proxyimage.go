package deployer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/invdeploy/invdeploy/deployer/internal/scratchimage"
)

// ProxyImageRepo is the repository of the rollout proxy's image; its tag is
// the first 12 hex digits of the SHA-256 of the proxy binary and the
// image's Dockerfile (see proxyImageRef).
const ProxyImageRepo = "invdeploy-proxy"

// proxyHealth is the proxy's healthcheck: in its image (so the image
// carries one of its own, CIS Docker Benchmark 4.6) and in the container
// config up writes.
var proxyHealth = container.HealthConfig{Test: []string{"CMD", proxyBinary, "healthcheck"},
	Interval: 2 * time.Second, Timeout: 2 * time.Second, Retries: 3}

// proxyDockerfile is the proxy image's Dockerfile.
var proxyDockerfile = "FROM scratch\nCOPY rootfs/ /\nCOPY --chown=" + proxyUser + " state/ " + proxyStateDir + "/\nUSER " + proxyUser +
	"\nHEALTHCHECK --interval=" + proxyHealth.Interval.String() + " --timeout=" + proxyHealth.Timeout.String() +
	" --retries=" + strconv.Itoa(proxyHealth.Retries) + " CMD [\"" + strings.Join(proxyHealth.Test[1:], "\", \"") + "\"]" +
	"\nENTRYPOINT [\"" + proxyBinary + "\"]\nCMD [\"run\"]\n"

// proxyImageRef is the proxy image's reference for the binary bin: a new
// binary or a new Dockerfile is a new image.
func proxyImageRef(bin []byte) string {
	h := sha256.New()
	h.Write(bin)
	h.Write([]byte(proxyDockerfile))
	return ProxyImageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12]
}

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
	ref = proxyImageRef(bin)
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
	if _, err := proxyRuntime(bin, hostLibDirs); err != nil {
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
	// A dynamically linked binary (go install builds with cgo where a C
	// compiler is found) brings its loader and libraries along.
	runtime, err := proxyRuntime(bin, hostLibDirs)
	if err != nil {
		return fmt.Errorf("rollout proxy %s: %w", binaryPath, err)
	}
	if err := scratchimage.Build(ctx, d.engine, ref, map[string]string{LabelManagedBy: "invdeploy"}, append(proxyContext(bin), runtime...)); err != nil {
		return err
	}
	d.out.Event("Image %s built (the rollout proxy)", ref)
	return nil
}

// checkProxyBinary refuses what could not run on the engine: not ELF, not
// Linux, or another architecture (a dynamically linked one brings its
// runtime, see proxyRuntime).
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
	return nil
}

// hostLibDirs are where proxyRuntime looks for shared libraries, in the
// order of the loader's defaults on Linux distributions (multiarch first).
var hostLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// proxyRuntime is what a dynamically linked proxy binary needs on scratch:
// its ELF interpreter and the shared libraries it needs (transitively),
// copied from this machine at the paths the loader looks in (a consistent
// set: the loader and libc travel together, whatever the engine's host
// runs). None for a static binary.
func proxyRuntime(bin []byte, libDirs []string) ([]scratchimage.File, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("read its ELF interpreter: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return nil, nil // static
	}
	files := map[string][]byte{}
	body, err := os.ReadFile(interp)
	if err != nil {
		return nil, fmt.Errorf("dynamically linked, and its loader %s is not on this machine (%v); build it with CGO_ENABLED=0", interp, err)
	}
	files[interp] = body
	queue, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("read its shared libraries: %w", err)
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		lib := queue[0]
		queue = queue[1:]
		if seen[lib] {
			continue
		}
		seen[lib] = true
		path := ""
		for _, dir := range libDirs {
			if fi, err := os.Stat(filepath.Join(dir, lib)); err == nil && fi.Mode().IsRegular() {
				path = filepath.Join(dir, lib)
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("dynamically linked against %s, which is not on this machine; build it with CGO_ENABLED=0", lib)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		files[path] = b
		if lf, err := elf.NewFile(bytes.NewReader(b)); err == nil {
			more, _ := lf.ImportedLibraries()
			queue = append(queue, more...)
			lf.Close()
		}
	}
	var out []scratchimage.File
	dirs := map[string]bool{}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		for d := filepath.Dir(p); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList) // parents before children
	for _, d := range dirList {
		out = append(out, scratchimage.File{Name: "rootfs" + d + "/", Mode: 0o755, Dir: true})
	}
	for _, p := range paths {
		out = append(out, scratchimage.File{Name: "rootfs" + p, Mode: 0o755, Body: files[p]})
	}
	return out, nil
}

// proxyContext is the proxy image's build context: the binary, an
// /etc/passwd naming its user, the directory of its admin socket, and
// that of its state, owned by it through COPY --chown (COPY gives root
// what the context says; a volume mounted on the state's directory starts
// as a copy of it, owner included).
func proxyContext(bin []byte) []scratchimage.File {
	return []scratchimage.File{
		{Name: "Dockerfile", Mode: 0o644, Body: []byte(proxyDockerfile)},
		{Name: "rootfs/", Mode: 0o755, Dir: true},
		{Name: "rootfs/etc/", Mode: 0o755, Dir: true},
		{Name: "rootfs/etc/passwd", Mode: 0o644, Body: []byte("nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n")},
		{Name: "rootfs/etc/group", Mode: 0o644, Body: []byte("nonroot:x:65532:\n")},
		{Name: "rootfs/run/", Mode: 0o755, Dir: true},
		{Name: "rootfs/run/invdeploy-proxy/", Mode: 0o700, Dir: true, UID: 65532},
		{Name: "state/", Mode: 0o700, Dir: true},
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
