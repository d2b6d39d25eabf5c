package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestBenchRemote is `make bench-remote`: remote up to a fresh simulated EC2
// host cold (every image transferred) and warm (unchanged), with the bytes
// each run sent over its SSH connection. Opt-in: INVDEPLOY_BENCH_REMOTE=1.
func TestBenchRemote(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_REMOTE") == "" {
		t.Skip("benchmark: run with make bench-remote (INVDEPLOY_BENCH_REMOTE=1)")
	}
	// Build the app image outside the measurement: cold means images
	// transferred, not compiled.
	mustCode(t, invdeploy(t, nil, "", "build"), 0, "build")
	h := startRemoteHost(t, 0)
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	type row struct {
		name    string
		elapsed time.Duration
		bytes   int64
	}
	var rows []row
	measure := func(name string) {
		r := remoteRun(t, h, env, "up")
		mustCode(t, r, 0, name)
		rows = append(rows, row{name, r.Elapsed, wireBytes(t, r)})
	}
	measure("cold (images transferred)")
	for i := 1; i <= 3; i++ {
		measure(fmt.Sprintf("warm #%d (unchanged)", i))
	}
	mustCode(t, remoteRun(t, h, env, "down", "--volumes"), 0, "down")

	fmt.Printf("\nbench-remote: invdeploy remote up over one SSH connection to a simulated EC2 host\n")
	fmt.Printf("%-28s %10s %16s\n", "run", "seconds", "bytes sent")
	for _, r := range rows {
		fmt.Printf("%-28s %10.2f %16d\n", r.name, r.elapsed.Seconds(), r.bytes)
	}
}
