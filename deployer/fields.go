package deployer

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Target is a kind of place a stack runs on. Each honours its own set of
// compose fields (the table Fields); preflight refuses the rest.
type Target string

// The targets.
const (
	// TargetLocal is one Docker engine: up on this machine and remote up.
	TargetLocal Target = "local"
	// TargetSwarm is a Docker Swarm: swarm up.
	TargetSwarm Target = "swarm"
	// TargetKubernetes is a Kubernetes cluster: k8s up.
	TargetKubernetes Target = "kubernetes"
)

// Targets are every target, in the order the field table shows them.
var Targets = []Target{TargetLocal, TargetSwarm, TargetKubernetes}

// Support is how one target treats one compose field.
type Support struct {
	// Honoured: the field reaches the target's runtime spec (or the planner,
	// for fields such as depends_on). Otherwise setting it refuses at
	// preflight.
	Honoured bool
	// Note says how a field is honoured when that is not obvious, or why it
	// is refused and what to do instead.
	Note string
}

// Field is one row of the field table: a compose path and its support on
// every target.
type Field struct {
	// Path is the compose path: services.*.deploy.replicas; "*" stands for
	// any name, "[]" for every element of a list.
	Path string
	// On is the support per target; a target missing from it refuses.
	On map[Target]Support
	// Defaults are the JSON values compose-go fills in by itself that mean
	// the field was not set (ports[].mode "ingress"); when there are some,
	// any other value (false, 0) is set.
	Defaults []string
}

// Support of field f on target t.
func (f Field) Support(t Target) Support {
	if s, ok := f.On[t]; ok {
		return s
	}
	return Support{Note: "not yet supported"}
}

var (
	yes = Support{Honoured: true}
	// unsupported is the reason of a field no target implements.
	unsupportedField = no("not supported by invdeploy")
)

func yesBut(note string) Support { return Support{Honoured: true, Note: note} }
func no(reason string) Support   { return Support{Note: reason} }

// on is a row's support: local, then swarm; kubernetes is not yet
// supported.
func on(local, swarm Support) map[Target]Support {
	return map[Target]Support{
		TargetLocal:      local,
		TargetSwarm:      swarm,
		TargetKubernetes: no("not yet supported"),
	}
}

func row(path string, local, swarm Support, defaults ...string) Field {
	return Field{Path: path, On: on(local, swarm), Defaults: defaults}
}

// both is a row honoured by every engine target; nowhere one no target
// implements.
func both(path string) Field           { return row(path, yes, yes) }
func nowhere(path string) Field        { return row(path, unsupportedField, unsupportedField) }
func localOnly(path, why string) Field { return row(path, yes, no(why)) }

const (
	noLocalRoll    = "the local roll is invdeploy's own (docs/guides/rollouts-and-rollback.md); remove it or use swarm up"
	noLocalPlace   = "one engine has nothing to place; remove it or use swarm up"
	noSwarmConfigs = "configs are not delivered on Swarm yet; use a secret"
	noSwarmAPI146  = "Swarm services take it from engine API 1.46 (Docker 27); not yet supported"
)

