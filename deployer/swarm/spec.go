package swarm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/go-units"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/version"
)

// Labels of the swarm objects invdeploy creates (besides deployer's).
const (
	// LabelImageRef is the image a service runs as the compose file names
	// it; the spec itself names the image ID, so every node runs the same
	// bytes.
	LabelImageRef = "io.invdeploy.image"
	// LabelSecretName is the compose name of a swarm secret.
	LabelSecretName = "io.invdeploy.secret"
	// LabelPinPrefix + "<project>.<service>" = "true" is the node label a
	// stateful service is pinned to.
	LabelPinPrefix = "io.invdeploy.pin."
)

// ServiceName is the swarm service of a compose service: <project>_<service>,
// as docker stack deploy names it.
func ServiceName(project, service string) string { return project + "_" + service }

// SecretName is the content-addressed swarm secret of a compose secret:
// <project>_<name>_<first 12 hex of SHA-256 of the value>. Swarm secrets are
// immutable, so a changed value is a new secret, and the services using it
// are updated (rolled) to it.
func SecretName(project, name string, value []byte) string {
	sum := sha256.Sum256(value)
	return project + "_" + name + "_" + hex.EncodeToString(sum[:6])
}

// PinLabel is the node label key that pins a stateful service.
func PinLabel(project, service string) string { return LabelPinPrefix + project + "." + service }

// Stateful reports whether a service keeps data in a named volume: it runs as
// one replica pinned to the node that holds the volume, and is never run
// twice (stop-first updates).
func Stateful(s types.ServiceConfig) bool {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source != "" {
			return true
		}
	}
	return false
}

// specInput is what a service's spec depends on besides the compose model.
type specInput struct {
	// ImageID is the image's ID ("sha256:..."), the same on every node.
	ImageID string
	// Secrets maps a compose secret name to its swarm secret's name and ID.
	Secrets map[string]secretRef
	// Users maps a service's user: (a name) to the numeric "uid:gid" in its
	// image, for secret file ownership; numeric users need no entry.
	User string
	// Replicas overrides deploy.replicas (--scale); nil: the compose file.
	Replicas *uint64
	// PinTo is the node label constraint of a stateful service ("" none).
	PinTo string
	// Edge says the service's published ports belong to its edge service:
	// it publishes none itself.
	Edge bool
}

type secretRef struct{ Name, ID string }

