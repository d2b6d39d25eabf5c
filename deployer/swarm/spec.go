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

// localOnlyLabels are the container labels of one engine's containers
// that mean nothing on a swarm task (the task has its own number) or would
// update every service on each invdeploy release.
var localOnlyLabels = []string{deployer.LabelContainerNumber, deployer.LabelOneOff, deployer.LabelConfigHash,
	deployer.LabelDependsOn, deployer.LabelManagedBy, deployer.LabelVersion}

// serviceSpec converts one compose service to a swarm service spec. The
// container part comes from the one compose conversion
// (deployer.ConvertService); what is Swarm's own (deploy:, ports as an
// endpoint, networks as attachments, secrets as swarm secrets) is added
// here. Fields Swarm does not honour were refused by Check (the field
// table), so none is dropped here. It is a pure function of its inputs.
// Warnings say what Swarm does differently from one engine.
func serviceSpec(p *types.Project, s types.ServiceConfig, in specInput) (swarm.ServiceSpec, []string, error) {
	var warns []string
	warn := func(f string, a ...any) {
		warns = append(warns, fmt.Sprintf("services.%s: ", s.Name)+fmt.Sprintf(f, a...))
	}
	rt, err := deployer.ConvertService(p, s)
	if err != nil {
		return swarm.ServiceSpec{}, nil, err
	}
	cfg, host := rt.Config, rt.Host
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
	cLabels := map[string]string{}
	for k, v := range cfg.Labels {
		cLabels[k] = v
	}
	for _, k := range localOnlyLabels {
		delete(cLabels, k)
	}

	cs := &swarm.ContainerSpec{
		Image:          in.ImageID,
		Labels:         cLabels,
		Args:           cfg.Cmd,
		Command:        cfg.Entrypoint,
		Hostname:       cfg.Hostname,
		Env:            cfg.Env,
		Dir:            cfg.WorkingDir,
		User:           cfg.User,
		Groups:         host.GroupAdd,
		TTY:            cfg.Tty,
		OpenStdin:      cfg.OpenStdin,
		ReadOnly:       host.ReadonlyRootfs,
		StopSignal:     cfg.StopSignal,
		Init:           host.Init,
		Sysctls:        host.Sysctls,
		CapabilityAdd:  host.CapAdd,
		CapabilityDrop: host.CapDrop,
		Healthcheck:    cfg.Healthcheck,
		Ulimits:        host.Resources.Ulimits,
	}
	if s.StopGracePeriod != nil {
		d := time.Duration(*s.StopGracePeriod)
		cs.StopGracePeriod = &d
	}
	if len(host.DNS)+len(host.DNSSearch)+len(host.DNSOptions) > 0 {
		cs.DNSConfig = &swarm.DNSConfig{Nameservers: host.DNS, Search: host.DNSSearch, Options: host.DNSOptions}
	}
	for _, h := range host.ExtraHosts {
		// The engine's "name:ip" is Swarm's /etc/hosts line "ip name".
		hn, ip, ok := strings.Cut(h, ":")
		if !ok {
			return swarm.ServiceSpec{}, nil, fmt.Errorf("services.%s.extra_hosts %q: want host:ip", s.Name, h)
		}
		cs.Hosts = append(cs.Hosts, ip+" "+hn)
	}
	mounts, err := swarmMounts(p, s, host)
	if err != nil {
		return swarm.ServiceSpec{}, nil, err
	}
	cs.Mounts = mounts
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			warn("bind mount %s is a path on whichever node runs the task", v.Source)
		}
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
			return swarm.ServiceSpec{}, nil, fmt.Errorf("services.%s.secrets: %s: target %s is outside /run/secrets, where Swarm (engine API 1.41) delivers secrets; name a file there", s.Name, ref.Source, target)
		}
		target = strings.TrimPrefix(target, "/run/secrets/")
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

	res := &swarm.ResourceRequirements{Limits: &swarm.Limit{}, Reservations: &swarm.Resources{}}
	res.Limits.MemoryBytes = host.Resources.Memory
	res.Limits.NanoCPUs = host.Resources.NanoCPUs
	if host.Resources.PidsLimit != nil {
		res.Limits.Pids = *host.Resources.PidsLimit
	}
	res.Reservations.MemoryBytes = host.Resources.MemoryReservation

	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: cs, Resources: res, Placement: &swarm.Placement{}},
	}
	if lc := host.LogConfig; lc.Type != "" || len(lc.Config) > 0 {
		spec.TaskTemplate.LogDriver = &swarm.Driver{Name: lc.Type, Options: lc.Config}
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
	if r := d.Resources.Reservations; r != nil {
		res.Reservations.NanoCPUs = int64(r.NanoCPUs.Value() * 1e9)
	}
	spec.TaskTemplate.RestartPolicy = restartPolicy(s, host.RestartPolicy)
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

// restartPolicy is Swarm's form of the engine's restart policy (the one
// conversion of restart: and deploy.restart_policy), plus the delay and
// window only Swarm has. No policy at all is Swarm's default: any.
func restartPolicy(s types.ServiceConfig, engine container.RestartPolicy) *swarm.RestartPolicy {
	rp := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	switch engine.Name {
	case container.RestartPolicyDisabled:
		rp.Condition = swarm.RestartPolicyConditionNone
	case container.RestartPolicyOnFailure:
		rp.Condition = swarm.RestartPolicyConditionOnFailure
		if engine.MaximumRetryCount > 0 {
			n := uint64(engine.MaximumRetryCount)
			rp.MaxAttempts = &n
		}
	}
	if d := s.Deploy; d != nil && d.RestartPolicy != nil {
		if r := d.RestartPolicy; r.Delay != nil {
			v := time.Duration(*r.Delay)
			rp.Delay = &v
		}
		if r := d.RestartPolicy; r.Window != nil {
			v := time.Duration(*r.Window)
			rp.Window = &v
		}
		if r := d.RestartPolicy; r.MaxAttempts != nil && rp.MaxAttempts == nil {
			rp.MaxAttempts = r.MaxAttempts
		}
	}
	return rp
}

// swarmMounts are the service's mounts as Swarm takes them, from the one
// conversion: its mounts (named volumes labelled with the project, so a node
// that creates one marks it), bind strings, tmpfs entries (size and mode),
// and shm_size as a tmpfs at /dev/shm.
func swarmMounts(p *types.Project, s types.ServiceConfig, host *container.HostConfig) ([]mount.Mount, error) {
	var out []mount.Mount
	tmpfsPaths := make([]string, 0, len(host.Tmpfs))
	for t := range host.Tmpfs {
		tmpfsPaths = append(tmpfsPaths, t)
	}
	sort.Strings(tmpfsPaths)
	for _, target := range tmpfsPaths {
		m := mount.Mount{Type: mount.TypeTmpfs, Target: target, TmpfsOptions: &mount.TmpfsOptions{}}
		for _, o := range strings.Split(host.Tmpfs[target], ",") {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "":
			case "size":
				n, err := units.RAMInBytes(v)
				if err != nil {
					return nil, fmt.Errorf("services.%s.tmpfs %s: size: %w", s.Name, target, err)
				}
				m.TmpfsOptions.SizeBytes = n
			case "mode":
				n, err := strconv.ParseUint(v, 8, 32)
				if err != nil {
					return nil, fmt.Errorf("services.%s.tmpfs %s: mode %q: want octal", s.Name, target, v)
				}
				m.TmpfsOptions.Mode = fileMode(uint32(n))
			default:
				return nil, fmt.Errorf("services.%s.tmpfs %s: option %q is not honoured on swarm (size and mode are)", s.Name, target, o)
			}
		}
		out = append(out, m)
	}
	for _, b := range host.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			return nil, fmt.Errorf("services.%s.volumes: bind %q", s.Name, b)
		}
		out = append(out, mount.Mount{Type: mount.TypeBind, Source: parts[0], Target: parts[1], ReadOnly: len(parts) > 2 && parts[2] == "ro"})
	}
	byName := map[string]string{}
	for key, vc := range p.Volumes {
		byName[vc.Name] = key
	}
	for _, m := range host.Mounts {
		if m.Type == mount.TypeVolume && m.Source != "" {
			key := byName[m.Source]
			vl := map[string]string{deployer.LabelProject: p.Name, deployer.LabelVolume: key}
			for k, v := range p.Volumes[key].Labels {
				vl[k] = v
			}
			vo := &mount.VolumeOptions{Labels: vl}
			if m.VolumeOptions != nil {
				vo.NoCopy = m.VolumeOptions.NoCopy
			}
			m.VolumeOptions = vo
		}
		out = append(out, m)
	}
	if host.ShmSize > 0 {
		out = append(out, mount.Mount{Type: mount.TypeTmpfs, Target: "/dev/shm", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: host.ShmSize}})
	}
	return out, nil
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

// specHash is the SHA-256 of a spec's JSON, stored as a label: an unchanged
// service is not updated.
func specHash(spec swarm.ServiceSpec) string {
	// Secret IDs are the swarm's, known only once created: the names
	// (content-addressed) already say which value.
	if cs := spec.TaskTemplate.ContainerSpec; cs != nil && len(cs.Secrets) > 0 {
		c := *cs
		c.Secrets = make([]*swarm.SecretReference, len(cs.Secrets))
		for i, r := range cs.Secrets {
			rc := *r
			rc.SecretID = ""
			c.Secrets[i] = &rc
		}
		spec.TaskTemplate.ContainerSpec = &c
	}
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
