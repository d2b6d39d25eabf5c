package deployer

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// ContainerStatus is one line of `invdeploy status`. State is the engine's,
// except that a container that exited 0 is "completed".
type ContainerStatus struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	// Role is "proxy" for the service's rollout proxy, else empty.
	Role    string    `json:"role,omitempty"`
	State   string    `json:"state"`
	Health  string    `json:"health"`
	Ports   []string  `json:"ports"`
	Image   string    `json:"image"`
	Created time.Time `json:"created"`
	// EngineHealth is the engine's own health status when it differs
	// from Health: up's probe saw the container healthy before the
	// engine ran its healthcheck (see WithReadiness).
	EngineHealth string `json:"engine_health,omitempty"`
}

// WithReadiness is sts as the up that returned ready saw them: a service
// container the engine still reports "starting" is healthy when up's own
// run of its healthcheck passed (the engine runs it only every interval);
// EngineHealth keeps the engine's view. An engine's "unhealthy" stands,
// and rollout proxies, which up did not probe, are as the engine says.
func WithReadiness(sts []ContainerStatus, ready []Readiness) []ContainerStatus {
	probed := map[string]bool{}
	for _, r := range ready {
		// Up returned once every container of the service was healthy,
		// in the engine's view or its own probe's.
		if r.State == "healthy" {
			probed[r.Service] = true
		}
	}
	out := make([]ContainerStatus, len(sts))
	for i, st := range sts {
		if st.Role == "" && st.State == "running" && st.Health == "starting" && probed[st.Service] {
			st.EngineHealth, st.Health = st.Health, "healthy"
		}
		out[i] = st
	}
	return out
}

// Status lists the containers of a project with their state and health.
func (d *Deployer) Status(ctx context.Context, project string) ([]ContainerStatus, error) {
	cs, err := d.projectContainers(ctx, project)
	if err != nil {
		return nil, err
	}
	out := make([]ContainerStatus, 0, len(cs))
	for _, c := range cs {
		st := ContainerStatus{
			Name:    containerName(c),
			Service: c.Labels[LabelService],
			Role:    c.Labels[LabelRole],
			State:   c.State,
			Health:  "",
			Image:   c.Image,
			Created: time.Unix(c.Created, 0).UTC(),
			Ports:   formatPorts(c.Ports),
		}
		if fromList(&st, c) {
			out = append(out, st)
			continue
		}
		ins, err := d.engine.ContainerInspect(ctx, c.ID)
		if err != nil && !cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("inspect %s: %w", st.Name, err)
		}
		if err == nil && ins.State != nil {
			st.State = ins.State.Status
			if st.State == "exited" && ins.State.ExitCode == 0 {
				// A one-shot service that ran to success (see completed).
				st.State = "completed"
			}
			if ins.State.Health != nil {
				st.Health = ins.State.Health.Status
			}
			if ins.Config != nil {
				st.Image = ins.Config.Image
			}
			if t, err := time.Parse(time.RFC3339Nano, ins.Created); err == nil {
				st.Created = t.UTC()
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// fromList fills state and health from the list entry's status text
// ("Up 2 minutes (healthy)", "Exited (0) 3 seconds ago"), sparing an
// inspect per container (a no-op up ends with this status); false when the
// text is not one it knows, and the caller inspects.
func fromList(st *ContainerStatus, c container.Summary) bool {
	text := c.Status
	switch c.State {
	case "running":
		if !strings.HasPrefix(text, "Up ") {
			return false
		}
		switch {
		case strings.HasSuffix(text, "(healthy)"):
			st.Health = "healthy"
		case strings.HasSuffix(text, "(unhealthy)"):
			st.Health = "unhealthy"
		case strings.HasSuffix(text, "(health: starting)"):
			st.Health = "starting"
		case strings.HasSuffix(text, ")"):
			return false // "(Paused)" or a form this does not know
		}
		return true
	case "exited":
		var code int
		if _, err := fmt.Sscanf(text, "Exited (%d)", &code); err != nil {
			return false
		}
		if code == 0 {
			st.State = "completed" // a one-shot service that ran to success
		}
		return true
	case "created":
		return true
	}
	return false
}

func formatPorts(ps []container.Port) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, p := range ps {
		var s string
		if p.PublicPort != 0 {
			ip := p.IP
			if strings.Contains(ip, ":") {
				ip = "[" + ip + "]"
			}
			s = fmt.Sprintf("%s:%d->%d/%s", ip, p.PublicPort, p.PrivatePort, p.Type)
		} else {
			s = fmt.Sprintf("%d/%s", p.PrivatePort, p.Type)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Projects are the names of the projects that have containers on the
// engine (invdeploy's or docker compose's), sorted: the values shell
// completion offers for -p.
func (d *Deployer) Projects(ctx context.Context) ([]string, error) {
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelProject))})
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range cs {
		if p := c.Labels[LabelProject]; p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

// countOf is "1 release", "2 releases": n and noun, plural when n != 1.
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
