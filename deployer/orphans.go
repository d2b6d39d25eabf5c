package deployer

import (
	"context"
	"fmt"
	"sort"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
)

// stackServices are the names of every service the stack defines, those
// disabled by a profile included: their containers are not orphans (as in
// docker compose).
func stackServices(p *types.Project) []string {
	names := append(p.ServiceNames(), p.DisabledServiceNames()...)
	sort.Strings(names)
	return names
}

// isOrphan reports whether c belongs to none of services, as docker compose
// decides: a one-off container only once it has exited.
func isOrphan(c container.Summary, services map[string]bool) bool {
	if c.Labels[LabelOneOff] == "True" {
		return c.State == "exited" || c.State == "dead"
	}
	return !services[c.Labels[LabelService]]
}

// splitOrphans separates a project's containers into those of services
// (nil: all are the stack's) and the orphans.
func splitOrphans(cs []container.Summary, services []string) (stack, orphans []container.Summary) {
	if services == nil {
		return cs, nil
	}
	known := map[string]bool{}
	for _, s := range services {
		known[s] = true
	}
	for _, c := range cs {
		if isOrphan(c, known) {
			orphans = append(orphans, c)
		} else {
			stack = append(stack, c)
		}
	}
	return stack, orphans
}

// OrphanWarning is docker compose's warning for containers of services the
// compose file no longer has.
func OrphanWarning(names []string) string {
	return fmt.Sprintf("Found orphan containers (%s) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.", names)
}

func containerNames(cs []container.Summary) []string {
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, containerName(c))
	}
	return names
}

// orphans warns about the project's containers of services the stack no
// longer has, or removes them when remove is set.
func (d *Deployer) orphans(ctx context.Context, p *types.Project, remove bool) ([]Step, error) {
	cs, err := d.projectContainers(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	_, orphans := splitOrphans(cs, stackServices(p))
	if len(orphans) == 0 {
		return nil, nil
	}
	if !remove {
		d.out.Event("warning: %s", OrphanWarning(containerNames(orphans)))
		return nil, nil
	}
	var steps []Step
	for _, c := range orphans {
		if err := d.stopAndRemove(ctx, c, 0); err != nil {
			return steps, err
		}
		steps = append(steps, Step{Service: c.Labels[LabelService], Container: containerName(c), Action: ActionRemove, Reason: "orphan"})
	}
	return steps, nil
}