// serviceSpec converts one compose service to a swarm service spec. It is a
// pure function of its inputs. Warnings name compose fields Swarm (engine
// API 1.41) cannot honour.
func serviceSpec(p *types.Project, s types.ServiceConfig, in specInput) (swarm.ServiceSpec, []string, error) {
	var warns []string
	warn := func(f string, a ...any) {
		warns = append(warns, fmt.Sprintf("services.%s: ", s.Name)+fmt.Sprintf(f, a...))
	}
	name := ServiceName(p.Name, s.Name)
	labels := map[string]string{
		deployer.LabelProject:   p.Name,
		deployer.LabelService:   s.Name,
		deployer.LabelManagedBy: "invdeploy",
		deployer.LabelVersion:   version.Version,
		LabelImageRef:           deployer.ImageRef(p.Name, s),
	}
	if deps := dependsOn(s); deps != "" {
		labels[deployer.LabelDependsOn] = deps
	}
	if s.Deploy != nil {
		for k, v := range s.Deploy.Labels {
			labels[k] = v
		}
	}
	cLabels := map[string]string{deployer.LabelProject: p.Name, deployer.LabelService: s.Name}
	for k, v := range s.Labels {
		cLabels[k] = v
	}

	cs := &swarm.ContainerSpec{
		Image:          in.ImageID,
		Labels:         cLabels,
		Args:           s.Command,
		Command:        s.Entrypoint,
		Hostname:       s.Hostname,
		Env:            envList(s.Environment),
		Dir:            s.WorkingDir,
		User:           s.User,
		Groups:         s.GroupAdd,
		TTY:            s.Tty,
		OpenStdin:      s.StdinOpen,
		ReadOnly:       s.ReadOnly,
		StopSignal:     s.StopSignal,
		Init:           s.Init,
		Sysctls:        s.Sysctls,
		CapabilityAdd:  s.CapAdd,
		CapabilityDrop: s.CapDrop,
	}
	if s.StopGracePeriod != nil {
		d := time.Duration(*s.StopGracePeriod)
		cs.StopGracePeriod = &d
	}
	if hc := s.HealthCheck; hc != nil {
		h := &container.HealthConfig{Test: hc.Test}
		if hc.Disable {
			h.Test = []string{"NONE"}
		}
		if hc.Interval != nil {
			h.Interval = time.Duration(*hc.Interval)
		}
		if hc.Timeout != nil {
			h.Timeout = time.Duration(*hc.Timeout)
		}
		if hc.StartPeriod != nil {
			h.StartPeriod = time.Duration(*hc.StartPeriod)
		}
		if hc.Retries != nil {
			h.Retries = int(*hc.Retries)
		}
		cs.Healthcheck = h
	}
	for n, u := range s.Ulimits {
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		cs.Ulimits = append(cs.Ulimits, &container.Ulimit{Name: n, Soft: soft, Hard: hard})
	}
	sort.Slice(cs.Ulimits, func(i, j int) bool { return cs.Ulimits[i].Name < cs.Ulimits[j].Name })
	for _, opt := range s.SecurityOpt {
		switch strings.ReplaceAll(opt, "=", ":") {
		case "no-new-privileges:true", "no-new-privileges":
			// Engine API 1.46 has Privileges.NoNewPrivileges; older
			// engines drop the field silently, so say so.
			cs.Privileges = &swarm.Privileges{NoNewPrivileges: true}
			warn("security_opt %s is kept only by engines with API 1.46 or newer (Docker 27+); older swarm engines ignore it", opt)
		default:
			warn("security_opt %s is not supported by swarm services: dropped", opt)
		}
	}
	for _, t := range s.Tmpfs {
		m := mount.Mount{Type: mount.TypeTmpfs, TmpfsOptions: &mount.TmpfsOptions{}}
		target, opts, _ := strings.Cut(t, ":")
		m.Target = target
		for _, o := range strings.Split(opts, ",") {
			if v, ok := strings.CutPrefix(o, "size="); ok {
				n, err := units.RAMInBytes(v)
				if err != nil {
					return swarm.ServiceSpec{}, nil, fmt.Errorf("services.%s.tmpfs %q: size: %w", s.Name, t, err)
				}
				m.TmpfsOptions.SizeBytes = n
			} else if o != "" {
				warn("tmpfs option %q is not supported by swarm services: dropped", o)
			}
		}
		cs.Mounts = append(cs.Mounts, m)
	}
	for i, v := range s.Volumes {
		m := mount.Mount{Target: v.Target, ReadOnly: v.ReadOnly, Source: v.Source}
		switch v.Type {
		case types.VolumeTypeVolume:
			m.Type = mount.TypeVolume
			if v.Source != "" {
				vc, ok := p.Volumes[v.Source]
				if !ok {
					return swarm.ServiceSpec{}, nil, fmt.Errorf("services.%s.volumes[%d]: volume %q is not defined under top-level volumes", s.Name, i, v.Source)
				}
				m.Source = vc.Name
				m.VolumeOptions = &mount.VolumeOptions{Labels: map[string]string{deployer.LabelProject: p.Name, deployer.LabelVolume: v.Source}}
			}
		case types.VolumeTypeTmpfs:
			m.Type = mount.TypeTmpfs
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size)}
			}
		case types.VolumeTypeBind:
			m.Type = mount.TypeBind
			warn("bind mount %s is a path on whichever node runs the task", v.Source)
		default:
			return swarm.ServiceSpec{}, nil, fmt.Errorf("services.%s.volumes[%d].type %q is not supported on swarm", s.Name, i, v.Type)
		}
		cs.Mounts = append(cs.Mounts, m)
	}
	uid, gid := "0", "0"
	if u := in.User; u != "" {
		uid, gid, _ = strings.Cut(u, ":")
		if gid == "" {
			gid = uid
		}
	}
	for _, ref := range s.Secrets {
		sr, ok := in.Secrets[ref.Source]
		if !ok {
			return swarm.ServiceSpec{}, nil, fmt.Errorf("services.%s.secrets: %s has no swarm secret", s.Name, ref.Source)
		}
		target := ref.Target
		if target == "" {
			target = ref.Source
		}
		if path.IsAbs(target) && !strings.HasPrefix(target, "/run/secrets/") {
			warn("secret %s: target %s is outside /run/secrets, which engine API 1.41 swarm secrets do not support; delivered as /run/secrets/%s", ref.Source, target, path.Base(target))
		}
		target = strings.TrimPrefix(target, "/run/secrets/")
		if path.IsAbs(target) {
			target = path.Base(target)
		}
		mode := uint32(0o400)
		if ref.Mode != nil {
			mode = uint32(*ref.Mode)
		}
		fu, fg := uid, gid
		if ref.UID != "" {
			fu = ref.UID
		}
		if ref.GID != "" {
			fg = ref.GID
		}
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{
			File:     &swarm.SecretReferenceFileTarget{Name: target, UID: fu, GID: fg, Mode: fileMode(mode)},
			SecretID: sr.ID, SecretName: sr.Name,
		})
	}
	if len(s.Configs) > 0 {
		warn("configs are not delivered on swarm yet: dropped")
	}
	if s.ShmSize != 0 {
		warn("shm_size is not supported by swarm services on engine API 1.41: dropped (the default 64 MiB applies)")
	}
	if s.Privileged {
		warn("privileged is not supported by swarm services: dropped")
	}
	if s.NetworkMode != "" {
		warn("network_mode %s is not supported on swarm: the service joins the stack's overlay networks", s.NetworkMode)
	}

	res := &swarm.ResourceRequirements{Limits: &swarm.Limit{}, Reservations: &swarm.Resources{}}
	res.Limits.MemoryBytes = int64(s.MemLimit)
	res.Limits.NanoCPUs = int64(s.CPUS * 1e9)
	res.Limits.Pids = s.PidsLimit
	res.Reservations.MemoryBytes = int64(s.MemReservation)

	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: cs, Resources: res, Placement: &swarm.Placement{}},
	}
	replicas := uint64(1)
	if s.Scale != nil {
		replicas = uint64(*s.Scale)
	}
	stateful := Stateful(s)
	d := s.Deploy
	if d == nil {
		d = &types.DeployConfig{}
	}
	if d.Replicas != nil {
		replicas = uint64(*d.Replicas)
	}
	if in.Replicas != nil {
		replicas = *in.Replicas
	}
	if l := d.Resources.Limits; l != nil {
		if l.MemoryBytes != 0 {
			res.Limits.MemoryBytes = int64(l.MemoryBytes)
		}
		if l.NanoCPUs != 0 {
			res.Limits.NanoCPUs = int64(l.NanoCPUs.Value() * 1e9)
		}
		if l.Pids != 0 {
			res.Limits.Pids = l.Pids
		}
	}
	if r := d.Resources.Reservations; r != nil {
		res.Reservations.MemoryBytes = int64(r.MemoryBytes)
		res.Reservations.NanoCPUs = int64(r.NanoCPUs.Value() * 1e9)
	}
	rp, err := restartPolicy(s)
	if err != nil {
		return spec, nil, err
	}
	spec.TaskTemplate.RestartPolicy = rp
	spec.TaskTemplate.Placement.Constraints = append([]string(nil), d.Placement.Constraints...)
	for _, pref := range d.Placement.Preferences {
		spec.TaskTemplate.Placement.Preferences = append(spec.TaskTemplate.Placement.Preferences,
			swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: pref.Spread}})
	}
	spec.TaskTemplate.Placement.MaxReplicas = d.Placement.MaxReplicas
	if in.PinTo != "" {
		spec.TaskTemplate.Placement.Constraints = append(spec.TaskTemplate.Placement.Constraints, "node.labels."+in.PinTo+"==true")
	}

	switch d.Mode {
	case "", "replicated":
		if stateful && replicas != 1 {
			warn("keeps data in a named volume: it runs as 1 replica pinned to one node, not %d", replicas)
			replicas = 1
		}
		spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: &replicas}
	case "global":
		if stateful {
			return spec, nil, fmt.Errorf("services.%s: deploy.mode global with a named volume would run one copy of the data per node; use replicated", s.Name)
		}
		spec.Mode.Global = &swarm.GlobalService{}
	default:
		return spec, nil, fmt.Errorf("services.%s.deploy.mode %q: want replicated or global", s.Name, d.Mode)
	}

	// Published ports are host-mode: the ingress routing mesh needs IPVS.
	ep := &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR}
	if d.EndpointMode == "vip" {
		ep.Mode = swarm.ResolutionModeVIP
	} else if d.EndpointMode != "" && d.EndpointMode != "dnsrr" {
		return spec, nil, fmt.Errorf("services.%s.deploy.endpoint_mode %q: want vip or dnsrr", s.Name, d.EndpointMode)
	}
	for i, port := range s.Ports {
		pp, err := strconv.ParseUint(port.Published, 10, 16)
		if port.Published != "" && err != nil {
			return spec, nil, fmt.Errorf("services.%s.ports[%d]: published %q: swarm publishes single ports", s.Name, i, port.Published)
		}
		proto := swarm.PortConfigProtocol(port.Protocol)
		if proto == "" {
			proto = swarm.PortConfigProtocolTCP
		}
		// compose-go fills mode: ingress for every port, so a user asks
		// for the routing mesh with endpoint_mode: vip.
		mode := swarm.PortConfigPublishModeHost
		if ep.Mode == swarm.ResolutionModeVIP && port.Mode != "host" {
			mode = swarm.PortConfigPublishModeIngress
		}
		if port.HostIP != "" && port.HostIP != "0.0.0.0" && port.HostIP != "::" {
			warn("port %s: swarm publishes on every address of the node, not only %s", port.Published, port.HostIP)
		}
		ep.Ports = append(ep.Ports, swarm.PortConfig{Protocol: proto, TargetPort: port.Target, PublishedPort: uint32(pp), PublishMode: mode})
	}
	if in.Edge {
		ep.Ports = nil
	}
	spec.EndpointSpec = ep
	hostPorts := false
	for _, pc := range ep.Ports {
		hostPorts = hostPorts || pc.PublishMode == swarm.PortConfigPublishModeHost
	}

	for _, key := range s.NetworksByPriority() {
		nc, ok := p.Networks[key]
		if !ok {
			return spec, nil, fmt.Errorf("services.%s.networks: network %q is not defined", s.Name, key)
		}
		aliases := []string{s.Name}
		if sn := s.Networks[key]; sn != nil {
			aliases = append(aliases, sn.Aliases...)
		}
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: nc.Name, Aliases: aliases})
	}

	// Updates: a stateless service starts the new task before stopping the
	// old one and rolls back on failure. A stateful one (its volume is on
	// one node) and one with host-mode published ports (two tasks cannot
	// bind one port on a node) stop first.
	order := swarm.UpdateOrderStartFirst
	if stateful || hostPorts {
		order = swarm.UpdateOrderStopFirst
	}
	spec.UpdateConfig = updateConfig(d.UpdateConfig, order, swarm.UpdateFailureActionRollback)
	spec.RollbackConfig = updateConfig(d.RollbackConfig, order, swarm.UpdateFailureActionPause)
	if d.UpdateConfig != nil && d.UpdateConfig.Order == "start-first" && (stateful || hostPorts) {
		warn("update_config.order start-first with a named volume or a host-mode published port cannot work (two tasks on one volume or port): stop-first is used")
		spec.UpdateConfig.Order = swarm.UpdateOrderStopFirst
	}
	return spec, warns, nil
}