// Fields is the field table: every compose field invdeploy knows, and
// whether each target honours it. A field set in a stack and not honoured
// by the target refuses preflight (exit 3) with the field, the service and
// the target named; a field missing from the table refuses on every target.
// TestFieldTable holds it to the converters.
var Fields = []Field{
	localOnly("configs.*.content", noSwarmConfigs),
	localOnly("configs.*.environment", noSwarmConfigs),
	localOnly("configs.*.file", noSwarmConfigs),
	localOnly("configs.*.name", noSwarmConfigs),
	nowhere("models"),
	row("networks.*.attachable", yes, yesBut("stack networks are always attachable overlays")),
	row("networks.*.driver", yes, yesBut("bridge becomes overlay")),
	both("networks.*.driver_opts"),
	nowhere("networks.*.enable_ipv4"),
	nowhere("networks.*.enable_ipv6"),
	both("networks.*.external"),
	both("networks.*.internal"),
	localOnly("networks.*.ipam", "not yet supported on Swarm"),
	both("networks.*.labels"),
	both("networks.*.name"),
	both("secrets.*.environment"),
	both("secrets.*.file"),
	both("secrets.*.name"),
	nowhere("services.*.annotations"),
	nowhere("services.*.attach"),
	nowhere("services.*.blkio_config"),
	both("services.*.build.args"),
	both("services.*.build.cache_from"),
	both("services.*.build.context"),
	both("services.*.build.dockerfile"),
	both("services.*.build.extra_hosts"),
	both("services.*.build.labels"),
	both("services.*.build.network"),
	both("services.*.build.no_cache"),
	both("services.*.build.pull"),
	both("services.*.build.shm_size"),
	both("services.*.build.tags"),
	both("services.*.build.target"),
	both("services.*.cap_add"),
	both("services.*.cap_drop"),
	nowhere("services.*.cgroup"),
	nowhere("services.*.cgroup_parent"),
	both("services.*.command"),
	localOnly("services.*.configs[].gid", noSwarmConfigs),
	localOnly("services.*.configs[].mode", noSwarmConfigs),
	localOnly("services.*.configs[].source", noSwarmConfigs),
	localOnly("services.*.configs[].target", noSwarmConfigs),
	localOnly("services.*.configs[].uid", noSwarmConfigs),
	localOnly("services.*.container_name", "Swarm names a service's tasks itself"),
	nowhere("services.*.cpu_count"),
	nowhere("services.*.cpu_percent"),
	nowhere("services.*.cpu_period"),
	nowhere("services.*.cpu_quota"),
	nowhere("services.*.cpu_rt_period"),
	nowhere("services.*.cpu_rt_runtime"),
	localOnly("services.*.cpu_shares", "Swarm services have no CPU shares; use deploy.resources.reservations.cpus"),
	both("services.*.cpus"),
	nowhere("services.*.cpuset"),
	nowhere("services.*.credential_spec"),
	both("services.*.depends_on"),
	row("services.*.deploy.endpoint_mode", no(noLocalPlace), yes),
	row("services.*.deploy.labels", no("service labels exist on Swarm only; use labels"), yes),
	row("services.*.deploy.mode", no("one engine runs replicated services only"), yes, `"replicated"`),
	row("services.*.deploy.placement.constraints", no(noLocalPlace), yes),
	row("services.*.deploy.placement.max_replicas_per_node", no(noLocalPlace), yes),
	row("services.*.deploy.placement.preferences", no(noLocalPlace), yes),
	both("services.*.deploy.replicas"),
	both("services.*.deploy.resources.limits.cpus"),
	nowhere("services.*.deploy.resources.limits.devices"),
	nowhere("services.*.deploy.resources.limits.generic_resources"),
	both("services.*.deploy.resources.limits.memory"),
	both("services.*.deploy.resources.limits.pids"),
	row("services.*.deploy.resources.reservations.cpus", no("a Docker engine reserves no CPU; use cpu_shares"), yes),
	nowhere("services.*.deploy.resources.reservations.devices"),
	nowhere("services.*.deploy.resources.reservations.generic_resources"),
	both("services.*.deploy.resources.reservations.memory"),
	both("services.*.deploy.restart_policy.condition"),
	row("services.*.deploy.restart_policy.delay", no("a Docker engine restarts with its own back-off; remove it or use swarm up"), yes),
	both("services.*.deploy.restart_policy.max_attempts"),
	row("services.*.deploy.restart_policy.window", no("a Docker engine restarts with its own back-off; remove it or use swarm up"), yes),
	row("services.*.deploy.rollback_config.delay", no(noLocalRoll), yes),
	row("services.*.deploy.rollback_config.failure_action", no(noLocalRoll), yes),
	row("services.*.deploy.rollback_config.max_failure_ratio", no(noLocalRoll), yes),
	row("services.*.deploy.rollback_config.monitor", no(noLocalRoll), yes),
	row("services.*.deploy.rollback_config.order", no(noLocalRoll), yes),
	row("services.*.deploy.rollback_config.parallelism", no(noLocalRoll), yes),
	row("services.*.deploy.update_config.delay", no(noLocalRoll), yes),
	row("services.*.deploy.update_config.failure_action", no(noLocalRoll), yes),
	row("services.*.deploy.update_config.max_failure_ratio", no(noLocalRoll), yes),
	row("services.*.deploy.update_config.monitor", no(noLocalRoll), yes),
	row("services.*.deploy.update_config.order", no(noLocalRoll), yes),
	row("services.*.deploy.update_config.parallelism", no(noLocalRoll), yes),
	nowhere("services.*.develop"),
	nowhere("services.*.device_cgroup_rules"),
	nowhere("services.*.devices"),
	both("services.*.dns"),
	both("services.*.dns_opt"),
	both("services.*.dns_search"),
	localOnly("services.*.domainname", "Swarm services have no domain name"),
	both("services.*.entrypoint"),
	row("services.*.env_file", yesBut("read when the stack is loaded"), yesBut("read when the stack is loaded")),
	both("services.*.environment"),
	localOnly("services.*.expose", "Swarm services expose no ports: every port is reachable on the stack's networks; remove it"),
	nowhere("services.*.external_links"),
	both("services.*.extra_hosts"),
	nowhere("services.*.gpus"),
	both("services.*.group_add"),
	both("services.*.healthcheck.disable"),
	both("services.*.healthcheck.interval"),
	both("services.*.healthcheck.retries"),
	nowhere("services.*.healthcheck.start_interval"),
	both("services.*.healthcheck.start_period"),
	both("services.*.healthcheck.test"),
	both("services.*.healthcheck.timeout"),
	both("services.*.hostname"),
	both("services.*.image"),
	both("services.*.init"),
	nowhere("services.*.ipc"),
	nowhere("services.*.isolation"),
	row("services.*.label_file", yesBut("read when the stack is loaded"), yesBut("read when the stack is loaded")),
	both("services.*.labels"),
	nowhere("services.*.links"),
	nowhere("services.*.log_driver"),
	nowhere("services.*.log_opt"),
	both("services.*.logging.driver"),
	both("services.*.logging.options"),
	nowhere("services.*.mac_address"),
	both("services.*.mem_limit"),
	both("services.*.mem_reservation"),
	nowhere("services.*.mem_swappiness"),
	localOnly("services.*.memswap_limit", "Swarm services have no swap limit"),
	nowhere("services.*.models"),
	localOnly("services.*.network_mode", "Swarm services join the stack's overlay networks"),
	both("services.*.networks.*.aliases"),
	nowhere("services.*.networks.*.driver_opts"),
	nowhere("services.*.networks.*.gw_priority"),
	nowhere("services.*.networks.*.interface_name"),
	localOnly("services.*.networks.*.ipv4_address", "Swarm assigns task addresses itself"),
	localOnly("services.*.networks.*.ipv6_address", "Swarm assigns task addresses itself"),
	nowhere("services.*.networks.*.link_local_ips"),
	nowhere("services.*.networks.*.mac_address"),
	both("services.*.networks.*.priority"),
	nowhere("services.*.oom_kill_disable"),
	localOnly("services.*.oom_score_adj", noSwarmAPI146),
	nowhere("services.*.pid"),
	both("services.*.pids_limit"),
	nowhere("services.*.platform"),
	nowhere("services.*.ports[].app_protocol"),
	row("services.*.ports[].host_ip", yes, no("Swarm publishes on every address of a node; remove host_ip"), `"0.0.0.0"`, `"::"`),
	row("services.*.ports[].mode", yes, yes, `"ingress"`),
	nowhere("services.*.ports[].name"),
	both("services.*.ports[].protocol"),
	both("services.*.ports[].published"),
	both("services.*.ports[].target"),
	nowhere("services.*.post_start"),
	nowhere("services.*.pre_stop"),
	localOnly("services.*.privileged", "Swarm services cannot run privileged"),
	row("services.*.profiles", yesBut("applied when the stack is loaded"), yesBut("applied when the stack is loaded")),
	localOnly("services.*.pull_policy", "swarm up sends images from this machine's engine; pull_policy is not applied there yet"),
	nowhere("services.*.pull_refresh_after"),
	both("services.*.read_only"),
	both("services.*.restart"),
	nowhere("services.*.runtime"),
	both("services.*.scale"),
	both("services.*.secrets[].gid"),
	both("services.*.secrets[].mode"),
	both("services.*.secrets[].source"),
	row("services.*.secrets[].target", yes, yesBut("a file name or a path under /run/secrets")),
	both("services.*.secrets[].uid"),
	localOnly("services.*.security_opt", "Swarm services take no security options on engine API 1.41; no-new-privileges needs API 1.46 (Docker 27), not yet supported"),
	row("services.*.shm_size", yes, yesBut("a tmpfs of that size at /dev/shm")),
	both("services.*.stdin_open"),
	both("services.*.stop_grace_period"),
	both("services.*.stop_signal"),
	nowhere("services.*.storage_opt"),
	both("services.*.sysctls"),
	row("services.*.tmpfs", yes, yesBut("options size and mode only")),
	both("services.*.tty"),
	both("services.*.ulimits"),
	nowhere("services.*.umask"),
	nowhere("services.*.use_api_socket"),
	both("services.*.user"),
	nowhere("services.*.userns_mode"),
	nowhere("services.*.uts"),
	nowhere("services.*.volume_driver"),
	row("services.*.volumes[].bind.create_host_path", no("set to false: a Docker engine creates a missing bind source, as docker compose does"), yesBut("Swarm never creates a missing bind source"), "true"),
	nowhere("services.*.volumes[].bind.propagation"),
	nowhere("services.*.volumes[].bind.recursive"),
	nowhere("services.*.volumes[].bind.selinux"),
	nowhere("services.*.volumes[].consistency"),
	nowhere("services.*.volumes[].image"),
	both("services.*.volumes[].read_only"),
	both("services.*.volumes[].source"),
	both("services.*.volumes[].target"),
	row("services.*.volumes[].tmpfs.mode", yes, yes),
	both("services.*.volumes[].tmpfs.size"),
	row("services.*.volumes[].type", yes, yesBut("bind: a path on whichever node runs the task, not created when missing")),
	nowhere("services.*.volumes[].volume.labels"),
	both("services.*.volumes[].volume.nocopy"),
	localOnly("services.*.volumes[].volume.subpath", "Swarm mounts take a subpath from engine API 1.45; not yet supported"),
	nowhere("services.*.volumes_from"),
	both("services.*.working_dir"),
	localOnly("volumes.*.driver", "Swarm creates a volume with the node's default driver; not yet supported"),
	localOnly("volumes.*.driver_opts", "Swarm creates a volume with the node's default driver; not yet supported"),
	localOnly("volumes.*.external", "Swarm creates a missing volume on whichever node runs the task; not yet supported"),
	both("volumes.*.labels"),
	both("volumes.*.name"),
}

