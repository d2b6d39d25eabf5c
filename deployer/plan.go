package deployer

import (
	"context"

	"github.com/compose-spec/compose-go/v2/types"
)

// ServicePlan is what up would do to one service, and why.
type ServicePlan struct {
	Service string `json:"service"`
	// Action sums up the service: the most disruptive of its steps
	// (create, roll, recreate, start, remove, keep).
	Action Action `json:"action"`
	// Rollout says how a change of this service is applied: "proxy"
	// (rolled, zero downtime) or "recreate" (stopped, then started again).
	Rollout       string `json:"rollout"`
	RolloutReason string `json:"rollout_reason"`
	// Image is what runs: the image reference, and "build" when up would
	// build it first.
	Image      string `json:"image"`
	WillBuild  bool   `json:"will_build,omitempty"`
	Containers []Step `json:"containers"`
	// Proxy is what happens to the service's rollout proxy (rollout
	// "proxy" only): create, keep, or recreate (its published port
	// changed: the one change that interrupts clients).
	Proxy Action `json:"proxy,omitempty"`
}

// Plan is up's plan for a stack: what Up would do, computed from the
// engine's state without changing anything.
type Plan struct {
	Project  string        `json:"project"`
	Services []ServicePlan `json:"services"`
	// Orphans are containers of services the file no longer has (up warns,
	// --remove-orphans removes them).
	Orphans []string `json:"orphans,omitempty"`
	Report  *Report  `json:"-"`
}

// Changes reports whether applying the plan would change anything.
func (p *Plan) Changes() bool {
	for _, s := range p.Services {
		if s.Action != ActionKeep {
			return true
		}
	}
	return false
}

// actionWeight orders the actions of a service's summary.
var actionWeight = map[Action]int{ActionKeep: 0, ActionStart: 1, ActionRemove: 2, ActionCreate: 3, ActionRoll: 4, ActionRecreate: 5}

// Plan runs preflight and computes what Up would do (up --dry-run): per
// service keep, create, roll or recreate, with the reason (configuration,
// image, secret or config content, the port moving behind the proxy). It
// builds, pulls, generates and creates nothing; a secret that up would
// generate counts as new.
func (d *Deployer) Plan(ctx context.Context, st *Stack, o UpOptions) (*Plan, error) {
	p := st.Project
	out := &Plan{Project: p.Name}
	rep, err := d.Check(ctx, st, CheckOptions{Remote: o.Remote, ConfigDir: o.ConfigDir, Build: o.Build})
	out.Report = rep
	if err != nil {
		return out, err
	}
	cs, err := d.projectContainers(ctx, p.Name)
	if err != nil {
		return out, err
	}
	_, orphans := splitOrphans(cs, stackServices(p))
	out.Orphans = containerNames(orphans)
	values, err := readValues(p, o.ConfigDir, false)
	if err != nil {
		return out, err
	}
	order, err := dependencyOrder(p)
	if err != nil {
		return out, err
	}
	for _, name := range order {
		s := p.Services[name]
		ro, err := rolloutOf(s, o.ProxyBinary != "")
		if err != nil {
			return out, err
		}
		ref := ImageRef(p.Name, s)
		id, err := d.imageID(ctx, ref)
		if err != nil {
			return out, err
		}
		sp := ServicePlan{Service: name, Image: ref, Rollout: "recreate", RolloutReason: ro.Why}
		if ro.Proxy {
			sp.Rollout = "proxy"
			spec, err := proxySpec(p, s, ro, "")
			if err != nil {
				return out, err
			}
			sp.Proxy = ActionCreate
			if ps, ok := findProxy(cs, name, spec.Config.Labels[LabelProxyHash]); ok {
				sp.Proxy = ActionKeep
				if !ps.Current {
					sp.Proxy = ActionRecreate
				}
			}
		}
		sp.WillBuild = s.Build != nil && (id == "" || o.Build || (s.PullPolicy == types.PullPolicyBuild && !o.Remote))
		hash, err := ConfigHash(s)
		if err != nil {
			return out, err
		}
		existing, err := d.projectContainers(ctx, p.Name, name)
		if err != nil {
			return out, err
		}
		planID := id
		if sp.WillBuild {
			planID = "(to be built)" // differs from every running image
		}
		steps := plan(p, s, hash, planID, existing, ro)
		for i := range steps {
			if sp.WillBuild && steps[i].Reason == "image changed" {
				steps[i].Reason = "image will be built"
			}
		}
		if err := d.recreateForDelivery(ctx, s, steps, existing, values, ro); err != nil {
			return out, err
		}
		sp.Containers = steps
		for _, st := range steps {
			if actionWeight[st.Action] > actionWeight[sp.Action] {
				sp.Action = st.Action
			}
		}
		if sp.Action == "" {
			sp.Action = ActionKeep
		}
		out.Services = append(out.Services, sp)
	}
	return out, nil
}
