package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
)

// remotePlanStack: an app rolled behind the proxy (an image moved from
// here) and a service whose image remote up builds here first.
const remotePlanStack = `services:
  app:
    image: ${APP_IMAGE}
    ports:
      - "22080:8080"
    healthcheck:
      test: ["CMD", "/rollapp", "check"]
      interval: 1s
      timeout: 2s
      retries: 3
    x-invdeploy:
      health_path: /healthz
  web:
    image: instack-remoteplan-web:${WEB_TAG}
    build: ./web
    expose: ["8080"]
    healthcheck:
      test: ["CMD", "/rollapp", "check"]
      interval: 1s
      timeout: 2s
      retries: 3
`

// planOp is what the dry run and the run are compared on.
type planOp struct {
	Op      string `json:"op"`
	Service string `json:"service"`
	Target  string `json:"target"`
	Reason  string `json:"reason"`
	If      string `json:"if"`
}

// TestRemoteDryRunIsWhatUpDoes: on the simulated EC2 host, remote up
// --dry-run changes nothing on the host and prints the operations remote up
// then performs, operation for operation (images built here and moved, the
// proxy image, networks, containers): on a cold host, and again for a new
// app image, which the dry run shows moved and rolled.
func TestRemoteDryRunIsWhatUpDoes(t *testing.T) {
	h := startRemoteHost(t, 0)
	local := newLocalEnv(t)
	rollappImages(t, local.docker)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web", "Dockerfile"), []byte("FROM rollapp:e2e-v1\nENV VERSION=3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(remotePlanStack), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := project(t, "t")
	t.Cleanup(func() {
		_, _ = local.docker.ImageRemove(t.Context(), "instack-remoteplan-web:"+tag, image.RemoveOptions{})
	})
	base := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "INVDEPLOY_PROXY_BINARY=" + proxyBinary(t), "WEB_TAG=" + tag}
	ops := func(what, stdout string, key string) []planOp {
		t.Helper()
		var v map[string]json.RawMessage
		if err := json.Unmarshal([]byte(stdout), &v); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, stdout)
		}
		var out []planOp
		if err := json.Unmarshal(v[key], &out); err != nil {
			t.Fatalf("%s: %s: %v", what, key, err)
		}
		return out
	}
	same := func(plan, did []planOp) {
		t.Helper()
		a, _ := json.MarshalIndent(plan, "", " ")
		b, _ := json.MarshalIndent(did, "", " ")
		if string(a) != string(b) {
			t.Fatalf("remote up did\n%s\nthe dry run said\n%s", b, a)
		}
	}
	for i, appImage := range []string{"rollapp:e2e-v1", "rollapp:e2e-v2"} {
		env := append(append([]string{}, base...), "APP_IMAGE="+appImage)
		// Sorted: the engine lists images created in the same second in any order.
		hostState := func() string {
			ids := strings.Fields(h.Docker(t, "ps", "-a", "-q") + h.Docker(t, "images", "-q"))
			sort.Strings(ids)
			return strings.Join(ids, "\n")
		}
		hostBefore := hostState()
		dry := remoteRun(t, h, env, "up", "-f", file, "-p", "remoteplan", "--dry-run", "-o", "json")
		mustCode(t, dry, 0, "remote up --dry-run")
		if after := hostState(); after != hostBefore {
			t.Fatalf("the dry run changed the host:\nbefore %q\nafter %q", hostBefore, after)
		}
		plan := ops("dry run", dry.Stdout, "operations")
		kinds := ""
		for _, op := range plan {
			kinds += op.Op + " " + op.Target + "\n"
		}
		switch i {
		case 0:
			for _, want := range []string{"local-build instack-remoteplan-web:" + tag, "image-send instack-remoteplan-web:", "image-send rollapp:e2e-v1", "proxy-image invdeploy-proxy:", "proxy-create remoteplan-app-proxy", "proxy-create remoteplan-web-proxy", "container-create remoteplan-app-1"} {
				if !strings.Contains(kinds, want) {
					t.Fatalf("cold plan lacks %q:\n%s", want, kinds)
				}
			}
		case 1:
			if !strings.Contains(kinds, "image-send rollapp:e2e-v2") || !strings.Contains(kinds, "container-roll remoteplan-app-1") || strings.Contains(kinds, "web-1") || strings.Contains(kinds, "local-build") {
				t.Fatalf("plan for a new app image:\n%s", kinds)
			}
		}
		up := remoteRun(t, h, env, "up", "-f", file, "-p", "remoteplan", "--wait-timeout", "90s", "-o", "json")
		mustCode(t, up, 0, "remote up")
		same(plan, ops("remote up", up.Stdout, "operations"))
	}
	r := remoteRun(t, h, base, "down", "-p", "remoteplan", "--volumes")
	mustCode(t, r, 0, "remote down")
}
