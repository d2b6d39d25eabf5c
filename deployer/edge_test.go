package deployer

import (
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

func edgeService(ext map[string]any, ports ...types.ServicePortConfig) types.ServiceConfig {
	s := types.ServiceConfig{Name: "api", Extensions: types.Extensions{ExtService: ext}}
	s.Ports = ports
	return s
}

func TestEdgeOf(t *testing.T) {
	published := types.ServicePortConfig{Target: 8000, Published: "8000", Protocol: "tcp"}
	loopback := types.ServicePortConfig{HostIP: "127.0.0.1", Target: 8000, Published: "8001"}
	for _, tc := range []struct {
		name     string
		ext      map[string]any
		ports    []types.ServicePortConfig
		upstream string
		hsts     int
		err      string
	}{
		{name: "none", ext: map[string]any{"health_path": "/readyz"}, ports: []types.ServicePortConfig{published}},
		{name: "list", ext: map[string]any{"hosts": []any{"api.example.com", "www.example.com"}}, ports: []types.ServicePortConfig{published}, upstream: "127.0.0.1:8000"},
		{name: "string", ext: map[string]any{"hosts": "api.example.com", "hsts": true}, ports: []types.ServicePortConfig{loopback}, upstream: "127.0.0.1:8001", hsts: 365 * 86400},
		{name: "hsts max-age", ext: map[string]any{"hosts": "api.example.com", "hsts": "24h"}, ports: []types.ServicePortConfig{published}, upstream: "127.0.0.1:8000", hsts: 86400},
		{name: "bad host", ext: map[string]any{"hosts": []any{"api_example"}}, ports: []types.ServicePortConfig{published}, err: "api_example"},
		{name: "twice", ext: map[string]any{"hosts": []any{"a.example.com", "a.example.com"}}, ports: []types.ServicePortConfig{published}, err: "twice"},
		{name: "no port", ext: map[string]any{"hosts": "a.example.com"}, err: "publishes 0 TCP ports"},
		{name: "bad hsts", ext: map[string]any{"hosts": "a.example.com", "hsts": "soon"}, ports: []types.ServicePortConfig{published}, err: "hsts"},
		{name: "cert alone", ext: map[string]any{"hosts": "a.example.com", "tls_certificate": "crt"}, ports: []types.ServicePortConfig{published}, err: "go together"},
		{name: "hsts without hosts", ext: map[string]any{"hsts": true}, err: "need hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se, err := edgeOf(edgeService(tc.ext, tc.ports...))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if se.Upstream != tc.upstream || se.HSTS != tc.hsts {
				t.Fatalf("got %+v", se)
			}
		})
	}
	// The rollout's own parser takes the edge's keys.
	if _, err := parseServiceExt(edgeService(map[string]any{"hosts": "a.example.com", "hsts": true, "tls_certificate": "c", "tls_key": "k"})); err != nil {
		t.Fatal(err)
	}
}

func TestEdgeSpecHardened(t *testing.T) {
	spec := edgeSpec("invdeploy-proxy:x", EdgeOptions{HTTPPort: 8080, ACMEEmail: "ops@example.com"}, nil, "172.17.0.1")
	h := spec.Host
	if spec.Name != EdgeName || h.NetworkMode != "host" || !h.ReadonlyRootfs || len(h.CapDrop) != 1 || len(h.CapAdd) != 1 || h.CapAdd[0] != "NET_BIND_SERVICE" {
		t.Fatalf("edge spec: %+v", h)
	}
	if h.Mounts[0].Source != EdgeVolume {
		t.Fatalf("volume %q", h.Mounts[0].Source)
	}
	cmd := strings.Join(spec.Config.Cmd, " ")
	for _, want := range []string{"--http :8080", "--https :443", "--acme-email ops@example.com", "--metrics 172.17.0.1:9190"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("cmd %q lacks %q", cmd, want)
		}
	}
	other := edgeSpec("invdeploy-proxy:x", EdgeOptions{HTTPPort: 8080}, nil, "172.17.0.1")
	if other.Config.Labels[LabelEdgeHash] == spec.Config.Labels[LabelEdgeHash] {
		t.Fatal("another setting, the same hash: the edge would not be upgraded")
	}
}

// FuzzEdgeOf: x-invdeploy hosts from a compose file never panic the
// parser, and what it accepts routes to the published port.
func FuzzEdgeOf(f *testing.F) {
	f.Add("api.example.com", "true")
	f.Add("a.example.com,b.example.com", "8760h")
	f.Add("*.x", "")
	f.Add("", "1s")
	f.Fuzz(func(t *testing.T, hosts, hsts string) {
		ext := map[string]any{"hosts": hosts}
		if hsts != "" {
			ext["hsts"] = hsts
		}
		se, err := edgeOf(edgeService(ext, types.ServicePortConfig{Target: 80, Published: "8000"}))
		if err != nil || len(se.Hosts) == 0 {
			return
		}
		if se.Upstream != "127.0.0.1:8000" || se.HSTS < 0 {
			t.Fatalf("accepted %q %q: %+v", hosts, hsts, se)
		}
	})
}

// TestSwarmRefusesEdgeKeys: the Swarm edge serves plain HTTP, so the keys
// of the HTTPS edge refuse there instead of being dropped.
func TestSwarmRefusesEdgeKeys(t *testing.T) {
	for _, k := range []string{"hosts", "hsts", "tls_certificate", "tls_key"} {
		_, err := ProxyLimits(edgeService(map[string]any{k: "x"}))
		if err == nil || !strings.Contains(err.Error(), "not available on Swarm") {
			t.Errorf("%s: %v", k, err)
		}
	}
	if _, err := ProxyLimits(edgeService(map[string]any{"max_connections": 10})); err != nil {
		t.Fatal(err)
	}
}
