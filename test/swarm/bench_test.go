package swarm

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// TestBenchSwarm is `make bench-swarm`: on a fresh 3-host bed, the time to
// a 3-node swarm, a cold swarm up (every image streamed to every node) and
// a warm no-op one, the bytes sent per node against the size of the images
// (docker save, the floor), and the API's requests/s through the edge at 1
// and 3 replicas. Opt-in: INVDEPLOY_BENCH_SWARM=1.
func TestBenchSwarm(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_SWARM") == "" {
		t.Skip("benchmark: run with make bench-swarm (INVDEPLOY_BENCH_SWARM=1)")
	}
	w := newWorld(t)
	n := w.bed.Nodes
	mgr := n[0].URL()
	const project, port = "swbench", 18730

	// Build outside the measurement: cold means streamed, not compiled.
	build := exec.Command(w.bin, "build", "-q")
	build.Dir = testenv.RepoRoot(t)
	build.Env = append(os.Environ(), "XDG_CONFIG_HOME="+w.xdg)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	start := time.Now()
	w.must(t, 0, nil, "swarm", "init", "--manager", mgr, "--worker", n[1].URL(), "--worker", n[2].URL())
	initTime := time.Since(start)
	start = time.Now()
	w.must(t, 0, nil, "swarm", "init", "--manager", mgr, "--worker", n[1].URL(), "--worker", n[2].URL())
	reinitTime := time.Since(start)

	up := func(scale int) (time.Duration, result) {
		start := time.Now()
		r := w.must(t, 0, nil, "swarm", "up", "--host", mgr, "-p", project, "--port", fmt.Sprint(port), "--scale", fmt.Sprintf("api=%d", scale))
		return time.Since(start), r
	}
	t.Cleanup(func() { w.run(t, nil, "swarm", "down", "--host", mgr, "-p", project) })
	cold, r := up(1)
	sent := sentPerNode(r.stderr)
	warm, _ := up(1)
	start = time.Now()
	w.must(t, 0, nil, "swarm", "status", "--host", mgr, "-p", project)
	statusTime := time.Since(start)

	// The floor of what a node needs: the images as one docker save archive.
	var images []string
	for _, m := range regexp.MustCompile(`(?m)^(?:api|db|api-edge)\s+\S+\s+\d+\s+\S+(?: \(pinned\))?\s+(\S+)$`).FindAllStringSubmatch(r.stdout, -1) {
		images = append(images, m[1])
	}
	saved := saveSize(t, images)
	var unpinned []string
	for _, img := range images {
		if !strings.HasPrefix(img, "postgres:") {
			unpinned = append(unpinned, img)
		}
	}
	savedUnpinned := saveSize(t, unpinned)
	pinnedTo := w.status(t, project)["db"].PinnedTo

	var bases []string
	for i := range n {
		bases = append(bases, w.api(i, port))
	}
	inv := createInvoice(t, bases[0])
	rps1, fail1 := measureRPS(t, bases, inv, 10*time.Second)
	scaleTime, _ := up(3)
	rps3, fail3 := measureRPS(t, bases, inv, 10*time.Second)

	fmt.Printf("\nbench-swarm: 3 simulated EC2 hosts (dockerd + sshd each) on one bridge, this machine's %d cores shared by all\n", numCPU())
	fmt.Printf("%-46s %12s\n", "step", "seconds")
	fmt.Printf("%-46s %12.2f\n", "swarm init, 1 manager + 2 workers", initTime.Seconds())
	fmt.Printf("%-46s %12.2f\n", "swarm init again (nothing to do)", reinitTime.Seconds())
	fmt.Printf("%-46s %12.2f\n", "cold swarm up (images streamed, api=1)", cold.Seconds())
	fmt.Printf("%-46s %12.2f\n", "warm no-op swarm up", warm.Seconds())
	fmt.Printf("%-46s %12.2f\n", "  reference: swarm status (read-only)", statusTime.Seconds())
	fmt.Printf("%-46s %12.2f\n", "swarm up --scale api=3", scaleTime.Seconds())
	fmt.Printf("ratio warm up / status: %.2f\n", warm.Seconds()/statusTime.Seconds())
	fmt.Printf("\n%-6s %-16s %16s %16s %8s\n", "node", "address", "bytes sent", "docker save", "ratio")
	for _, nd := range n {
		floor := savedUnpinned
		if nd.Name == pinnedTo {
			floor = saved
		}
		fmt.Printf("%-6s %-16s %16d %16d %8.3f\n", nd.Name, nd.Addr, sent[nd.Addr], floor, float64(sent[nd.Addr])/float64(floor))
	}
	fmt.Printf("(docker save of what the node runs: %s; postgres only to %s, where db is pinned)\n", strings.Join(images, " "), pinnedTo)
	fmt.Printf("\n%-40s %12s %8s\n", "API through the edge, 16 clients, 10 s", "requests/s", "failed")
	fmt.Printf("%-40s %12.0f %8d\n", "api=1", rps1, fail1)
	fmt.Printf("%-40s %12.0f %8d\n", "api=3", rps3, fail3)
	fmt.Printf("ratio api=3 / api=1: %.2f\n", rps3/rps1)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// sentPerNode reads the "remote: 1 SSH connection to ADDR, ... sent N bytes" lines.
func sentPerNode(stderr string) map[string]int64 {
	out := map[string]int64{}
	for _, m := range regexp.MustCompile(`remote: 1 SSH connection to (\S+), \d+ API streams, sent (\d+) bytes`).FindAllStringSubmatch(stderr, -1) {
		v, _ := strconv.ParseInt(m[2], 10, 64)
		out[m[1]] = v
	}
	return out
}

// saveSize is the size of one docker save archive of images.
func saveSize(t *testing.T, images []string) int64 {
	t.Helper()
	cmd := exec.Command("sh", "-c", `docker save "$@" | wc -c`, "sh")
	cmd.Args = append(cmd.Args, images...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker save %v: %v", images, err)
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return v
}

func measureRPS(t *testing.T, bases []string, inv string, d time.Duration) (float64, int64) {
	t.Helper()
	l := startLoad(t, bases, inv, 16)
	time.Sleep(d)
	ok, failed, _ := l.end()
	return float64(ok+failed) / d.Seconds(), failed
}
