package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/invdeploy/invdeploy/deployer"
)

const netCompose = `name: wdep-net
services:
  idle:
    image: debian:bookworm
    command: ["sleep", "infinity"]
    init: true
    stop_grace_period: 1s
    networks: [back]
networks:
  back:
    labels:
      tier: TIER
    ipam:
      config:
        - subnet: 10.251.97.0/24
`

// TestNetworkChangedIsRecreated: against the real engine, an unchanged
// network (labels, ipam subnet) is kept by a second up; a changed one is
// recreated with the project's container; while another project's container
// uses it, up refuses (exit 3) and changes nothing.
func TestNetworkChangedIsRecreated(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	dir := t.TempDir()
	write := func(tier string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(strings.Replace(netCompose, "TIER", tier, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.cleanup("wdep-net")
	ctx := context.Background()
	netLabel := func() string {
		t.Helper()
		list, err := e.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "wdep-net_back"))})
		if err != nil || len(list) != 1 {
			t.Fatalf("network wdep-net_back: %v %v", list, err)
		}
		if got := list[0].IPAM.Config; len(got) != 1 || got[0].Subnet != "10.251.97.0/24" {
			t.Errorf("network ipam %+v, want the compose subnet", got)
		}
		return list[0].Labels["tier"]
	}

	write("back")
	e.mustRun(dir, "up")
	if r := e.mustRun(dir, "up"); !strings.Contains(r.stdout, "nothing changed") || strings.Contains(r.stderr, "differs") {
		t.Fatalf("second up of an unchanged stack changed something:\n%s\n%s", r.stdout, r.stderr)
	}

	write("front")
	r := e.mustRun(dir, "up")
	if !strings.Contains(r.stderr, "Network wdep-net_back differs from networks.back") || !strings.Contains(r.stderr, `label tier is "back", compose wants "front"`) {
		t.Fatalf("changed network: no recreate message:\n%s", r.stderr)
	}
	if got := netLabel(); got != "front" {
		t.Fatalf("network label tier=%q after up, want front", got)
	}
	cs, err := e.docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("network", "wdep-net_back"), filters.Arg("label", deployer.LabelProject+"=wdep-net"))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("running containers of wdep-net on the new network: %d %v", len(cs), err)
	}

	// Another project's container on it: refused, nothing changed.
	other, err := e.docker.ContainerCreate(ctx, &container.Config{Image: "debian:bookworm", Cmd: []string{"sleep", "infinity"}, Labels: map[string]string{deployer.LabelProject: "wdep-other"}},
		&container.HostConfig{NetworkMode: "wdep-net_back", Init: boolPtr(true)}, nil, nil, "wdep-other-idle")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.docker.ContainerRemove(context.Background(), other.ID, container.RemoveOptions{Force: true}) })
	if err := e.docker.ContainerStart(ctx, other.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	write("third")
	r = e.run(dir, "up")
	if r.code != 3 || !strings.Contains(r.stderr, "containers of other projects use it: wdep-other-idle") {
		t.Fatalf("changed network in use by another project: exit %d, want 3 naming wdep-other-idle:\n%s", r.code, r.stderr)
	}
	if got := netLabel(); got != "front" {
		t.Fatalf("refused up changed the network (tier=%q)", got)
	}
	// Free the network for the cleanup's down.
	if err := e.docker.ContainerRemove(ctx, other.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
}

func boolPtr(b bool) *bool { return &b }
