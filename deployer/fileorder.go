package deployer

import (
	"os"

	"github.com/compose-spec/compose-go/v2/types"
	yaml "go.yaml.in/yaml/v4"
)

// extFileOrder is the project extension that carries the order in which the
// compose files list their services (compose-go keeps services in a map).
const extFileOrder = "x-invdeploy-file-order"

// recordFileOrder notes the services' order of appearance in p's compose
// files: within a dependency level, up starts services in that order, as
// docker-compose does, so a file that lists a server before its clients
// starts it first. Unreadable files are skipped: the order then falls back
// to names.
func recordFileOrder(p *types.Project) {
	var order []string
	seen := map[string]bool{}
	for _, f := range p.ComposeFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, name := range serviceKeys(b) {
			if !seen[name] {
				seen[name] = true
				order = append(order, name)
			}
		}
	}
	if len(order) == 0 {
		return
	}
	if p.Extensions == nil {
		p.Extensions = types.Extensions{}
	}
	p.Extensions[extFileOrder] = order
}

// serviceKeys returns the keys of the top-level services mapping of a
// compose document in file order (nil when it cannot be parsed: the loader
// has already said why).
func serviceKeys(content []byte) []string {
	var doc yaml.Node
	if err := yaml.Unmarshal(content, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "services" || root.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		svcs := root.Content[i+1]
		keys := make([]string, 0, len(svcs.Content)/2)
		for j := 0; j+1 < len(svcs.Content); j += 2 {
			keys = append(keys, svcs.Content[j].Value)
		}
		return keys
	}
	return nil
}

// fileOrderIndex maps each service to its place in the files (absent: after
// all listed ones).
func fileOrderIndex(p *types.Project) map[string]int {
	idx := map[string]int{}
	if order, ok := p.Extensions[extFileOrder].([]string); ok {
		for i, n := range order {
			idx[n] = i + 1
		}
	}
	return idx
}