// fieldIndex is Fields by path, and every path above a row (interior).
var fieldIndex, fieldPrefixes = func() (map[string]Field, map[string]bool) {
	idx := map[string]Field{}
	pre := map[string]bool{}
	for _, f := range Fields {
		idx[f.Path] = f
		for i := range f.Path {
			if f.Path[i] == '.' || f.Path[i] == '[' {
				pre[f.Path[:i]] = true
			}
		}
	}
	return idx, pre
}()

// SetField is one field set in a stack.
type SetField struct {
	// Path is the field's row in Fields (services.*.dns), or its own path
	// with "*" for names when no row knows it.
	Path string
	// Where is the field in this stack: services.api.dns.
	Where string
	// Service is the service it belongs to ("" for top-level fields).
	Service string
}

// SetFields lists every field set in p (enabled services and top-level
// networks, volumes, secrets, configs, models), sorted by Where.
func SetFields(p *types.Project) ([]SetField, error) {
	top := map[string]any{
		"services": p.Services, "networks": p.Networks, "volumes": p.Volumes,
		"secrets": p.Secrets, "configs": p.Configs, "models": p.Models,
	}
	b, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("inspect the compose model: %w", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("inspect the compose model: %w", err)
	}
	var out []SetField
	walkFields(v, "", "", "", func(f SetField) { out = append(out, f) })
	sort.Slice(out, func(i, j int) bool { return out[i].Where < out[j].Where })
	return out, nil
}

