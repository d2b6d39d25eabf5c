package deployer

import (
	"fmt"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
)

// In-stack names of a rolled service. Other services reach a service by its
// name (and its aliases) on the stack's networks. For a service rolled
// behind the rollout proxy, the proxy holds those names, so the address
// they resolve to stays the same through a roll: an upstream resolved once
// (nginx without a resolver) keeps working. The service's own containers
// answer only invdeploy's names, which all begin with reservedPrefix; a
// service, an alias or a container_name of the user may not (preflight
// refuses it), so invdeploy's names never collide with the user's.
const (
	reservedPrefix = "invdeploy-"
	// proxyDiscoveryAlias is answered by every rollout proxy of a network:
	// Prometheus finds the proxies by it (stacks/invoicing/prometheus).
	proxyDiscoveryAlias = reservedPrefix + "proxy"
	// LabelNaming is "proxy" on a rollout proxy that holds its service's
	// in-stack names (an older proxy does not, and is recreated once).
	LabelNaming = "io.invdeploy.naming"
)

// proxyAliases are the names a service's rollout proxy answers on one of
// the service's networks: the service's name and the aliases the compose
// file gives it there, then invdeploy's own.
func proxyAliases(s types.ServiceConfig, netKey string) []string {
	out := []string{s.Name}
	if sn := s.Networks[netKey]; sn != nil {
		out = append(out, sn.Aliases...)
	}
	return append(out, proxyDiscoveryAlias, reservedPrefix+"proxy-"+s.Name)
}

// backendAlias is answered by every container of a rolled service: the
// proxy's fallback target after a restart, before up names the backend.
func backendAlias(service string) string { return reservedPrefix + "backend-" + service }

// containerAlias is a fresh name of one container of a rolled service, the
// proxy's target for it: old and new are told apart during a roll. Eight
// hex digits never spell "proxy" or "backend", so it cannot equal the
// other names above.
func containerAlias(service string) string {
	return reservedPrefix + randomHex(4) + "-" + service
}

// holdsServiceName reports whether a container of a rolled service was
// made before the proxy held the service's names: it still answers them
// itself, and is rolled once so that they move to the proxy.
func holdsServiceName(c container.Summary) bool {
	return c.Labels[LabelRollout] == roleProxy && !strings.HasPrefix(c.Labels[LabelBackend], reservedPrefix)
}

// checkReservedNames refuses a service name, a network alias or a
// container_name that begins with invdeploy's reserved prefix, or a
// container_name that is a rollout proxy's name.
func checkReservedNames(p *types.Project, add func(rule, subject, format string, args ...any)) {
	proxies := map[string]bool{}
	for _, name := range p.ServiceNames() {
		proxies[ProxyName(p.Name, name)] = true
	}
	reserved := func(n string) bool { return strings.HasPrefix(strings.ToLower(n), reservedPrefix) }
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if reserved(name) {
			add("compose", "services."+name, "the name begins with %q, which invdeploy keeps for its own containers' names on the stack network; rename the service", reservedPrefix)
		}
		for _, key := range sortedKeys(s.Networks) {
			if sn := s.Networks[key]; sn != nil {
				for _, a := range sn.Aliases {
					if reserved(a) {
						add("compose", fmt.Sprintf("services.%s.networks.%s.aliases", name, key), "the alias %q begins with %q, which invdeploy keeps for its own names on the stack network; choose another", a, reservedPrefix)
					}
				}
			}
		}
		if cn := s.ContainerName; reserved(cn) || proxies[cn] {
			add("compose", "services."+name+".container_name", "%q is a name invdeploy gives its own containers; choose another", cn)
		}
	}
}
