package deployer

import (
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// dependencyOrder sorts services by level, then within a level in the
// order the compose files list them (docker-compose's order; by name when
// that is unknown): a service's level is one more than its deepest
// dependency's (0 without dependencies), so every service comes after what
// it depends on and the order is the same on every run. A cycle is an error.
func dependencyOrder(p *types.Project) ([]string, error) {
	level := map[string]int{}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) (int, error)
	visit = func(name string, path []string) (int, error) {
		switch state[name] {
		case 1:
			return 0, fmt.Errorf("services: depends_on cycle %s", strings.Join(append(path, name), " -> "))
		case 2:
			return level[name], nil
		}
		state[name] = 1
		deps := make([]string, 0, len(p.Services[name].DependsOn))
		for dep := range p.Services[name].DependsOn {
			if _, ok := p.Services[dep]; ok { // else an optional dependency that is not enabled
				deps = append(deps, dep)
			}
		}
		sort.Strings(deps)
		for _, dep := range deps {
			l, err := visit(dep, append(path, name))
			if err != nil {
				return 0, err
			}
			level[name] = max(level[name], l+1)
		}
		state[name] = 2
		return level[name], nil
	}
	names := p.ServiceNames()
	sort.Strings(names)
	for _, n := range names {
		if _, err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	pos := fileOrderIndex(p)
	at := func(n string) int {
		if i, ok := pos[n]; ok {
			return i
		}
		return len(pos) + 1
	}
	sort.SliceStable(names, func(i, j int) bool {
		if level[names[i]] != level[names[j]] {
			return level[names[i]] < level[names[j]]
		}
		return at(names[i]) < at(names[j]) // names already sorted: the tie-break
	})
	return names, nil
}

// ServiceOrder is the one dependency order of every target: each service
// after what it depends on, by level, then in file order.
func ServiceOrder(p *types.Project) ([]string, error) { return dependencyOrder(p) }
