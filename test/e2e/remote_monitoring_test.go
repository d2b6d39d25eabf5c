package e2e

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoteMonitoringProfile: `remote up --profile monitoring` on a
// simulated EC2 host that starts with no images: the printed security-group
// rules open the API and SSH only; Prometheus is published on the host's
// 127.0.0.1 alone (refused from here on the host's address) and
// postgres_exporter not at all; `remote tunnel prometheus` reaches
// Prometheus through the SSH connection, and there the api and postgres
// targets are up and PostgreSQL's start time (the exporter's extra query,
// delivered as a config over the Engine API) is scraped.
func TestRemoteMonitoringProfile(t *testing.T) {
	t.Parallel() // its own host, names and subnets
	h := startNamedRemoteHost(t, 0, bedNaming{netns: "monbed", hostIf: "monh", nsIf: "mong", dir: "mon-ec2-", net: 234, bip: 233})
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "INVDEPLOY_PROXY_BINARY=none"} // the rollout on a remote host: TestRemoteRollout
	t.Cleanup(func() { remoteRun(t, h, env, "down", "--volumes", "-q") })

	r := remoteRun(t, h, env, "up", "--profile", "monitoring", "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32")
	mustCode(t, r, 0, "remote up --profile monitoring")
	t.Logf("remote up --profile monitoring (cold): %s, %d bytes sent", r.Elapsed.Round(time.Second), wireBytes(t, r))
	for _, p := range []string{"9090", "9187"} {
		if strings.Contains(r.Stderr, "--port "+p+" ") {
			t.Errorf("the printed rules open %s:\n%s", p, tail(r.Stderr, 30))
		}
	}
	if !strings.Contains(r.Stderr, "--port 8000 --cidr 0.0.0.0/0") {
		t.Errorf("the printed rules do not open the API:\n%s", tail(r.Stderr, 30))
	}

	ports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(h.Docker(t, "ps", "--format", "{{.Label \"com.docker.compose.service\"}}\t{{.Ports}}")), "\n") {
		svc, p, _ := strings.Cut(line, "\t")
		ports[svc] = p
	}
	if p := ports["prometheus"]; !strings.Contains(p, "127.0.0.1:9090->9090/tcp") || strings.Contains(p, "0.0.0.0") {
		t.Errorf("prometheus publishes %q on the host, want 127.0.0.1:9090 only (all: %v)", p, ports)
	}
	if p, ok := ports["postgres-exporter"]; !ok || strings.Contains(p, "->") {
		t.Errorf("postgres-exporter: running %v, ports %q: want running and unpublished (all: %v)", ok, p, ports)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.Addr, "9090"), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("Prometheus answers on the host's address %s:9090; it must stay on the host's 127.0.0.1", h.Addr)
	}

	// The tunnel runs until interrupted, as a user runs it.
	local := portInRange(t, 18800, 18899)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, invdeployBinary(t), "remote", "tunnel", "prometheus", "--local-port", strconv.Itoa(local),
		"--host", h.URL(), "--identity", h.Key, "--known-hosts", h.KnownHosts)
	cmd.Dir = repoRoot(t)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Errorf("tunnel after Ctrl-C: %v\n%s", err, stderr.String())
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "127.0.0.1:"+strconv.Itoa(local)) {
		t.Fatalf("tunnel said %q (%v)\n%s", line, err, stderr.String())
	}
	prom := "http://127.0.0.1:" + strconv.Itoa(local)
	for _, q := range []string{`up{job="api"} == 1`, `up{job="postgres"} == 1`, `pg_up == 1`, `pg_postmaster_start_time_seconds > 0`} {
		waitSeries(t, prom, "through the tunnel", q, 2*time.Minute, func(promSample) bool { return true })
	}
	t.Logf("Prometheus on the host reached through the tunnel: api and postgres up, PostgreSQL's start time scraped")
}
