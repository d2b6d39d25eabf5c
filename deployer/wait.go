package deployer

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// The wait stage: until every container runs, is healthy where it has a
// healthcheck, or completed. The start stage waits with the same functions
// for a service's dependencies.

// containerState is what the health wait needs of a container.
type containerState struct {
	Name     string
	Service  string
	ID       string
	Status   string // created, running, exited, ...
	ExitCode int
	Health   string // "" when the container has no healthcheck
	Restart  bool   // a restart policy may bring it back
	LastLog  string // last healthcheck output
	// HealthLog are the engine's last healthcheck results, oldest first:
	// "exit N: output".
	HealthLog []string
	// Probe is the container's healthcheck as invdeploy runs it; nil when
	// it has none.
	Probe *healthProbe
	// Probed: invdeploy's own run of the healthcheck passed.
	Probed bool
}

func (d *Deployer) serviceStates(ctx context.Context, project, service string) ([]containerState, error) {
	cs, err := d.projectContainers(ctx, project, service)
	if err != nil {
		return nil, err
	}
	out := make([]containerState, 0, len(cs))
	for _, c := range cs {
		ins, err := d.engine.ContainerInspect(ctx, c.ID)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("inspect %s: %w", containerName(c), err)
		}
		st := containerState{Name: containerName(c), Service: service, ID: c.ID}
		if hp, ok := probeOf(ins.Config); ok {
			st.Probe = &hp
		}
		if ins.State != nil {
			st.Status = ins.State.Status
			st.ExitCode = ins.State.ExitCode
			if ins.State.Health != nil {
				st.Health = ins.State.Health.Status
				if l := ins.State.Health.Log; len(l) > 0 {
					st.LastLog = strings.TrimSpace(l[len(l)-1].Output)
				}
				st.HealthLog = healthResults(ins.State.Health.Log)
			}
		}
		if ins.HostConfig != nil {
			rp := ins.HostConfig.RestartPolicy
			st.Restart = rp.Name == container.RestartPolicyAlways || rp.Name == container.RestartPolicyUnlessStopped ||
				(rp.Name == container.RestartPolicyOnFailure && st.ExitCode != 0 && (rp.MaximumRetryCount == 0 || ins.RestartCount < rp.MaximumRetryCount))
		}
		out = append(out, st)
	}
	return out, nil
}

// condFinal is the condition of up's final wait: running, healthy where
// there is a healthcheck, or completed (exited 0) where there is none.
const condFinal = "final"

// completed reports whether a container is a one-shot that ran to success:
// it exited 0 and no restart policy brings it back.
func completed(st containerState) bool {
	return st.Status == "exited" && st.ExitCode == 0 && !st.Restart
}

// ready reports whether a container meets cond; failed means it never will.
func ready(st containerState, cond string) (ok, failed bool, why string) {
	// Healthy is the engine's word, or a passing probe the engine has not
	// contradicted: only the engine decides unhealthy.
	healthy := st.Status == "running" && (st.Health == "healthy" || (st.Probed && st.Health != "unhealthy"))
	switch cond {
	case types.ServiceConditionCompletedSuccessfully:
		if st.Status == "exited" {
			if st.ExitCode == 0 {
				return true, false, ""
			}
			return false, true, fmt.Sprintf("exited with code %d", st.ExitCode)
		}
		return false, false, st.Status
	case types.ServiceConditionHealthy:
		if st.Health == "" {
			if st.Status == "running" {
				return false, true, "has no healthcheck (depends_on condition service_healthy)"
			}
		}
		if healthy {
			return true, false, ""
		}
	case types.ServiceConditionStarted:
		// A one-shot dependency that already ran to success was started.
		if st.Status == "running" || completed(st) {
			return true, false, ""
		}
	default: // condFinal
		if (st.Status == "running" && st.Health == "") || healthy {
			return true, false, ""
		}
		if completed(st) && st.Probe == nil {
			return true, false, ""
		}
		if completed(st) {
			return false, true, "exited with code 0 before its healthcheck passed (a service with a healthcheck is expected to keep running)"
		}
	}
	if st.Health == "unhealthy" {
		why := "unhealthy"
		if st.LastLog != "" {
			why += ": " + st.LastLog
		}
		return false, true, why
	}
	if (st.Status == "exited" || st.Status == "dead") && !st.Restart {
		return false, true, fmt.Sprintf("exited with code %d", st.ExitCode)
	}
	if st.Health != "" {
		return false, false, st.Health
	}
	return false, false, st.Status
}

func (d *Deployer) waitDependencies(ctx context.Context, rd *readiness, p *types.Project, s types.ServiceConfig, deadline time.Time) error {
	deps := make([]string, 0, len(s.DependsOn))
	for dep := range s.DependsOn {
		if _, ok := p.Services[dep]; ok {
			deps = append(deps, dep)
		}
	}
	sort.Strings(deps)
	for _, dep := range deps {
		cond := s.DependsOn[dep].Condition
		if cond == "" {
			cond = types.ServiceConditionStarted
		}
		if err := d.waitService(ctx, rd, p.Name, dep, cond, deadline, s.Name); err != nil {
			return err
		}
	}
	return nil
}

// waitHealthy waits until every service meets its final condition: running,
// and healthy when it has a healthcheck; a service without one that exited 0
// is completed (one-shot services that others wait for with
// service_completed_successfully must complete).
func (d *Deployer) waitHealthy(ctx context.Context, rd *readiness, p *types.Project, order []string, deadline time.Time) error {
	oneShot := map[string]bool{}
	for _, s := range p.Services {
		for dep, c := range s.DependsOn {
			if c.Condition == types.ServiceConditionCompletedSuccessfully {
				oneShot[dep] = true
			}
		}
	}
	for _, name := range order {
		cond := condFinal
		if oneShot[name] {
			cond = types.ServiceConditionCompletedSuccessfully
		}
		if err := d.waitService(ctx, rd, p.Name, name, cond, deadline, ""); err != nil {
			return err
		}
	}
	return nil
}

