package deployer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

func TestNetworkDiff(t *testing.T) {
	have := network.Summary{
		Driver: "bridge",
		IPAM:   network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.5.0.0/24"}}},
		Labels: map[string]string{LabelProject: "t", LabelNetwork: "back", LabelManagedBy: "invdeploy", LabelVersion: "old", "tier": "back"},
	}
	same := types.NetworkConfig{Labels: types.Labels{"tier": "back"}}
	if d := networkDiff(same, have); len(d) != 0 {
		t.Fatalf("unchanged network differs: %v", d)
	}
	for _, tc := range []struct {
		name string
		nc   types.NetworkConfig
		want string
	}{
		{"driver", types.NetworkConfig{Driver: "macvlan", Labels: types.Labels{"tier": "back"}}, "driver is bridge, compose wants macvlan"},
		{"internal", types.NetworkConfig{Internal: true, Labels: types.Labels{"tier": "back"}}, "internal is false, compose wants true"},
		{"attachable", types.NetworkConfig{Attachable: true, Labels: types.Labels{"tier": "back"}}, "attachable is false, compose wants true"},
		{"subnet", types.NetworkConfig{Ipam: types.IPAMConfig{Config: []*types.IPAMPool{{Subnet: "10.6.0.0/24"}}}, Labels: types.Labels{"tier": "back"}}, "subnets are [10.5.0.0/24], compose wants [10.6.0.0/24]"},
		{"label value", types.NetworkConfig{Labels: types.Labels{"tier": "front"}}, `label tier is "back", compose wants "front"`},
		{"label removed", types.NetworkConfig{}, "label tier is set, compose has none"},
		{"label added", types.NetworkConfig{Labels: types.Labels{"tier": "back", "team": "x"}}, `label team is "", compose wants "x"`},
		{"driver option", types.NetworkConfig{DriverOpts: types.Options{"com.docker.network.driver.mtu": "1400"}, Labels: types.Labels{"tier": "back"}}, `driver option com.docker.network.driver.mtu is "", compose wants "1400"`},
	} {
		d := networkDiff(tc.nc, have)
		if len(d) != 1 || d[0] != tc.want {
			t.Errorf("%s: diff %q, want [%q]", tc.name, d, tc.want)
		}
	}
}

const netStackV1 = `services:
  web:
    image: nginx
    networks: [back]
networks:
  back:
    labels:
      tier: back
`

// TestUpRecreatesChangedNetwork: a network whose compose definition changed
// is recreated with this project's containers on it (removed first, created
// again after); an unchanged one is kept.
func TestUpRecreatesChangedNetwork(t *testing.T) {
	ctx := context.Background()
	f := newFakeEngine()
	f.images["nginx"] = "sha256:nginx"
	d := New(f, nil)
	st := loadStack(t, netStackV1, nil)
	if _, err := d.Up(ctx, st, UpOptions{WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	before := len(f.mutations())
	if _, err := d.Up(ctx, st, UpOptions{WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if extra := f.mutations()[before:]; len(extra) != 0 {
		t.Fatalf("unchanged network: second up changed %v", extra)
	}

	st2 := loadStack(t, strings.Replace(netStackV1, "tier: back", "tier: backend\n    internal: true", 1), nil)
	before = len(f.mutations())
	if _, err := d.Up(ctx, st2, UpOptions{WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(f.mutations()[before:], "\n")
	order := []string{"stop t-web-1", "remove t-web-1", "network-remove n-t_back", "network-create t_back", "create t-web-1", "start t-web-1"}
	at := -1
	for _, step := range order {
		i := strings.Index(got, step)
		if i < at {
			t.Fatalf("want %v in that order, got:\n%s", order, got)
		}
		at = i
	}
	n := f.networks["t_back"]
	if !n.Internal || n.Labels["tier"] != "backend" {
		t.Fatalf("recreated network %+v", n)
	}
}

// TestPreflightRefusesChangedNetworkInUse: a changed network that another
// project's container uses, or that invdeploy did not create for this
// project, is refused (exit 3) and nothing is touched.
func TestPreflightRefusesChangedNetworkInUse(t *testing.T) {
	t.Run("used by another project", func(t *testing.T) {
		f := newFakeEngine()
		f.images["nginx"] = "sha256:nginx"
		st := loadStack(t, netStackV1, nil)
		if _, err := New(f, nil).Up(context.Background(), st, UpOptions{WaitTimeout: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		f.containers["other"] = &fakeContainer{id: "other", name: "shop-worker-1", state: "running",
			cfg: container.Config{Labels: map[string]string{LabelProject: "shop"}}, connected: []string{"t_back"}}
		f.calls = nil
		st2 := loadStack(t, strings.Replace(netStackV1, "tier: back", "tier: front", 1), nil)
		refused(t, f, st2, UpOptions{}, "network t_back: differs from networks.back", `label tier is "back", compose wants "front"`, "containers of other projects use it: shop-worker-1", "docker network disconnect t_back")
	})
	t.Run("not created by invdeploy", func(t *testing.T) {
		f := newFakeEngine()
		f.images["nginx"] = "sha256:nginx"
		f.networks["t_back"] = network.Summary{ID: "n-x", Name: "t_back", Driver: "bridge"}
		st := loadStack(t, netStackV1, nil)
		_, err := New(f, nil).Up(context.Background(), st, UpOptions{})
		if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "was not created by invdeploy for networks.back") || !strings.Contains(err.Error(), "docker network rm t_back") {
			t.Fatalf("want a refusal naming the foreign network, got %v", err)
		}
		if len(f.mutations()) != 0 {
			t.Fatalf("refused up changed %v", f.mutations())
		}
	})
}

// TestNetworkIPAMIsCreated: ipam subnets of the compose file reach the
// engine (they were ignored before), so an unchanged ipam network is kept.
func TestNetworkIPAMIsCreated(t *testing.T) {
	f := newFakeEngine()
	f.images["nginx"] = "sha256:nginx"
	st := loadStack(t, "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    ipam:\n      config:\n        - subnet: 10.77.0.0/24\n", nil)
	if len(st.Warnings) != 0 {
		t.Fatalf("ipam is reported unsupported: %v", st.Warnings)
	}
	d := New(f, nil)
	for i := 0; i < 2; i++ {
		if _, err := d.Up(context.Background(), st, UpOptions{WaitTimeout: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.networks["t_default"]; len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Subnet != "10.77.0.0/24" {
		t.Fatalf("network ipam %+v", n.IPAM)
	}
	if c := f.countCalls("network-create"); c != 1 {
		t.Fatalf("%d network creates, want 1: %v", c, f.mutations())
	}
}
