package e2e

import (
	"archive/tar"
	"crypto/sha256"
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
)

// TestBenchRemote is `make bench-remote`: remote up to a fresh simulated EC2
// host cold (every image transferred), warm (unchanged) right after, warm
// once the host's engine reports the stack healthy (nothing left to wait for
// or probe), and after a one-line change in api/ (the new API image sent),
// with the bytes each run sent over its SSH connection; for the change, what
// it sent against the size of the one layer the change made (target: at
// most 1.1 times). Opt-in: INVDEPLOY_BENCH_REMOTE=1.
func TestBenchRemote(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_REMOTE") == "" {
		t.Skip("benchmark: run with make bench-remote (INVDEPLOY_BENCH_REMOTE=1)")
	}
	// Build the app image outside the measurement: cold means images
	// transferred, not compiled.
	mustCode(t, invdeploy(t, nil, "", "build"), 0, "build")
	old := "invoicing-api:" + strings.TrimSpace(run(t, "git", "-C", repoRoot(t), "rev-parse", "--short=12", "HEAD"))
	h := startRemoteHost(t, 0)
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	type row struct {
		name    string
		elapsed time.Duration
		bytes   int64
	}
	var rows []row
	measure := func(name string, env []string, args ...string) {
		r := remoteRun(t, h, env, append([]string{"up"}, args...)...)
		mustCode(t, r, 0, name)
		rows = append(rows, row{name, r.Elapsed, wireBytes(t, r)})
	}
	measure("cold (images transferred)", env)
	for i := 1; i <= 2; i++ {
		measure(fmt.Sprintf("warm #%d (unchanged)", i), env)
	}
	h.waitHealthy(t, "invoicing-api-1", "invoicing-db-1")
	measure("warm, settled (unchanged)", env)

	// A one-line change in api/, in a copy of this commit, built locally
	// (BuildKit, warm cache) by remote up itself and sent.
	dir := editedCopy(t, "Welcome to the Invoicing API! bench-remote edit")
	const edited = "invoicing-api:bench-remote-edit"
	t.Cleanup(func() { exec.Command("docker", "image", "rm", "-f", edited).Run() })
	measure("one-line change in api/", append([]string{"INVOICING_API_TAG=bench-remote-edit"}, env...), "-f", filepath.Join(dir, "compose.yaml"))
	mustCode(t, remoteRun(t, h, env, "down", "--volumes"), 0, "down")
	changed := changedLayerBytes(t, old, edited)

	fmt.Printf("\nbench-remote: invdeploy remote up over one SSH connection to a simulated EC2 host\n")
	fmt.Printf("%-28s %10s %16s\n", "run", "seconds", "bytes sent")
	for _, r := range rows {
		fmt.Printf("%-28s %10.2f %16d\n", r.name, r.elapsed.Seconds(), r.bytes)
	}
	sent := rows[len(rows)-1].bytes
	fmt.Printf("one-line change: sent %d bytes, the layer it changed is %d bytes: ratio %.3f (target <= 1.10)\n", sent, changed, float64(sent)/float64(changed))
}

// editedCopy is a copy of this commit with the welcome text of the API
// replaced by welcome, and the bundled stack as compose.yaml at its root
// (the API's build context).
func editedCopy(t *testing.T, welcome string) string {
	t.Helper()
	dir := t.TempDir()
	archive := exec.Command("git", "-C", repoRoot(t), "archive", "HEAD")
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive: %v", err)
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar: %v", err)
	}
	handlers := filepath.Join(dir, "api", "http", "handlers.go")
	src, err := os.ReadFile(handlers)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), "Welcome to the Invoicing API!", welcome, 1)
	if edited == string(src) {
		t.Fatal("the welcome text is not in api/http/handlers.go")
	}
	if err := os.WriteFile(handlers, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join(dir, "stacks", "invoicing", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), compose, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// changedLayerBytes is the size of the layers of image next that image old
// does not have, as `docker save` (what remote up streams) holds them.
func changedLayerBytes(t *testing.T, old, next string) int64 {
	t.Helper()
	layers := func(image string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Fields(run(t, "docker", "image", "inspect", "-f", `{{range .RootFS.Layers}}{{println .}}{{end}}`, image)) {
			m[l] = true
		}
		return m
	}
	have, want := layers(old), layers(next)
	save := exec.Command("docker", "save", next)
	out, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	defer save.Wait()
	var changed int64
	found := map[string]bool{}
	tr := tar.NewReader(out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("docker save %s: %v", next, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		// A layer's file (legacy <id>/layer.tar, or an OCI blob) hashes
		// to its diff ID.
		sum := sha256.New()
		n, err := io.Copy(sum, tr)
		if err != nil {
			t.Fatal(err)
		}
		diffID := "sha256:" + hex.EncodeToString(sum.Sum(nil))
		if want[diffID] && !found[diffID] {
			found[diffID] = true
			if !have[diffID] {
				changed += n
			}
		}
	}
	if len(found) != len(want) || changed == 0 {
		t.Fatalf("docker save %s: found %d of its %d layers, %d bytes changed against %s", next, len(found), len(want), changed, old)
	}
	return changed
}
