package swarm

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// Scale sets the replicas of the project's services (compose names) and
// waits until each converges. A service with a named volume stays at 1.
func Scale(ctx context.Context, mgr ManagerEngine, project string, replicas map[string]uint64, timeout time.Duration, rep remote.Reporter) ([]ServiceResult, error) {
	if rep == nil {
		rep = nopReporter{}
	}
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	names := make([]string, 0, len(replicas))
	for n := range replicas {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []ServiceResult
	for _, name := range names {
		svc, _, err := mgr.ServiceInspectWithRaw(ctx, ServiceName(project, name), swarm.ServiceInspectOptions{})
		if err != nil {
			return out, fmt.Errorf("service %s of project %s: %w", name, project, err)
		}
		if svc.Spec.Mode.Replicated == nil {
			return out, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "scale", Subject: name, Message: "runs in global mode: one task per node"}}}
		}
		n := replicas[name]
		if n != 1 && svc.Spec.TaskTemplate.Placement != nil && pinned(svc.Spec.TaskTemplate.Placement.Constraints, project, name) {
			return out, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "scale", Subject: name,
				Message: "keeps its data in a volume on one node: it runs as exactly 1 replica"}}}
		}
		res := ServiceResult{Service: name, Action: ActionUnchanged, Image: svc.Spec.Labels[LabelImageRef], Replicas: n}
		if *svc.Spec.Mode.Replicated.Replicas != n {
			spec := svc.Spec
			spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
			rep.Event("Scaling %s to %d", svc.Spec.Name, n)
			if _, err := mgr.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
				return out, fmt.Errorf("scale %s: %w", svc.Spec.Name, err)
			}
			res.Action = "scaled"
		}
		err = waitConverged(ctx, mgr, svc.Spec.Name, nil, timeout, rep)
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func pinned(constraints []string, project, service string) bool {
	for _, c := range constraints {
		if c == "node.labels."+PinLabel(project, service)+"==true" {
			return true
		}
	}
	return false
}

// LogsOptions control Logs.
type LogsOptions struct {
	// Services are compose names; empty means every service of the project.
	Services []string
	Follow   bool
	// Tail is the number of lines per task ("all" or "" for everything).
	Tail       string
	Timestamps bool
}

// Logs writes the services' logs (every task, on every node, as Swarm
// gathers them) to stdout and stderr, each line prefixed with the service.
func Logs(ctx context.Context, mgr ManagerEngine, project string, o LogsOptions, stdout, stderr io.Writer) error {
	names := o.Services
	if len(names) == 0 {
		services, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{Filters: projectFilter(project)})
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		for _, s := range services {
			names = append(names, s.Spec.Labels[deployer.LabelService])
		}
		sort.Strings(names)
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: project %s has no swarm services", deployer.ErrNotFound, project)
	}
	errc := make(chan error, len(names))
	var mu sync.Mutex
	for _, name := range names {
		go func(name string) {
			rc, err := mgr.ServiceLogs(ctx, ServiceName(project, name), container.LogsOptions{
				ShowStdout: true, ShowStderr: true, Follow: o.Follow, Tail: o.Tail, Timestamps: o.Timestamps,
			})
			if err != nil {
				errc <- fmt.Errorf("logs of %s: %w", name, err)
				return
			}
			defer rc.Close()
			out, errw := deployer.NewLineWriter(stdout, name+" | ", &mu), deployer.NewLineWriter(stderr, name+" | ", &mu)
			_, err = stdcopy.StdCopy(out, errw, rc)
			out.Flush()
			errw.Flush()
			errc <- err
		}(name)
	}
	var first error
	for range names {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}
