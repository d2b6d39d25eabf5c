package swarm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// Rollback returns every service of the project that has a previous spec
// to it (Swarm's own one-step rollback: image, secrets, settings), what
// others depend on first and edges last, waiting for each to converge. A
// service without a previous spec, or whose last update was rolled back, is
// left alone.
func Rollback(ctx context.Context, mgr ManagerEngine, project string, timeout time.Duration, rep remote.Reporter) ([]ServiceResult, error) {
	if rep == nil {
		rep = nopReporter{}
	}
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	services, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	if len(services) == 0 {
		return nil, fmt.Errorf("%w: project %s has no swarm services", deployer.ErrNotFound, project)
	}
	sort.Slice(services, func(i, j int) bool {
		ri, rj := rollbackRank(services[i]), rollbackRank(services[j])
		if ri != rj {
			return ri < rj
		}
		return services[i].Spec.Name < services[j].Spec.Name
	})
	var out []ServiceResult
	for _, s := range services {
		res := ServiceResult{Service: s.Spec.Labels[deployer.LabelService], Action: ActionUnchanged, Image: s.Spec.Labels[LabelImageRef]}
		// After a rollback (Swarm's or ours) the previous spec is the one
		// rolled away from: going "back" would redeploy it.
		if s.PreviousSpec == nil || (s.UpdateStatus != nil && s.UpdateStatus.State == swarm.UpdateStateRollbackCompleted) {
			out = append(out, res)
			continue
		}
		rep.Event("Rolling back service %s", s.Spec.Name)
		before := time.Time{}
		if s.UpdateStatus != nil && s.UpdateStatus.StartedAt != nil {
			before = *s.UpdateStatus.StartedAt
		}
		if _, err := mgr.ServiceUpdate(ctx, s.ID, s.Version, s.Spec, swarm.ServiceUpdateOptions{Rollback: "previous"}); err != nil {
			return out, fmt.Errorf("roll back service %s: %w", s.Spec.Name, err)
		}
		res.Action = "rolled back"
		res.Image = s.PreviousSpec.Labels[LabelImageRef]
		if taskSpecEqual(s.Spec.TaskTemplate, s.PreviousSpec.TaskTemplate) {
			err = waitConverged(ctx, mgr, s.Spec.Name, nil, timeout, rep)
		} else {
			err = waitRolledBack(ctx, mgr, s.Spec.Name, before, timeout)
		}
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// rollbackRank orders services: no dependencies first, dependents next,
// edges last.
func rollbackRank(s swarm.Service) int {
	switch {
	case s.Spec.Labels[LabelEdgeFor] != "":
		return 2
	case s.Spec.Labels[deployer.LabelDependsOn] != "":
		return 1
	}
	return 0
}

// waitRolledBack waits for a rollback that started after before to
// complete, then for every replica to run.
func waitRolledBack(ctx context.Context, mgr ManagerEngine, name string, before time.Time, timeout time.Duration) error {
	var svc swarm.Service
	err := poll(ctx, timeout, 300*time.Millisecond, func(ctx context.Context) error {
		var err error
		if svc, _, err = mgr.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{}); err != nil {
			return fmt.Errorf("inspect service %s: %w", name, err)
		}
		if us := svc.UpdateStatus; us != nil && us.StartedAt != nil && us.StartedAt.After(before) {
			switch us.State {
			case swarm.UpdateStateRollbackCompleted:
				if ok, err := allRunning(ctx, mgr, svc); err != nil || ok {
					return err
				}
			case swarm.UpdateStateRollbackPaused, swarm.UpdateStatePaused:
				return unhealthy(ctx, mgr, svc, fmt.Sprintf("the rollback of %s paused: %s", name, strings.TrimSpace(us.Message)))
			}
		}
		return errPending
	})
	if errors.Is(err, errPending) {
		return unhealthy(ctx, mgr, svc, fmt.Sprintf("the rollback of %s did not finish within %s", name, timeout))
	}
	return err
}
