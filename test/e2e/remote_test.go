package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// remoteRun is invdeploy remote SUBCOMMAND ... against h with the test's key
// and known_hosts.
func remoteRun(t *testing.T, h *remoteHost, env []string, args ...string) cliResult {
	t.Helper()
	full := append([]string{"remote"}, args...)
	full = append(full, "--host", h.URL(), "--identity", h.Key, "--known-hosts", h.KnownHosts)
	return invdeploy(t, env, "", full...)
}

func mustCode(t *testing.T, r cliResult, want int, what string) {
	t.Helper()
	if r.Code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r.Code, want, tail(r.Stdout, 30), tail(r.Stderr, 40))
	}
}

var sentBytes = regexp.MustCompile(`1 SSH connection to \S+, \d+ API streams, sent (\d+) bytes`)

// wireBytes is what the run sent over its SSH connection.
func wireBytes(t *testing.T, r cliResult) int64 {
	t.Helper()
	m := sentBytes.FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("no connection summary in stderr:\n%s", tail(r.Stderr, 10))
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func httpJSON(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// maxWarmRemoteUpBytes bounds what a remote up of an unchanged, settled
// stack sends over its SSH connection.
const maxWarmRemoteUpBytes = 6500

// waitHealthy waits until the host's engine reports each container healthy.
func (h *remoteHost) waitHealthy(t *testing.T, names ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := h.Docker(t, append([]string{"inspect", "-f", "{{.State.Health.Status}}"}, names...)...)
		if strings.Count(out, "healthy\n") == len(names) && !strings.Contains(out, "unhealthy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers %v not healthy on the host after 60 s:\n%s", names, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestRemoteOverSSH deploys the bundled stack to a simulated EC2 host that
// starts with no images, over one SSH connection per run.
func TestRemoteOverSSH(t *testing.T) {
	h := startRemoteHost(t, 0)
	// The API publishes its port itself here (the bytes and ports checked
	// below are those of the plain stack); TestRemoteRollout deploys the
	// rollout proxy to a remote host.
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "INVDEPLOY_PROXY_BINARY=none"}
	if imgs := strings.TrimSpace(h.Docker(t, "images", "-q")); imgs != "" {
		t.Fatalf("the host should start with no images, has:\n%s", imgs)
	}
	runs, start := 0, h.Accepted(t)
	api := "http://" + h.Addr + ":8000"
	rr := func(t *testing.T, args ...string) cliResult {
		t.Helper()
		runs++
		return remoteRun(t, h, env, args...)
	}

	t.Run("unknown host key refuses", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		before := h.Accepted(t)
		r := invdeploy(t, env, "", "remote", "status", "--host", h.URL(), "--identity", h.Key, "--known-hosts", kh)
		mustCode(t, r, 1, "status with an unknown host key")
		fp := strings.Fields(run(t, "ssh-keygen", "-lf", filepath.Join(h.dir, "hostkey.pub")))[1]
		for _, want := range []string{"host key verification failed", fp, "--accept-new-host-key"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
			}
		}
		if h.Accepted(t) != before {
			t.Error("logged in although the host key was refused")
		}
		if _, err := os.Stat(kh); err == nil {
			t.Error("known_hosts written without --accept-new-host-key")
		}
	})

	t.Run("a weak password refuses before any image is sent", func(t *testing.T) {
		weak := append(append([]string{}, env...), "INVOICING_DB_PASSWORD=password")
		runs++
		r := remoteRun(t, h, weak, "up")
		mustCode(t, r, 3, "remote up with a weak database password")
		if !strings.Contains(r.Stderr, "db_password") {
			t.Errorf("the refusal does not name the secret:\n%s", tail(r.Stderr, 10))
		}
		if strings.Contains(r.Stdout+r.Stderr, "=password") || strings.Contains(r.Stdout+r.Stderr, "\"password\"") {
			t.Errorf("the refusal quotes the password:\n%s", tail(r.Stderr, 10))
		}
		if imgs := strings.TrimSpace(h.Docker(t, "images", "-q")); imgs != "" {
			t.Errorf("a refused remote up left images on the host:\n%s", imgs)
		}
		if n := wireBytes(t, r); n > 1<<20 {
			t.Errorf("a refused remote up sent %d bytes", n)
		}
	})

	var coldBytes int64
	t.Run("cold up transfers images and publishes the API", func(t *testing.T) {
		r := rr(t, "up", "--allow-from", "0.0.0.0/0", "--admin-cidr", h.GatewayIP+"/32")
		mustCode(t, r, 0, "cold remote up")
		coldBytes = wireBytes(t, r)
		t.Logf("cold remote up: %s, %d bytes sent", r.Elapsed.Round(time.Millisecond), coldBytes)
		for _, want := range []string{"--port 8000 --cidr 0.0.0.0/0", "--port 22 --cidr " + h.GatewayIP + "/32", "2 sent"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, tail(r.Stderr, 30))
			}
		}
		if !strings.Contains(r.Stdout, api+"/") {
			t.Errorf("stdout does not show %s:\n%s", api, r.Stdout)
		}
		if coldBytes < 1<<20 {
			t.Errorf("cold deploy sent only %d bytes: images were not transferred", coldBytes)
		}
		// Postgres is never published on the host.
		if ports := h.Docker(t, "ps", "--filter", "label=com.docker.compose.service=db", "--format", "{{.Ports}}"); strings.Contains(ports, "->") {
			t.Errorf("db publishes a port on the host: %s", ports)
		}
		// The generated database password is mirrored per target (never
		// shared with the local engine's) and appears in no output.
		xdg := strings.TrimPrefix(env[0], "XDG_CONFIG_HOME=")
		mirrors, _ := filepath.Glob(filepath.Join(xdg, "invdeploy", "invoicing", "targets", "*", "db_password"))
		if len(mirrors) != 1 {
			t.Fatalf("want one per-target mirror of db_password under %s, got %v", xdg, mirrors)
		}
		if _, err := os.Stat(filepath.Join(xdg, "invdeploy", "invoicing", "db_password")); err == nil {
			t.Error("the remote password was stored where the local engine's is")
		}
		pw, err := os.ReadFile(mirrors[0])
		if err != nil || len(pw) < 32 {
			t.Fatalf("read the mirrored password: %v", err)
		}
		if strings.Contains(r.Stdout+r.Stderr, strings.TrimSpace(string(pw))) {
			t.Error("the database password appears in the output")
		}
	})

	var id string
	t.Run("API answers on the host address", func(t *testing.T) {
		if code, _ := httpJSON(t, "GET", api+"/healthz", ""); code != 200 {
			t.Fatalf("healthz: %d", code)
		}
		code, inv := httpJSON(t, "POST", api+"/v1/invoices", `{"currency":"EUR","customer":{"name":"ACME"},"line_items":[{"description":"remote","quantity":"2","unit_amount":1500}]}`)
		if code != 201 {
			t.Fatalf("create invoice: %d %v", code, inv)
		}
		id, _ = inv["id"].(string)
		if id == "" {
			t.Fatalf("no id in %v", inv)
		}
	})

	t.Run("unchanged redeploy transfers no image bytes", func(t *testing.T) {
		// Once the host's engine reports every container healthy, a warm
		// up has nothing to wait for or probe: what it sends is its
		// questions to the engine and the deploy lock.
		h.waitHealthy(t, "invoicing-api-1", "invoicing-db-1")
		r := rr(t, "up")
		mustCode(t, r, 0, "warm remote up")
		warm := wireBytes(t, r)
		t.Logf("warm remote up: %s, %d bytes sent", r.Elapsed.Round(time.Millisecond), warm)
		if !strings.Contains(r.Stderr, "0 sent (0B)") || !strings.Contains(r.Stdout, "nothing changed") {
			t.Errorf("warm deploy moved images or changed containers:\n%s\n%s", r.Stdout, tail(r.Stderr, 20))
		}
		// 5,320 bytes measured (SSH login included); 14,596 when the
		// preflights' questions were asked three times, the lock image was
		// inspected first and its create carried a HostConfig, and every
		// request carried net/http's default headers.
		if warm > maxWarmRemoteUpBytes {
			t.Errorf("warm remote up sent %d bytes over SSH, want at most %d: some engine call was added to every remote up (a dockerd started with --debug logs each request it serves)", warm, maxWarmRemoteUpBytes)
		}
	})

	t.Run("down then up keeps the invoice", func(t *testing.T) {
		mustCode(t, rr(t, "down"), 0, "remote down")
		if ps := strings.TrimSpace(h.Docker(t, "ps", "-aq", "--filter", "label=com.docker.compose.project=invoicing")); ps != "" {
			t.Fatalf("containers left after down: %s", ps)
		}
		mustCode(t, rr(t, "up"), 0, "remote up after down")
		if code, inv := httpJSON(t, "GET", api+"/v1/invoices/"+id, ""); code != 200 || inv["id"] != id {
			t.Fatalf("invoice %s after down/up: %d %v", id, code, inv)
		}
		r := rr(t, "status")
		mustCode(t, r, 0, "remote status")
		if !strings.Contains(r.Stdout, "invoicing-api-1") && !strings.Contains(r.Stdout, "api") {
			t.Errorf("status:\n%s", r.Stdout)
		}
	})

	t.Run("releases, lock and rollback on the host", func(t *testing.T) {
		r := rr(t, "releases", "--output", "json")
		mustCode(t, r, 0, "remote releases")
		var list struct {
			Releases []struct {
				Number  int    `json:"number"`
				Command string `json:"command"`
			} `json:"releases"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list.Releases) == 0 {
			t.Fatalf("remote releases: %v\n%s", err, r.Stdout)
		}
		if list.Releases[0].Command != "remote up" {
			t.Errorf("newest release was recorded by %q, want remote up", list.Releases[0].Command)
		}
		r = rr(t, "lock")
		mustCode(t, r, 0, "remote lock")
		if !strings.Contains(r.Stdout, "the deploy lock is free") {
			t.Errorf("remote lock with no deploy running:\n%s", r.Stdout)
		}

		// The rollback's up publishes the API as remote up does: on all
		// interfaces of the host (a local-style load would bind it to the
		// host's loopback and the API would vanish from its address).
		to := strconv.Itoa(list.Releases[0].Number)
		r = rr(t, "rollback", "--to", to)
		mustCode(t, r, 0, "remote rollback --to "+to)
		if !strings.Contains(r.Stdout, "back on the images of release "+to) || !strings.Contains(r.Stdout, " on "+h.Addr) {
			t.Errorf("remote rollback stdout:\n%s", r.Stdout)
		}
		if n := wireBytes(t, r); n > 1<<20 {
			t.Errorf("remote rollback sent %d bytes: it should send no image", n)
		}
		if ports := h.Docker(t, "ps", "--filter", "label=com.docker.compose.service=api", "--format", "{{.Ports}}"); !strings.Contains(ports, "0.0.0.0:8000->8000") {
			t.Errorf("after the rollback the API publishes %q, want 0.0.0.0:8000", ports)
		}
		if code, inv := httpJSON(t, "GET", api+"/v1/invoices/"+id, ""); code != 200 || inv["id"] != id {
			t.Fatalf("invoice %s after the rollback: %d %v", id, code, inv)
		}
		// A rollback to the release that runs changes nothing (each
		// service already runs that image), so no release is recorded.
		r = rr(t, "releases")
		mustCode(t, r, 0, "remote releases after the rollback")
		if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); len(lines) < 2 || !strings.Contains(lines[1], to+" (current)") || !strings.Contains(lines[1], "remote up") {
			t.Errorf("a rollback to the current release recorded a new one:\n%s", r.Stdout)
		}
		r = rr(t, "lock", "--break")
		mustCode(t, r, 0, "remote lock --break")
		if !strings.Contains(r.Stdout, "nobody held the deploy lock") {
			t.Errorf("the rollback left its deploy lock behind:\n%s", r.Stdout)
		}
	})

	t.Run("a port taken on the host refuses with exit 3", func(t *testing.T) {
		mustCode(t, rr(t, "down"), 0, "remote down")
		l := h.InNetns("python3", "-m", "http.server", "8000", "--bind", "0.0.0.0")
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { l.Process.Kill(); l.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if resp, err := http.Get(api + "/"); err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("listener on the host did not start")
			}
			time.Sleep(100 * time.Millisecond)
		}
		r := rr(t, "up")
		mustCode(t, r, 3, "remote up with port 8000 held on the host")
		if !strings.Contains(r.Stderr, "held by a process on the remote host") {
			t.Errorf("stderr:\n%s", tail(r.Stderr, 10))
		}
		if ps := strings.TrimSpace(h.Docker(t, "ps", "-aq", "--filter", "label=com.docker.compose.project=invoicing")); ps != "" {
			t.Errorf("a refused up created containers: %s", ps)
		}

		// A stack that builds nothing is probed too: its image (streamed to
		// the host) has no probe subcommand, so the engine is asked to bind.
		dir := t.TempDir()
		compose := "name: imageonly\nservices:\n  web:\n    image: debian:bookworm\n    command: [\"sleep\", \"infinity\"]\n    ports: [\"8000:8000\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
			t.Fatal(err)
		}
		r = rr(t, "up", "-f", filepath.Join(dir, "compose.yaml"))
		mustCode(t, r, 3, "remote up of an image-only stack with port 8000 held on the host")
		if !strings.Contains(r.Stderr, "held by a process on the remote host") {
			t.Errorf("stderr:\n%s", tail(r.Stderr, 10))
		}
		if ps := strings.TrimSpace(h.Docker(t, "ps", "-aq", "--filter", "label=com.docker.compose.project=imageonly")); ps != "" {
			t.Errorf("a refused up created containers: %s", ps)
		}
	})

	t.Run("down --volumes removes the data", func(t *testing.T) {
		mustCode(t, rr(t, "down", "--volumes"), 0, "remote down --volumes")
		if vols := h.Docker(t, "volume", "ls", "-q", "--filter", "label=com.docker.compose.project=invoicing"); strings.TrimSpace(vols) != "" {
			t.Errorf("volumes left: %s", vols)
		}
	})

	if got := h.Accepted(t) - start; got != runs {
		t.Errorf("sshd accepted %d connections for %d invdeploy runs, want exactly one each", got, runs)
	}
}
