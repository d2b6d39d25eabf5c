package deployer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// TestProxyLimitsFromCompose: x-invdeploy's limit keys reach the proxy's
// command line (and its hash: a change recreates the proxy); the defaults
// add no flag; bad values are refused by preflight naming the key. The
// proxy keeps its state on an anonymous volume and carries the image's
// healthcheck.
func TestProxyLimitsFromCompose(t *testing.T) {
	svc := func(ext string) string {
		return "services:\n  w:\n    image: x\n    ports: [\"8080:80\"]\n    x-invdeploy: {health_path: /up" + ext + "}\n"
	}
	spec := func(compose string) (*containerSpec, error) {
		st := loadStack(t, compose, nil)
		s := st.Project.Services["w"]
		ro, err := rolloutOf(s, true)
		if err != nil {
			return nil, err
		}
		return proxySpec(st.Project, s, ro, "proxy:1")
	}
	def, err := spec(svc(""))
	if err != nil {
		t.Fatal(err)
	}
	got, err := spec(svc(", max_connections: 512, read_timeout: 1m, idle_timeout: 5s, write_timeout: 10s, upstream_timeout: 2m"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := strings.Join(got.Config.Cmd, " ")
	for _, want := range []string{"--max-conns 512", "--read-timeout 1m0s", "--idle-timeout 5s", "--write-timeout 10s", "--upstream-timeout 2m0s", "--state /var/lib/invdeploy-proxy/state.json"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("proxy command %q lacks %q", cmd, want)
		}
	}
	if strings.Contains(strings.Join(def.Config.Cmd, " "), "--max-conns") {
		t.Errorf("default limits added flags: %v", def.Config.Cmd)
	}
	if def.Config.Labels[LabelProxyHash] == got.Config.Labels[LabelProxyHash] {
		t.Error("changed limits keep the proxy's hash: the proxy would not be recreated")
	}
	if _, ok := def.Config.Volumes[proxyStateDir]; !ok || def.Host.Memory != proxyMemory || def.Config.Env[0] != "GOMEMLIMIT="+proxyGoMemLimit {
		t.Errorf("state volume %v, memory %d, env %v", def.Config.Volumes, def.Host.Memory, def.Config.Env)
	}
	if def.Config.Healthcheck == nil || strings.Join(def.Config.Healthcheck.Test, " ") != "CMD /invdeploy-proxy healthcheck" ||
		!strings.Contains(proxyDockerfile, "HEALTHCHECK --interval=2s --timeout=2s --retries=3 CMD [\"/invdeploy-proxy\", \"healthcheck\"]") {
		t.Errorf("healthcheck: container %+v, image Dockerfile %q", def.Config.Healthcheck, proxyDockerfile)
	}
	l, err := ProxyLimits(loadStack(t, svc(", max_connections: \"2048\""), nil).Project.Services["w"])
	if err != nil || l.MaxConns != 2048 || l.ReadTimeout != httpguard.Defaults().ReadTimeout {
		t.Errorf("ProxyLimits: %+v %v", l, err)
	}
	for key, bad := range map[string]string{"max_connections": "0", "read_timeout": "soon", "idle_timeout": "1ms", "upstream_timeout": "48h"} {
		st := loadStack(t, svc(", "+key+": "+bad), nil)
		if _, err := spec(svc(", " + key + ": " + bad)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %s accepted (%v)", key, bad, err)
		}
		f := newFakeEngine()
		f.images["x"] = "sha256:x"
		if _, err := New(f, nil).Check(context.Background(), st, CheckOptions{}); !errors.Is(err, ErrPreflight) {
			t.Errorf("%s: %s: preflight %v", key, bad, err)
		}
	}
}
