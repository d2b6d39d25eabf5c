package swarm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/internal/scratchimage"
)

// ExtEdge set to false on a service keeps its published ports on the
// service itself (host mode on the nodes that run a task) instead of the edge.
const ExtEdge = "x-invdeploy-edge"

// LabelEdgeFor marks an edge service with the service it fronts.
const LabelEdgeFor = "io.invdeploy.edge-for"

// EdgeName is the edge service of a service.
func EdgeName(project, service string) string { return ServiceName(project, service) + "-edge" }

// needsEdge says whether a service's published ports belong to an edge: a
// stateless replicated service with TCP ports and no endpoint_mode: vip
// (the routing mesh, where the user asks for it) or x-invdeploy-edge: false.
// The service itself then publishes nothing and can update start-first.
func needsEdge(s types.ServiceConfig) bool {
	if len(s.Ports) == 0 || Stateful(s) {
		return false
	}
	if d := s.Deploy; d != nil && (d.Mode == "global" || d.EndpointMode == "vip") {
		return false
	}
	if v, ok := s.Extensions[ExtEdge]; ok {
		if b, ok := v.(bool); ok && !b {
			return false
		}
	}
	for _, p := range s.Ports {
		if (p.Protocol != "" && p.Protocol != "tcp") || p.Published == "" {
			return false
		}
	}
	return true
}

// edgeSpec is the global edge service in front of s: on every node, each
// published port (host mode) is served by `invdeploy swarm edge`, which
// balances over tasks.<service> on the service's first network.
func edgeSpec(p *types.Project, s types.ServiceConfig, imageID string) (swarm.ServiceSpec, error) {
	nets := s.NetworksByPriority()
	if len(nets) == 0 {
		return swarm.ServiceSpec{}, fmt.Errorf("services.%s: the edge needs the service on a network", s.Name)
	}
	nc, ok := p.Networks[nets[0]]
	if !ok {
		return swarm.ServiceSpec{}, fmt.Errorf("services.%s.networks: network %q is not defined", s.Name, nets[0])
	}
	ep := &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR}
	var args []string
	seen := map[uint32]bool{}
	for i, port := range s.Ports {
		pp, err := strconv.ParseUint(port.Published, 10, 16)
		if err != nil {
			return swarm.ServiceSpec{}, fmt.Errorf("services.%s.ports[%d]: published %q: swarm publishes single ports", s.Name, i, port.Published)
		}
		ep.Ports = append(ep.Ports, swarm.PortConfig{Protocol: swarm.PortConfigProtocolTCP, TargetPort: port.Target, PublishedPort: uint32(pp), PublishMode: swarm.PortConfigPublishModeHost})
		if !seen[port.Target] {
			seen[port.Target] = true
			t := strconv.Itoa(int(port.Target))
			args = append(args, "--route", ":"+t+"=tasks."+s.Name+":"+t)
		}
	}
	limits, err := deployer.ProxyLimits(s)
	if err != nil {
		return swarm.ServiceSpec{}, err
	}
	args = append(args, limits.Args()...)
	// Swarm reports the task running only once this passes: every node's
	// edge listens before swarm up returns.
	health := &container.HealthConfig{
		Test:     []string{"CMD", "/invdeploy", "swarm", "edge", "--probe", "127.0.0.1:" + strconv.Itoa(int(s.Ports[0].Target))},
		Interval: time.Second, Timeout: 3 * time.Second, Retries: 3, StartPeriod: 10 * time.Second,
	}
	grace := 15 * time.Second
	// Room for the connection cap's worst case (see httpguard.Defaults);
	// the Go runtime collects harder as it nears GOMEMLIMIT.
	mem := int64(128 << 20)
	pids := int64(64)
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: EdgeName(p.Name, s.Name), Labels: map[string]string{
			deployer.LabelProject: p.Name, deployer.LabelService: s.Name + "-edge", LabelEdgeFor: s.Name,
			deployer.LabelManagedBy: "invdeploy", LabelImageRef: "invdeploy-edge",
		}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: imageID, Args: args, User: "65532:65532", ReadOnly: true, Env: []string{"GOMEMLIMIT=96MiB"},
				CapabilityDrop: []string{"ALL"}, StopGracePeriod: &grace, Healthcheck: health,
				Labels: map[string]string{deployer.LabelProject: p.Name, deployer.LabelService: s.Name + "-edge"},
			},
			Resources:     &swarm.ResourceRequirements{Limits: &swarm.Limit{MemoryBytes: mem, Pids: pids}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: nc.Name}},
		},
		Mode:         swarm.ServiceMode{Global: &swarm.GlobalService{}},
		UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStopFirst, FailureAction: swarm.UpdateFailureActionRollback, Monitor: 5 * time.Second},
		EndpointSpec: ep,
	}, nil
}

// edgeImage makes the edge image in local from the invdeploy executable exe
// (scratch + that static binary), tagged invdeploy-edge:<hash of the
// binary>, and returns its tag. An image already there is reused.
func edgeImage(ctx context.Context, local LocalEngine, exe string) (string, error) {
	bin, err := os.ReadFile(exe)
	if err != nil {
		return "", fmt.Errorf("edge image: read %s: %w", exe, err)
	}
	if f, err := elf.NewFile(bytes.NewReader(bin)); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return "", fmt.Errorf("edge image: %s is dynamically linked; the edge runs it on an empty image: build invdeploy with CGO_ENABLED=0 (make build does)", exe)
			}
		}
	} else {
		return "", fmt.Errorf("edge image: %s is not a Linux executable: %w", exe, err)
	}
	sum := sha256.Sum256(bin)
	ref := "invdeploy-edge:" + hex.EncodeToString(sum[:6])
	if _, err := local.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("edge image: inspect %s: %w", ref, err)
	}
	dockerfile := "FROM scratch\nCOPY invdeploy /invdeploy\nUSER 65532:65532\nENTRYPOINT [\"/invdeploy\", \"swarm\", \"edge\"]\n"
	if err := scratchimage.Build(ctx, local, ref, map[string]string{deployer.LabelManagedBy: "invdeploy"}, []scratchimage.File{
		{Name: "Dockerfile", Mode: 0o644, Body: []byte(dockerfile)},
		{Name: "invdeploy", Mode: 0o755, Body: bin},
	}); err != nil {
		return "", fmt.Errorf("edge image: %w", err)
	}
	return ref, nil
}

// edgeServices are the services of order that get an edge, sorted.
func edgeServices(p *types.Project, order []string) []string {
	var out []string
	for _, n := range order {
		if needsEdge(p.Services[n]) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
