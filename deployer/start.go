package deployer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
)

// The start stage of apply: the containers the operations created (or
// found stopped) are started in dependency order, each service once its
// dependencies meet their depends_on condition; one behind the rollout
// proxy is started, waited for and switched to.

// pendingStart is a container an operation left created but not started (or,
// behind the proxy, not yet switched to).
type pendingStart struct {
	id, name, verb string
	// proxy is set for a service behind the rollout proxy: start, wait
	// until ready, switch the proxy to it, then retire old.
	proxy *proxyWork
}

type proxyWork struct {
	ro        rollout
	proxyID   string
	alias     string
	started   bool   // the container runs already (kept): only the switch
	oldID     string // the container that serves until the switch ("" none)
	oldName   string
	oldKey    string // its delivery key
	canonical string // the name the new container takes once it serves
	service   types.ServiceConfig
}

// startEarly starts a service's containers as soon as its operations are
// done, while the executor goes on with the next service's, when nothing
// has to come first: it has no depends_on and is not behind the proxy (a
// database boots while the app's containers are created, as compose does
// it). The start stage leaves such a service alone.
func (a *applier) startEarly(ctx context.Context, service string) error {
	if len(a.starts[service]) == 0 || len(a.pl.p.Services[service].DependsOn) > 0 || a.pl.rollouts[service].Proxy {
		return nil
	}
	a.early[service] = true
	return a.startAll(ctx, nil, a.starts[service], time.Time{}, nil)
}

// start starts what the operations left to start, in dependency order: a
// service without dependencies (and not behind the proxy) at once (unless
// the executor started it early), the others once their dependencies meet
// their depends_on condition. Kept containers are announced as it goes.
func (a *applier) start(ctx context.Context, rd *readiness, deadline time.Time, res *UpResult) error {
	p := a.pl.p
	waiting := map[string]bool{}
	for _, sp := range a.pl.Services {
		for _, st := range sp.Containers {
			if st.Action == ActionKeep {
				a.d.out.Event("Container %s unchanged", st.Container)
			}
		}
		name := sp.Service
		if len(a.starts[name]) == 0 || a.early[name] {
			continue
		}
		if len(p.Services[name].DependsOn) > 0 || a.pl.rollouts[name].Proxy {
			waiting[name] = true
			continue
		}
		if err := a.startAll(ctx, rd, a.starts[name], deadline, res); err != nil {
			return err
		}
	}
	for _, name := range a.pl.order {
		if !waiting[name] {
			continue
		}
		if err := a.d.waitDependencies(ctx, rd, p, p.Services[name], deadline); err != nil {
			return err
		}
		if err := a.startAll(ctx, rd, a.starts[name], deadline, res); err != nil {
			return err
		}
	}
	return nil
}

// startAll starts one service's containers; one behind the rollout proxy is
// started, waited for and switched to (see roll).
func (a *applier) startAll(ctx context.Context, rd *readiness, starts []pendingStart, deadline time.Time, res *UpResult) error {
	d := a.d
	for _, ps := range starts {
		if ps.proxy != nil {
			ps.proxy.proxyID = a.proxies[ps.proxy.service.Name]
			sw, err := d.roll(ctx, rd, a.pl.p.Name, ps, deadline)
			if err != nil {
				return err
			}
			if sw != nil {
				res.Switches = append(res.Switches, *sw)
			}
			continue
		}
		if err := d.engine.ContainerStart(ctx, ps.id, container.StartOptions{}); err != nil {
			return fmt.Errorf("start %s: %w", ps.name, err)
		}
		d.out.Event("Container %s %s", ps.name, ps.verb)
	}
	return nil
}