// waitService waits until every container of a service meets cond. While a
// condition needs health it also probes each running container that has a
// healthcheck and is not yet healthy (see probe.go).
func (d *Deployer) waitService(ctx context.Context, rd *readiness, project, service, cond string, deadline time.Time, purpose string) error {
	return d.waitContainers(ctx, rd, project, service, nil, cond, deadline, purpose)
}

// waitContainers is waitService for some of a service's containers (ids;
// nil: all of them).
func (d *Deployer) waitContainers(ctx context.Context, rd *readiness, project, service string, ids []string, cond string, deadline time.Time, purpose string) error {
	start := time.Now()
	needsHealth := cond == types.ServiceConditionHealthy || cond == condFinal
	// Poll often: a local inspect costs about a millisecond, and health
	// changes should be seen at once (the benchmark against docker-compose);
	// a passing probe wakes the loop at once.
	delay := 50 * time.Millisecond
	for {
		states, err := d.serviceStates(ctx, project, service)
		if err != nil {
			return err
		}
		if ids != nil {
			kept := states[:0]
			for _, st := range states {
				if slices.Contains(ids, st.ID) {
					kept = append(kept, st)
				}
			}
			states = kept
		}
		allOK := len(states) > 0
		var waiting []string
		for i := range states {
			st := &states[i]
			st.Probed = rd.passed(st.ID)
			ok, failed, why := ready(*st, cond)
			if failed {
				d.out.Done()
				return d.unhealthy(ctx, *st, why)
			}
			if !ok {
				allOK = false
				waiting = append(waiting, st.Name+" ("+why+")")
				if needsHealth && st.Probe != nil && st.Status == "running" {
					rd.probe(st.ID, *st.Probe)
				}
				continue
			}
			if !st.Probed && (cond != types.ServiceConditionStarted || st.Probe == nil) {
				rd.see(st.ID, ReadyByEngine)
			}
		}
		if allOK {
			d.out.Done()
			d.serviceReady(rd, service, cond, states)
			return nil
		}
		if time.Now().After(deadline) {
			d.out.Done()
			if len(states) == 0 {
				return fmt.Errorf("%w: service %s has no container", ErrUnhealthy, service)
			}
			for _, st := range states {
				if ok, _, why := ready(st, cond); !ok {
					return d.unhealthy(ctx, st, "not ready after the wait timeout ("+why+")")
				}
			}
		}
		msg := "Waiting for " + strings.Join(waiting, ", ")
		if purpose != "" {
			msg += ", needed by " + purpose
		}
		d.out.LiveTimed(msg, time.Since(start))
		select {
		case <-ctx.Done():
			d.out.Done()
			return ctx.Err()
		case <-rd.wake:
		case <-time.After(delay):
		}
		if time.Since(start) > 30*time.Second {
			delay = 500 * time.Millisecond
		} else if delay < 100*time.Millisecond {
			delay += 10 * time.Millisecond
		}
	}
}

// serviceReady announces a service's containers that became healthy or
// completed and records when the service became ready. A service waited for
// only as started is not recorded when it has a healthcheck: its readiness
// is its health, which a later wait sees.
func (d *Deployer) serviceReady(rd *readiness, service, cond string, states []containerState) {
	state, ids := "running", make([]string, 0, len(states))
	for _, st := range states {
		ids = append(ids, st.ID)
		switch {
		case st.Probe != nil && cond == types.ServiceConditionStarted:
			return
		case completed(st):
			if !d.announced[st.ID] {
				d.announced[st.ID] = true
				d.out.Event("Container %s completed (exited 0)", st.Name)
			}
			state = "completed"
		case st.Probe != nil:
			if !d.announced[st.ID] {
				d.announced[st.ID] = true
				d.out.Event("Container %s healthy", st.Name)
			}
			state = "healthy"
		}
	}
	rd.service(service, state, ids)
}

// unhealthy builds the ErrUnhealthy error with the container's log, its
// error lines first, and its healthcheck's last outputs.
func (d *Deployer) unhealthy(ctx context.Context, st containerState, why string) error {
	return &UnhealthyError{Container: st.Name, Service: st.Service, Reason: why, Log: d.failureLog(ctx, st.ID), HealthLog: st.HealthLog}
}

// failureLog reads a failing container's last lines for the error.
func (d *Deployer) failureLog(ctx context.Context, id string) FailureLog {
	lines, err := d.tailLogs(context.WithoutCancel(ctx), id, failureScan)
	if err != nil {
		return FailureLog{Unavailable: "(logs unavailable: " + err.Error() + ")"}
	}
	return readFailureLog(lines)
}

// UnhealthyError says which container failed its health gate and why.
type UnhealthyError struct {
	Container string
	Service   string
	Reason    string
	// Log is the container's log: the lines that look like errors, then
	// the last lines without probe access-log lines.
	Log FailureLog
	// HealthLog are the last results of its healthcheck as the engine
	// ran it (oldest first, "exit N: output").
	HealthLog []string
}

func (e *UnhealthyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: container %s (service %s) %s", ErrUnhealthy, e.Container, e.Service, e.Reason)
	if len(e.HealthLog) > 0 {
		fmt.Fprintf(&b, "\nlast healthcheck results of %s (the engine's health log, oldest first):", e.Container)
		for _, h := range e.HealthLog {
			b.WriteString("\n  " + h)
		}
	}
	e.Log.render(&b, e.Container)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrUnhealthy) true.
func (e *UnhealthyError) Unwrap() error { return ErrUnhealthy }
