package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// fakeHost simulates a remote engine whose host has processes on heldPorts.
type fakeHost struct {
	PreflightEngine
	heldPorts map[string]bool
	running   []container.Summary
	cfg       *container.Config
	hostCfg   *container.HostConfig
	removed   bool
}

func (f *fakeHost) ServerVersion(context.Context) (dockertypes.Version, error) {
	return dockertypes.Version{Version: "20.10.24", APIVersion: "1.41", Os: "linux", Arch: "amd64"}, nil
}
func (f *fakeHost) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return f.running, nil
}
func (f *fakeHost) ContainerCreate(_ context.Context, cfg *container.Config, h *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, _ string) (container.CreateResponse, error) {
	f.cfg, f.hostCfg = cfg, h
	return container.CreateResponse{ID: "probe1"}, nil
}
func (f *fakeHost) ContainerStart(context.Context, string, container.StartOptions) error { return nil }
func (f *fakeHost) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	c := make(chan container.WaitResponse, 1)
	c <- container.WaitResponse{StatusCode: 0}
	return c, make(chan error)
}
func (f *fakeHost) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	var buf bytes.Buffer
	w := stdcopy.NewStdWriter(&buf, stdcopy.Stdout)
	for _, a := range f.cfg.Cmd[1:] {
		state := "free"
		if f.heldPorts[a] {
			state = "held"
		}
		io.WriteString(w, a+" "+state+"\n")
	}
	return io.NopCloser(&buf), nil
}
func (f *fakeHost) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	f.removed = true
	return nil
}

func stackWith(services ...types.ServiceConfig) *deployer.Stack {
	p := &types.Project{Name: "invoicing", Services: types.Services{}}
	for _, s := range services {
		p.Services[s.Name] = s
	}
	return &deployer.Stack{Project: p}
}

func svc(name, image string, ports ...types.ServicePortConfig) types.ServiceConfig {
	s := types.ServiceConfig{Name: name}
	s.Image = image
	s.Ports = ports
	return s
}

func port(hostIP, published string, target uint32) types.ServicePortConfig {
	return types.ServicePortConfig{HostIP: hostIP, Published: published, Target: target, Protocol: "tcp"}
}

func TestPreflightRefusesWorldExposure(t *testing.T) {
	st := stackWith(
		svc("api", "invoicing-api:latest", port("0.0.0.0", "8000", 8000), port("", "2375", 2375)),
		svc("db", "postgres:15", port("", "15432", 5432)),
		svc("db2", "postgres:15", port("127.0.0.1", "5432", 5432)),
	)
	f, err := Preflight(context.Background(), &fakeHost{}, st, PreflightOptions{AppCIDR: "198.51.100.0/24", AdminCIDR: "192.0.2.10/32", SSHPort: 22})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, p := range f.Problems {
		subjects = append(subjects, p.Subject)
	}
	got := strings.Join(subjects, "|")
	if !strings.Contains(got, "api.ports 0.0.0.0:2375") || !strings.Contains(got, "db.ports 0.0.0.0:15432") || strings.Contains(got, "db2") || strings.Contains(got, ":8000") {
		t.Errorf("problems: %v", f.Problems)
	}
	if !deployer.IsPreflight(f.Err()) {
		t.Error("findings with problems are not a preflight refusal")
	}
	rules := ""
	for _, r := range f.Rules {
		rules += r.AWSCommand() + "\n"
	}
	if !strings.Contains(rules, "--port 8000 --cidr 198.51.100.0/24") || !strings.Contains(rules, "--port 22 --cidr 192.0.2.10/32") || strings.Contains(rules, "5432") {
		t.Errorf("rules:\n%s", rules)
	}
	if !strings.Contains(f.Engine, "20.10.24") {
		t.Errorf("engine %q", f.Engine)
	}
}