func join(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

// walkFields reports every non-empty leaf under v: a row of the table, or
// a key no row knows (then reported at that key).
func walkFields(v any, path, where, service string, report func(SetField)) {
	if f, ok := fieldIndex[path]; ok {
		if !emptyValue(v, f.Defaults) {
			report(SetField{Path: path, Where: where, Service: service})
		}
		return
	}
	if !fieldPrefixes[path] && path != "" {
		if !emptyValue(v, nil) {
			report(SetField{Path: path, Where: where, Service: service})
		}
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			svc := service
			if path == "services" {
				svc = k
			}
			c := join(path, k)
			if !knownPath(c) {
				if star := join(path, "*"); knownPath(star) {
					c = star
				}
			}
			walkFields(val, c, join(where, k), svc, report)
		}
	case []any:
		for i, e := range x {
			walkFields(e, path+"[]", fmt.Sprintf("%s[%d]", where, i), service, report)
		}
	default:
		if !emptyValue(v, nil) {
			report(SetField{Path: path, Where: where, Service: service})
		}
	}
}

// knownPath says whether path is a row or lies above one.
func knownPath(path string) bool {
	_, ok := fieldIndex[path]
	return ok || fieldPrefixes[path]
}

// emptyValue says whether a JSON value leaves a field unset: null, or one of
// the field's defaults when it has some, else false, 0, "", {} or [].
func emptyValue(v any, defaults []string) bool {
	if v == nil {
		return true
	}
	if len(defaults) > 0 {
		b, _ := json.Marshal(v)
		for _, d := range defaults {
			if string(b) == d {
				return true
			}
		}
		return false
	}
	switch x := v.(type) {
	case bool:
		return !x
	case float64:
		return x == 0
	case string:
		return x == ""
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// FieldProblems are the refusals of the fields set in p that target does
// not honour: one per field, naming the field, its service and the target.
func FieldProblems(p *types.Project, target Target) ([]Problem, error) {
	set, err := SetFields(p)
	if err != nil {
		return nil, err
	}
	var out []Problem
	for _, f := range set {
		row, known := fieldIndex[f.Path]
		sup := unsupportedField
		if known {
			sup = row.Support(target)
		}
		if sup.Honoured {
			continue
		}
		field := strings.TrimPrefix(f.Where, "services."+f.Service+".")
		msg := fmt.Sprintf("%s is not honoured on %s: %s", field, target, sup.Note)
		if f.Service != "" {
			msg = fmt.Sprintf("service %s: %s", f.Service, msg)
		}
		out = append(out, Problem{Rule: "field", Subject: f.Where, Message: msg + "; remove it from the compose file or deploy to a target that honours it"})
	}
	return out, nil
}

// fieldExamples set each field in a compose file, for the docs and for
// TestFieldTable: a fragment under a service, or a whole file when it
// starts with a top-level key.
var fieldExamples = map[string]string{
	"services.*.annotations":                              `annotations: {a: b}`,
	"services.*.blkio_config":                             `blkio_config: {weight: 300}`,
	"services.*.build.args":                               `build: {context: ., args: {A: b}}`,
	"services.*.build.cache_from":                         `build: {context: ., cache_from: [x:cache]}`,
	"services.*.build.context":                            `build: {context: .}`,
	"services.*.build.dockerfile":                         `build: {context: ., dockerfile: Dockerfile}`,
	"services.*.build.extra_hosts":                        `build: {context: ., extra_hosts: ["h:10.0.0.1"]}`,
	"services.*.build.labels":                             `build: {context: ., labels: {a: b}}`,
	"services.*.build.network":                            `build: {context: ., network: host}`,
	"services.*.build.no_cache":                           `build: {context: ., no_cache: true}`,
	"services.*.build.pull":                               `build: {context: ., pull: true}`,
	"services.*.build.shm_size":                           `build: {context: ., shm_size: 64m}`,
	"services.*.build.tags":                               `build: {context: ., tags: ["x:t"]}`,
	"services.*.build.target":                             `build: {context: ., target: t}`,
	"services.*.cap_add":                                  `cap_add: [NET_ADMIN]`,
	"services.*.cap_drop":                                 `cap_drop: [ALL]`,
	"services.*.cgroup_parent":                            `cgroup_parent: g`,
	"services.*.command":                                  `command: [serve]`,
	"services.*.configs[].gid":                            "services: {web: {configs: [{source: c, gid: \"7\"}]}}\nconfigs: {c: {content: hi}}",
	"services.*.configs[].mode":                           "services: {web: {configs: [{source: c, mode: 0440}]}}\nconfigs: {c: {content: hi}}",
	"services.*.configs[].source":                         "services: {web: {configs: [c]}}\nconfigs: {c: {content: hi}}",
	"services.*.configs[].target":                         "services: {web: {configs: [{source: c, target: /etc/c}]}}\nconfigs: {c: {content: hi}}",
	"services.*.configs[].uid":                            "services: {web: {configs: [{source: c, uid: \"7\"}]}}\nconfigs: {c: {content: hi}}",
	"services.*.container_name":                           `container_name: webby`,
	"services.*.cpu_shares":                               `cpu_shares: 512`,
	"services.*.cpus":                                     `cpus: 0.5`,
	"services.*.cpuset":                                   `cpuset: "0"`,
	"services.*.depends_on":                               "services: {web: {depends_on: [db]}, db: {image: x}}",
	"services.*.deploy.endpoint_mode":                     `deploy: {endpoint_mode: vip}`,
	"services.*.deploy.labels":                            `deploy: {labels: {a: b}}`,
	"services.*.deploy.mode":                              `deploy: {mode: global}`,
	"services.*.deploy.placement.constraints":             `deploy: {placement: {constraints: ["node.role==worker"]}}`,
	"services.*.deploy.placement.max_replicas_per_node":   `deploy: {placement: {max_replicas_per_node: 1}}`,
	"services.*.deploy.placement.preferences":             `deploy: {placement: {preferences: [{spread: node.labels.zone}]}}`,
	"services.*.deploy.replicas":                          `deploy: {replicas: 3}`,
	"services.*.deploy.resources.limits.cpus":             `deploy: {resources: {limits: {cpus: "0.5"}}}`,
	"services.*.deploy.resources.limits.memory":           `deploy: {resources: {limits: {memory: 64m}}}`,
	"services.*.deploy.resources.limits.pids":             `deploy: {resources: {limits: {pids: 50}}}`,
	"services.*.deploy.resources.reservations.cpus":       `deploy: {resources: {reservations: {cpus: "0.25"}}}`,
	"services.*.deploy.resources.reservations.memory":     `deploy: {resources: {reservations: {memory: 32m}}}`,
	"services.*.deploy.restart_policy.condition":          `deploy: {restart_policy: {condition: on-failure}}`,
	"services.*.deploy.restart_policy.delay":              `deploy: {restart_policy: {delay: 5s}}`,
	"services.*.deploy.restart_policy.max_attempts":       `deploy: {restart_policy: {condition: on-failure, max_attempts: 3}}`,
	"services.*.deploy.restart_policy.window":             `deploy: {restart_policy: {window: 30s}}`,
	"services.*.deploy.rollback_config.delay":             `deploy: {rollback_config: {delay: 2s}}`,
	"services.*.deploy.rollback_config.failure_action":    `deploy: {rollback_config: {failure_action: continue}}`,
	"services.*.deploy.rollback_config.max_failure_ratio": `deploy: {rollback_config: {max_failure_ratio: 0.5}}`,
	"services.*.deploy.rollback_config.monitor":           `deploy: {rollback_config: {monitor: 20s}}`,
	"services.*.deploy.rollback_config.order":             `deploy: {rollback_config: {order: stop-first}}`,
	"services.*.deploy.rollback_config.parallelism":       `deploy: {rollback_config: {parallelism: 2}}`,
	"services.*.deploy.update_config.delay":               `deploy: {update_config: {delay: 2s}}`,
	"services.*.deploy.update_config.failure_action":      `deploy: {update_config: {failure_action: continue}}`,
	"services.*.deploy.update_config.max_failure_ratio":   `deploy: {update_config: {max_failure_ratio: 0.5}}`,
	"services.*.deploy.update_config.monitor":             `deploy: {update_config: {monitor: 20s}}`,
	"services.*.deploy.update_config.order":               `deploy: {update_config: {order: stop-first}}`,
	"services.*.deploy.update_config.parallelism":         `deploy: {update_config: {parallelism: 2}}`,
	"services.*.devices":                                  `devices: ["/dev/fuse:/dev/fuse"]`,
	"services.*.dns":                                      `dns: [10.0.0.53]`,
	"services.*.dns_opt":                                  `dns_opt: [ndots:2]`,
	"services.*.dns_search":                               `dns_search: [example.com]`,
	"services.*.domainname":                               `domainname: example.com`,
	"services.*.entrypoint":                               `entrypoint: [/bin/app]`,
	"services.*.env_file":                                 `env_file: [web.env]`,
	"services.*.environment":                              `environment: {A: b}`,
	"services.*.expose":                                   `expose: ["9000"]`,
	"services.*.extra_hosts":                              `extra_hosts: ["h:10.0.0.1"]`,
	"services.*.group_add":                                `group_add: ["7"]`,
	"services.*.healthcheck.disable":                      `healthcheck: {disable: true}`,
	"services.*.healthcheck.interval":                     `healthcheck: {test: [CMD, "true"], interval: 3s}`,
	"services.*.healthcheck.retries":                      `healthcheck: {test: [CMD, "true"], retries: 4}`,
	"services.*.healthcheck.start_interval":               `healthcheck: {test: [CMD, "true"], start_interval: 1s}`,
	"services.*.healthcheck.start_period":                 `healthcheck: {test: [CMD, "true"], start_period: 9s}`,
	"services.*.healthcheck.test":                         `healthcheck: {test: [CMD, "true"]}`,
	"services.*.healthcheck.timeout":                      `healthcheck: {test: [CMD, "true"], timeout: 2s}`,
	"services.*.hostname":                                 `hostname: web1`,
	"services.*.image":                                    `image: y`,
	"services.*.init":                                     `init: true`,
	"services.*.ipc":                                      `ipc: host`,
	"services.*.label_file":                               `label_file: [web.labels]`,
	"services.*.labels":                                   `labels: {a: b}`,
	"services.*.links":                                    "services: {web: {links: [db]}, db: {image: x}}",
	"services.*.logging.driver":                           `logging: {driver: local}`,
	"services.*.logging.options":                          `logging: {options: {max-size: 1m}}`,
	"services.*.mem_limit":                                `mem_limit: 64m`,
	"services.*.mem_reservation":                          `mem_reservation: 32m`,
	"services.*.memswap_limit":                            `memswap_limit: 128m`,
	"services.*.network_mode":                             `network_mode: host`,
	"services.*.networks.*.aliases":                       `networks: {default: {aliases: [www]}}`,
	"services.*.networks.*.ipv4_address":                  "services: {web: {networks: {n: {ipv4_address: 10.9.0.5}}}}\nnetworks: {n: {ipam: {config: [{subnet: 10.9.0.0/24}]}}}",
	"services.*.networks.*.ipv6_address":                  "services: {web: {networks: {n: {ipv6_address: \"fd00::5\"}}}}\nnetworks: {n: {enable_ipv6: true}}",
	"services.*.networks.*.mac_address":                   `networks: {default: {mac_address: "02:42:ac:11:00:02"}}`,
	"services.*.networks.*.priority":                      "services: {web: {networks: {a: {priority: 1}, b: {priority: 9}}}}\nnetworks: {a: {}, b: {}}",
	"services.*.oom_score_adj":                            `oom_score_adj: 100`,
	"services.*.pid":                                      `pid: host`,
	"services.*.pids_limit":                               `pids_limit: 50`,
	"services.*.ports[].host_ip":                          `ports: ["127.0.0.1:8080:80"]`,
	"services.*.ports[].mode":                             `ports: [{target: 80, published: "8080", mode: host}]`,
	"services.*.ports[].protocol":                         `ports: ["8080:80/udp"]`,
	"services.*.ports[].published":                        `ports: ["8080:80"]`,
	"services.*.ports[].target":                           `ports: ["80"]`,
	"services.*.privileged":                               `privileged: true`,
	"services.*.profiles":                                 `profiles: [extra]`,
	"services.*.pull_policy":                              `pull_policy: always`,
	"services.*.read_only":                                `read_only: true`,
	"services.*.restart":                                  `restart: always`,
	"services.*.scale":                                    `scale: 2`,
	"services.*.secrets[].gid":                            `secrets: [{source: s, gid: "7"}]`,
	"services.*.secrets[].mode":                           `secrets: [{source: s, mode: 0440}]`,
	"services.*.secrets[].source":                         `secrets: [s]`,
	"services.*.secrets[].target":                         `secrets: [{source: s, target: pw}]`,
	"services.*.secrets[].uid":                            `secrets: [{source: s, uid: "7"}]`,
	"services.*.security_opt":                             `security_opt: ["no-new-privileges:true"]`,
	"services.*.shm_size":                                 `shm_size: 128m`,
	"services.*.stdin_open":                               `stdin_open: true`,
	"services.*.stop_grace_period":                        `stop_grace_period: 20s`,
	"services.*.stop_signal":                              `stop_signal: SIGINT`,
	"services.*.sysctls":                                  `sysctls: {net.core.somaxconn: 1024}`,
	"services.*.tmpfs":                                    `tmpfs: ["/tmp:size=16m"]`,
	"services.*.tty":                                      `tty: true`,
	"services.*.ulimits":                                  `ulimits: {nofile: 4096}`,
	"services.*.user":                                     `user: "1000"`,
	"services.*.volumes[].bind.create_host_path":          `volumes: [{type: bind, source: ./data, target: /data, bind: {create_host_path: false}}]`,
	"services.*.volumes[].bind.propagation":               `volumes: [{type: bind, source: ., target: /data, bind: {propagation: rshared}}]`,
	"services.*.volumes[].read_only":                      "services: {web: {volumes: [{type: volume, source: d, target: /data, read_only: true}]}}\nvolumes: {d: {}}",
	"services.*.volumes[].source":                         "services: {web: {volumes: [{type: volume, source: d, target: /data}]}}\nvolumes: {d: {}}",
	"services.*.volumes[].target":                         `volumes: [/data]`,
	"services.*.volumes[].tmpfs.mode":                     `volumes: [{type: tmpfs, target: /t, tmpfs: {mode: 0700}}]`,
	"services.*.volumes[].tmpfs.size":                     `volumes: [{type: tmpfs, target: /t, tmpfs: {size: 1m}}]`,
	"services.*.volumes[].type":                           `volumes: [{type: tmpfs, target: /t}]`,
	"services.*.volumes[].volume.nocopy":                  "services: {web: {volumes: [{type: volume, source: d, target: /data, volume: {nocopy: true}}]}}\nvolumes: {d: {}}",
	"services.*.volumes[].volume.subpath":                 "services: {web: {volumes: [{type: volume, source: d, target: /data, volume: {subpath: sub}}]}}\nvolumes: {d: {}}",
	"services.*.working_dir":                              `working_dir: /srv`,
	"configs.*.content":                                   "services: {web: {configs: [c]}}\nconfigs: {c: {content: hi}}",
	"configs.*.environment":                               "services: {web: {configs: [c]}}\nconfigs: {c: {environment: S}}",
	"configs.*.file":                                      "services: {web: {configs: [c]}}\nconfigs: {c: {file: web.env}}",
	"configs.*.name":                                      "services: {web: {configs: [c]}}\nconfigs: {c: {name: cee, content: hi}}",
	"networks.*.attachable":                               `networks: {default: {attachable: true}}`,
	"networks.*.driver":                                   `networks: {default: {driver: macvlan}}`,
	"networks.*.driver_opts":                              `networks: {default: {driver_opts: {a: b}}}`,
	"networks.*.external":                                 "services: {web: {networks: [n]}}\nnetworks: {n: {external: true}}",
	"networks.*.internal":                                 `networks: {default: {internal: true}}`,
	"networks.*.ipam":                                     `networks: {default: {ipam: {config: [{subnet: 10.9.0.0/24}]}}}`,
	"networks.*.labels":                                   `networks: {default: {labels: {a: b}}}`,
	"networks.*.name":                                     `networks: {default: {name: other}}`,
	"secrets.*.environment":                               "services: {web: {secrets: [s]}}\nsecrets: {s: {environment: T}}",
	"secrets.*.file":                                      "services: {web: {secrets: [f]}}\nsecrets: {f: {file: web.env}}",
	"secrets.*.name":                                      "services: {web: {secrets: [n]}}\nsecrets: {n: {name: sss, environment: S}}",
	"volumes.*.driver":                                    "services: {web: {volumes: [{type: volume, source: d, target: /data}]}}\nvolumes: {d: {driver: local2}}",
	"volumes.*.driver_opts":                               "services: {web: {volumes: [{type: volume, source: d, target: /data}]}}\nvolumes: {d: {driver_opts: {a: b}}}",
	"volumes.*.external":                                  "services: {web: {volumes: [{type: volume, source: d, target: /data}]}}\nvolumes: {d: {external: true}}",
	"volumes.*.labels":                                    "services: {web: {volumes: [{type: volume, source: d, target: /data}]}}\nvolumes: {d: {labels: {a: b}}}",
	"volumes.*.name":                                      "services: {web: {volumes: [{type: volume, source: d, target: /data}]}}\nvolumes: {d: {name: dee}}",
}

// Example is a compose fragment that sets the field ("" when none is
// written): under a service, or a whole file when it starts with a
// top-level key.
func (f Field) Example() string { return fieldExamples[f.Path] }

// FieldExampleBase is the compose file a field's example is laid over (as
// a second -f file): one service web.
const FieldExampleBase = "name: t\nservices:\n  web:\n    image: x\nsecrets:\n  s: {environment: S}\n"

// ExampleFile is the field's example as an override file of
// FieldExampleBase ("" when the field has no example).
func (f Field) ExampleFile() string {
	ex := f.Example()
	if ex == "" {
		return ""
	}
	if !strings.HasPrefix(f.Path, "services.") || strings.HasPrefix(ex, "services:") {
		return ex + "\n"
	}
	return "services:\n  web:\n    " + ex + "\n"
}

// FieldTableMarkdown renders the field table for docs/guides/fields.md.
func FieldTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| field |")
	for _, t := range Targets {
		fmt.Fprintf(&b, " %s |", t)
	}
	b.WriteString("\n|---|")
	for range Targets {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	cell := func(s Support) string {
		word := "refused"
		if s.Honoured {
			word = "yes"
		}
		if s.Note == "" {
			return word
		}
		return word + ": " + strings.ReplaceAll(s.Note, "|", `\|`)
	}
	for _, f := range Fields {
		fmt.Fprintf(&b, "| `%s` |", f.Path)
		for _, t := range Targets {
			fmt.Fprintf(&b, " %s |", cell(f.Support(t)))
		}
		b.WriteString("\n")
	}
	return b.String()
}