func updateConfig(u *types.UpdateConfig, order, failure string) *swarm.UpdateConfig {
	c := &swarm.UpdateConfig{Parallelism: 1, Order: order, FailureAction: failure, Monitor: 10 * time.Second}
	if u == nil {
		return c
	}
	if u.Parallelism != nil {
		c.Parallelism = *u.Parallelism
	}
	c.Delay = time.Duration(u.Delay)
	if u.FailureAction != "" {
		c.FailureAction = u.FailureAction
	}
	if u.Monitor != 0 {
		c.Monitor = time.Duration(u.Monitor)
	}
	c.MaxFailureRatio = u.MaxFailureRatio
	if u.Order != "" {
		c.Order = u.Order
	}
	return c
}

// restartPolicy maps deploy.restart_policy, else restart:, to Swarm's.
func restartPolicy(s types.ServiceConfig) (*swarm.RestartPolicy, error) {
	rp := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	if d := s.Deploy; d != nil && d.RestartPolicy != nil {
		r := d.RestartPolicy
		switch r.Condition {
		case "", "any":
		case "on-failure":
			rp.Condition = swarm.RestartPolicyConditionOnFailure
		case "none":
			rp.Condition = swarm.RestartPolicyConditionNone
		default:
			return nil, fmt.Errorf("services.%s.deploy.restart_policy.condition %q: want none, on-failure or any", s.Name, r.Condition)
		}
		if r.Delay != nil {
			v := time.Duration(*r.Delay)
			rp.Delay = &v
		}
		if r.Window != nil {
			v := time.Duration(*r.Window)
			rp.Window = &v
		}
		rp.MaxAttempts = r.MaxAttempts
		return rp, nil
	}
	name, count, _ := strings.Cut(s.Restart, ":")
	switch name {
	case "", "always", "unless-stopped":
	case "no":
		rp.Condition = swarm.RestartPolicyConditionNone
	case "on-failure":
		rp.Condition = swarm.RestartPolicyConditionOnFailure
		if count != "" {
			n, err := strconv.ParseUint(count, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("services.%s.restart %q: bad retry count", s.Name, s.Restart)
			}
			rp.MaxAttempts = &n
		}
	default:
		return nil, fmt.Errorf("services.%s.restart %q: want no, always, unless-stopped or on-failure[:N]", s.Name, s.Restart)
	}
	return rp, nil
}

// dependsOn records depends_on as "db:service_healthy,..." on the service.
func dependsOn(s types.ServiceConfig) string {
	parts := make([]string, 0, len(s.DependsOn))
	for name, dep := range s.DependsOn {
		parts = append(parts, name+":"+dep.Condition)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func envList(m types.MappingWithEquals) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if v := m[k]; v != nil {
			out = append(out, k+"="+*v)
		} else {
			out = append(out, k)
		}
	}
	return out
}

// specHash is the SHA-256 of a spec's JSON, stored as a label: an unchanged
// service is not updated.
func specHash(spec swarm.ServiceSpec) string {
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