// roll starts a container behind the proxy, waits until it is ready (its
// healthcheck, with invdeploy's own probes), has the proxy switch to it
// (the proxy checks the health path through its own network path first),
// then stops and removes the container it replaces and gives the new one
// the service's name. Until the switch the old container serves; on any
// failure the new one is removed and the old one keeps serving (exit 4).
func (d *Deployer) roll(ctx context.Context, rd *readiness, project string, ps pendingStart, deadline time.Time) (*Switch, error) {
	w := ps.proxy
	fail := func(err error) (*Switch, error) {
		if w.oldID == "" || w.started {
			return nil, err
		}
		// Automatic rollback: the old container never stopped serving.
		rmErr := d.removeContainer(context.WithoutCancel(ctx), ps.id, ps.name, w.service)
		d.out.Event("Container %s removed: the rollout failed, %s keeps serving", ps.name, w.oldName)
		var ue *UnhealthyError
		if errors.As(err, &ue) {
			ue.Reason += "; rolled back: " + w.oldName + " keeps serving"
			if rmErr != nil {
				ue.Reason += " (removing " + ps.name + " failed: " + rmErr.Error() + ")"
			}
			return nil, ue
		}
		return nil, &UnhealthyError{Container: ps.name, Service: w.service.Name, Reason: err.Error() + "; rolled back: " + w.oldName + " keeps serving", Log: d.failureLog(ctx, ps.id)}
	}
	if !w.started {
		if err := d.engine.ContainerStart(ctx, ps.id, container.StartOptions{}); err != nil {
			return fail(fmt.Errorf("start %s: %w", ps.name, err))
		}
		if w.oldID == "" {
			d.out.Event("Container %s %s", ps.name, ps.verb)
		} else {
			d.out.Event("Container %s started beside %s", ps.name, w.oldName)
		}
	}
	if err := d.waitContainers(ctx, rd, project, w.service.Name, []string{ps.id}, condFinal, deadline, ""); err != nil {
		return fail(err)
	}
	target := w.alias + ":" + strconv.Itoa(int(w.ro.Port.Target))
	remaining := max(time.Until(deadline), 5*time.Second)
	sw, err := d.proxyDeploy(ctx, w.proxyID, w.service.Name, target, w.ro, remaining)
	if err != nil {
		return fail(err)
	}
	out := &Switch{Service: w.service.Name, Container: ps.name, Target: target, Previous: sw.Previous, Drained: sw.Drained,
		HealthySeconds: time.Duration(sw.HealthyAfter).Seconds(), DrainSeconds: time.Duration(sw.DrainedAfter).Seconds()}
	if w.started {
		return nil, nil
	}
	if w.oldID != "" {
		drained := "drained"
		if !sw.Drained {
			drained = "drain timeout " + w.ro.DrainTimeout.String() + " passed with requests in flight"
		}
		d.out.Event("Proxy %s switched to %s (%s)", ProxyName(project, w.service.Name), ps.name, drained)
		if err := d.removeContainer(ctx, w.oldID, w.oldKey, w.service); err != nil {
			// The new container serves: the deploy stands; say what is left.
			d.out.Event("warning: %s no longer serves, but removing it failed: %v", w.oldName, err)
		} else {
			d.out.Event("Container %s stopped and removed", w.oldName)
		}
		if err := d.engine.ContainerRename(ctx, ps.id, w.canonical); err != nil {
			d.out.Event("warning: rename %s to %s: %v", ps.name, w.canonical, err)
		} else {
			out.Container = w.canonical
			d.out.Event("Container %s %s", w.canonical, ps.verb)
		}
		return out, nil
	}
	d.out.Event("Proxy %s serves %s", ProxyName(project, w.service.Name), ps.name)
	return out, nil
}

// Switch is one switch of a rollout proxy during up.
type Switch struct {
	Service        string  `json:"service"`
	Container      string  `json:"container"`
	Target         string  `json:"target"`
	Previous       string  `json:"previous,omitempty"`
	Drained        bool    `json:"drained"`
	HealthySeconds float64 `json:"healthy_seconds"`
	DrainSeconds   float64 `json:"drain_seconds"`
}