func TestPreflightProbesPortsNotPublishedByContainers(t *testing.T) {
	st := stackWith(svc("api", "invoicing-api:latest", port("", "8000", 8000), port("", "80", 8080), port("", "9000", 9000)))
	host := &fakeHost{
		heldPorts: map[string]bool{"80": true},
		running:   []container.Summary{{Ports: []container.Port{{PublicPort: 9000, Type: "tcp"}}}},
	}
	f, err := Preflight(context.Background(), host, st, PreflightOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if host.cfg != nil {
		t.Fatal("Preflight ran the probe before Probe was called")
	}
	if err := f.Probe(context.Background(), host, "invoicing-api:latest", nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(host.cfg.Cmd, " ") != "probe-ports 80 8000" || host.cfg.Entrypoint[0] != "/invoicing-api" {
		t.Errorf("probe command %v %v", host.cfg.Entrypoint, host.cfg.Cmd)
	}
	if host.hostCfg.NetworkMode != "host" || !host.hostCfg.ReadonlyRootfs || host.hostCfg.CapDrop[0] != "ALL" || !host.removed {
		t.Errorf("probe container not host-network, locked down and removed: %+v removed=%v", host.hostCfg, host.removed)
	}
	if len(f.Problems) != 1 || f.Problems[0].Subject != "80" || !strings.Contains(f.Problems[0].Message, "process on the remote host") {
		t.Errorf("problems %v", f.Problems)
	}
	if len(f.Notes) == 0 || !strings.Contains(f.Rules[0].CIDR, "<CIDR>") {
		t.Errorf("missing CIDR should leave a placeholder and a note: %+v", f)
	}
}

func TestParseProbeOutput(t *testing.T) {
	held, err := parseProbeOutput("8000 held\n8001 free\n8002\n8003: in-use\n", []int{8000, 8001, 8002, 8003})
	if err != nil || len(held) != 3 || held[0] != 8000 || held[2] != 8003 {
		t.Errorf("held %v err %v", held, err)
	}
	if _, err := parseProbeOutput("22 held\n", []int{8000}); err == nil {
		t.Error("accepted a port that was not asked for")
	}
}

func TestBadCIDR(t *testing.T) {
	st := stackWith(svc("api", "x"))
	_, err := Preflight(context.Background(), &fakeHost{}, st, PreflightOptions{AppCIDR: "everyone"})
	if err == nil || !strings.Contains(err.Error(), "--allow-from") {
		t.Errorf("err %v", err)
	}
}

func FuzzParseProbeOutput(f *testing.F) {
	f.Add("8000 held\n8001 free\n")
	f.Add("8000\n")
	f.Add("x: 8000 held")
	f.Fuzz(func(t *testing.T, s string) {
		held, err := parseProbeOutput(s, []int{80, 8000})
		if err != nil {
			return
		}
		for _, p := range held {
			if p != 80 && p != 8000 {
				t.Fatalf("held %d not asked for", p)
			}
		}
	})
}

// TestPreflightEdgeRules: a service the HTTPS edge fronts asks for 80 from
// anywhere (the CA validates over it) and 443 from --allow-from instead of
// its own port; the edge's ports are probed on the host, and a process
// holding one refuses naming the edge.
func TestPreflightEdgeRules(t *testing.T) {
	api := svc("api", "invoicing-api:latest", port("0.0.0.0", "8000", 8000))
	api.Extensions = types.Extensions{deployer.ExtService: map[string]any{"hosts": []any{"api.example.com"}}}
	st := stackWith(api)
	host := &fakeHost{heldPorts: map[string]bool{"443": true}}
	f, err := Preflight(context.Background(), host, st, PreflightOptions{AdminCIDR: "198.51.100.4/32", SSHPort: 22})
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, r := range f.Rules {
		rules = append(rules, fmt.Sprintf("%d %s", r.Port, r.CIDR))
	}
	if got := strings.Join(rules, ", "); got != "80 0.0.0.0/0, 443 <CIDR>, 22 198.51.100.4/32" {
		t.Errorf("rules: %s", got)
	}
	if len(f.Notes) == 0 || !strings.Contains(strings.Join(f.Notes, "\n"), "services.api is reached through the HTTPS edge: keep its port 8000 closed") {
		t.Errorf("notes: %v", f.Notes)
	}
	if err := f.Probe(context.Background(), host, "invoicing-api:latest", nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(host.cfg.Cmd, " ") != "probe-ports 80 443 8000" {
		t.Errorf("probe command %v", host.cfg.Cmd)
	}
	if len(f.Problems) != 1 || f.Problems[0].Subject != "443" || !strings.Contains(f.Problems[0].Message, "the HTTPS edge needs it") {
		t.Errorf("problems %v", f.Problems)
	}
	// An edge that runs on those ports is not probed again.
	host = &fakeHost{running: []container.Summary{{Labels: map[string]string{"io.invdeploy.role": "edge", deployer.LabelEdgePorts: "80,443"}}}}
	f, err = Preflight(context.Background(), host, st, PreflightOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprint(f.ToProbe), "443") {
		t.Errorf("the running edge's ports probed: %v", f.ToProbe)
	}
	// A bad host name refuses.
	api.Extensions = types.Extensions{deployer.ExtService: map[string]any{"hosts": "not a host"}}
	if _, err := Preflight(context.Background(), &fakeHost{}, stackWith(api), PreflightOptions{}); !deployer.IsPreflight(err) {
		t.Errorf("bad host name: %v", err)
	}
}
