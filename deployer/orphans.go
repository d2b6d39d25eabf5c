package deployer

import (
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

// ReasonOrphan is the reason of the OpRemove of an orphan.
const ReasonOrphan = "orphan"

// planOrphans plans the removal of the containers of services the stack no
// longer has with --remove-orphans, and names them otherwise (up warns).
func planOrphans(pl *Plan, cs []container.Summary, remove bool) {
	_, orphans := splitOrphans(cs, stackServices(pl.p))
	if !remove {
		pl.Orphans = containerNames(orphans)
		return
	}
	for _, c := range orphans {
		pl.Ops = append(pl.Ops, Op{Kind: OpRemove, Service: c.Labels[LabelService], Target: containerName(c), Reason: ReasonOrphan, x: opData{c: c}})
	}
}
