package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoteRollout is the rollout scenario on the simulated EC2 host over
// one SSH connection per run: the proxy's image is built there, a new image
// rolls under 16 clients with 0 failed requests, a release that exits at
// once exits 4 with the old version serving, and rollback returns to
// release 1, again with 0 failed requests.
func TestRemoteRollout(t *testing.T) {
	t.Parallel()
	h := startNamedRemoteHost(t, 0, bedNaming{netns: "rollbed", hostIf: "rolh", nsIf: "rolg", dir: "roll-ec2-", net: 238, bip: 237})
	c := newLocalEnv(t)
	rollappImages(t, c.docker)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rollStack), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "compose.yaml")
	base := "http://" + h.Addr + ":18480"
	env := func(image, mode string) []string {
		return []string{"XDG_CONFIG_HOME=" + t.TempDir(), "INVDEPLOY_PROXY_BINARY=" + proxyBinary(t),
			"APP_IMAGE=" + image, "APP_MODE=" + mode, "APP_BIND=0.0.0.0", "APP_PORT=18480"}
	}
	runs, start := 0, h.Accepted(t)
	rr := func(env []string, args ...string) cliResult {
		t.Helper()
		runs++
		return remoteRun(t, h, env, append(args, "-f", file, "-p", "rollremote")...)
	}
	r := rr(env("rollapp:e2e-v1", "ok"), "up", "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32", "--wait-timeout", "90s")
	mustCode(t, r, 0, "first remote up")
	if !strings.Contains(r.Stderr, "(the rollout proxy)") || !strings.Contains(r.Stderr, "rollremote-app-proxy created and started") {
		t.Fatalf("the proxy was not built and started on the host:\n%s", tail(r.Stderr, 30))
	}
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "1" {
		t.Fatalf("after the first up: version %q, %v", v, err)
	}

	load := startLoad(16, func(c *http.Client) error { _, err := getOK(c, base+"/"); return err })
	r = rr(env("rollapp:e2e-v2", "ok"), "up", "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32", "--wait-timeout", "90s")
	mustCode(t, r, 0, "remote roll")
	if !strings.Contains(r.Stderr, "switched to") {
		t.Fatalf("remote up did not roll:\n%s", tail(r.Stderr, 30))
	}
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "2" {
		t.Fatalf("after the roll: version %q, %v", v, err)
	}
	r = rr(env("rollapp:e2e-v2", "exit"), "up", "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32", "--wait-timeout", "20s")
	mustCode(t, r, 4, "remote up of a release that exits at once")
	if !strings.Contains(r.Stderr, "keeps serving") {
		t.Fatalf("the failed roll does not say the old container serves:\n%s", tail(r.Stderr, 30))
	}
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "2" {
		t.Fatalf("after the failed release: version %q, %v", v, err)
	}
	r = rr(env("rollapp:e2e-v2", "ok"), "rollback", "--wait-timeout", "90s")
	mustCode(t, r, 0, "remote rollback")
	if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "1" {
		t.Fatalf("after the rollback: version %q, %v\n%s", v, err, tail(r.Stderr, 20))
	}
	ok, failed, failures := load.finish()
	t.Logf("load through the remote proxy: %d ok, %d failed", ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed on the remote host; first: %v", failed, failures)
	}
	if ok < 200 {
		t.Fatalf("only %d requests ran", ok)
	}
	mustCode(t, rr(env("rollapp:e2e-v2", "ok"), "down", "--volumes"), 0, "remote down")
	if got := h.Accepted(t) - start; got != runs {
		t.Errorf("sshd accepted %d connections for %d runs, want one each", got, runs)
	}
}
