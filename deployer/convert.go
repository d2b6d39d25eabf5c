package deployer

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/go-connections/nat"

	"github.com/invdeploy/invdeploy/internal/version"
)

// secretsDir is where secrets are delivered inside containers.
const secretsDir = "/run/secrets"

// containerSpec is everything ContainerCreate and the calls right after it
// need for one container of a service.
type containerSpec struct {
	Name    string
	Config  *container.Config
	Host    *container.HostConfig
	Network *network.NetworkingConfig
	// Connect lists further networks to join after create (API 1.41 takes one
	// network at create time).
	Connect map[string]*network.EndpointSettings
}

// ContainerName is the name of container n (1-based) of a service:
// <project>-<service>-<n> like docker compose, or container_name when set.
func ContainerName(project string, s types.ServiceConfig, n int) string {
	if s.ContainerName != "" {
		return s.ContainerName
	}
	return fmt.Sprintf("%s-%s-%d", project, s.Name, n)
}

// ImageRef is the image a service runs: image:, or <project>-<service> for a
// build-only service (the docker compose default).
func ImageRef(project string, s types.ServiceConfig) string {
	if s.Image != "" {
		return s.Image
	}
	return project + "-" + s.Name
}

// convert turns one service into the container spec of container n. It is a
// pure function of its inputs, so it is unit-tested without an engine.
func convert(p *types.Project, s types.ServiceConfig, n int, hash string) (*containerSpec, error) {
	name := ContainerName(p.Name, s, n)
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[LabelProject] = p.Name
	labels[LabelService] = s.Name
	labels[LabelContainerNumber] = strconv.Itoa(n)
	labels[LabelOneOff] = "False"
	labels[LabelConfigHash] = hash
	if deps := dependsOnLabel(s); deps != "" {
		labels[LabelDependsOn] = deps
	}
	labels[LabelManagedBy] = "invdeploy"
	labels[LabelVersion] = version.Version

	cfg := &container.Config{
		Image:        ImageRef(p.Name, s),
		Labels:       labels,
		User:         s.User,
		WorkingDir:   s.WorkingDir,
		Hostname:     s.Hostname,
		Domainname:   s.DomainName,
		Tty:          s.Tty,
		OpenStdin:    s.StdinOpen,
		StopSignal:   s.StopSignal,
		Env:          envList(s.Environment),
		ExposedPorts: nat.PortSet{},
	}
	if len(s.Command) > 0 {
		cfg.Cmd = strslice.StrSlice(s.Command)
	}
	if len(s.Entrypoint) > 0 {
		cfg.Entrypoint = strslice.StrSlice(s.Entrypoint)
	}
	if s.StopGracePeriod != nil {
		secs := int(time.Duration(*s.StopGracePeriod).Seconds())
		cfg.StopTimeout = &secs
	}
	if hc := s.HealthCheck; hc != nil {
		h := &container.HealthConfig{}
		if hc.Disable {
			h.Test = []string{"NONE"}
		} else {
			h.Test = hc.Test
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
		cfg.Healthcheck = h
	}
	for _, e := range s.Expose {
		port, err := nat.NewPort(protoOf(e), strings.Split(e, "/")[0])
		if err != nil {
			return nil, fmt.Errorf("services.%s.expose %q: %w", s.Name, e, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
	}

	host := &container.HostConfig{
		PortBindings:   nat.PortMap{},
		ReadonlyRootfs: s.ReadOnly,
		CapAdd:         s.CapAdd,
		CapDrop:        s.CapDrop,
		SecurityOpt:    s.SecurityOpt,
		Privileged:     s.Privileged,
		Init:           s.Init,
		DNS:            s.DNS,
		DNSSearch:      s.DNSSearch,
		DNSOptions:     s.DNSOpts,
		ExtraHosts:     s.ExtraHosts.AsList(":"),
		GroupAdd:       s.GroupAdd,
		Sysctls:        s.Sysctls,
		ShmSize:        int64(s.ShmSize),
		OomScoreAdj:    int(s.OomScoreAdj),
		NetworkMode:    container.NetworkMode(s.NetworkMode),
	}
	host.Resources = container.Resources{
		Memory:            int64(s.MemLimit),
		MemoryReservation: int64(s.MemReservation),
		MemorySwap:        int64(s.MemSwapLimit),
		NanoCPUs:          int64(s.CPUS * 1e9),
		CPUShares:         s.CPUShares,
	}
	if s.PidsLimit != 0 {
		pl := s.PidsLimit
		host.Resources.PidsLimit = &pl
	}
	for name, u := range s.Ulimits {
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		host.Resources.Ulimits = append(host.Resources.Ulimits, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	sort.Slice(host.Resources.Ulimits, func(i, j int) bool { return host.Resources.Ulimits[i].Name < host.Resources.Ulimits[j].Name })
	if d := s.Deploy; d != nil {
		if l := d.Resources.Limits; l != nil {
			if l.MemoryBytes != 0 {
				host.Resources.Memory = int64(l.MemoryBytes)
			}
			if l.NanoCPUs != 0 {
				host.Resources.NanoCPUs = int64(l.NanoCPUs.Value() * 1e9)
			}
			if l.Pids != 0 {
				pl := l.Pids
				host.Resources.PidsLimit = &pl
			}
		}
		if r := d.Resources.Reservations; r != nil && r.MemoryBytes != 0 {
			host.Resources.MemoryReservation = int64(r.MemoryBytes)
		}
	}
	rp, err := restartPolicy(s)
	if err != nil {
		return nil, err
	}
	host.RestartPolicy = rp
	if s.Logging != nil {
		host.LogConfig = container.LogConfig{Type: s.Logging.Driver, Config: s.Logging.Options}
	}

	for _, t := range s.Tmpfs {
		path, opts, _ := strings.Cut(t, ":")
		if host.Tmpfs == nil {
			host.Tmpfs = map[string]string{}
		}
		host.Tmpfs[path] = opts
	}
	for i, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			// A legacy bind string: the engine creates a missing host path,
			// as docker compose does by default.
			b := v.Source + ":" + v.Target
			if v.ReadOnly {
				b += ":ro"
			}
			host.Binds = append(host.Binds, b)
			continue
		}
		m, err := volumeMount(p, s, i, v)
		if err != nil {
			return nil, err
		}
		host.Mounts = append(host.Mounts, m)
	}

	for i, port := range s.Ports {
		proto := port.Protocol
		if proto == "" {
			proto = "tcp"
		}
		cp, err := nat.NewPort(proto, strconv.Itoa(int(port.Target)))
		if err != nil {
			return nil, fmt.Errorf("services.%s.ports[%d]: %w", s.Name, i, err)
		}
		cfg.ExposedPorts[cp] = struct{}{}
		host.PortBindings[cp] = append(host.PortBindings[cp], nat.PortBinding{HostIP: port.HostIP, HostPort: port.Published})
	}

	spec := &containerSpec{Name: name, Config: cfg, Host: host, Network: &network.NetworkingConfig{}}
	if s.NetworkMode == "" {
		nets := s.NetworksByPriority()
		for i, key := range nets {
			nc, ok := p.Networks[key]
			if !ok {
				return nil, fmt.Errorf("services.%s.networks: network %q is not defined", s.Name, key)
			}
			ep := &network.EndpointSettings{Aliases: []string{s.Name}}
			if sn := s.Networks[key]; sn != nil {
				ep.Aliases = append(ep.Aliases, sn.Aliases...)
				ep.IPAddress = sn.Ipv4Address
				if sn.Ipv4Address != "" || sn.Ipv6Address != "" {
					ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: sn.Ipv4Address, IPv6Address: sn.Ipv6Address}
				}
			}
			if i == 0 {
				host.NetworkMode = container.NetworkMode(nc.Name)
				spec.Network.EndpointsConfig = map[string]*network.EndpointSettings{nc.Name: ep}
				continue
			}
			if spec.Connect == nil {
				spec.Connect = map[string]*network.EndpointSettings{}
			}
			spec.Connect[nc.Name] = ep
		}
	}
	return spec, nil
}

func protoOf(port string) string {
	if _, proto, ok := strings.Cut(port, "/"); ok {
		return proto
	}
	return "tcp"
}

// envList renders the environment sorted, skipping variables left unset
// (KEY with no value and nothing to resolve it from).
func envList(m types.MappingWithEquals) []string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+*m[k])
	}
	return out
}

func restartPolicy(s types.ServiceConfig) (container.RestartPolicy, error) {
	if d := s.Deploy; d != nil && d.RestartPolicy != nil {
		rp := container.RestartPolicy{}
		switch d.RestartPolicy.Condition {
		case "", "any":
			rp.Name = container.RestartPolicyAlways
		case "on-failure":
			rp.Name = container.RestartPolicyOnFailure
		case "none":
			rp.Name = container.RestartPolicyDisabled
		default:
			return rp, fmt.Errorf("services.%s.deploy.restart_policy.condition %q: want none, on-failure or any", s.Name, d.RestartPolicy.Condition)
		}
		if d.RestartPolicy.MaxAttempts != nil && rp.Name == container.RestartPolicyOnFailure {
			rp.MaximumRetryCount = int(*d.RestartPolicy.MaxAttempts)
		}
		return rp, nil
	}
	if s.Restart == "" {
		return container.RestartPolicy{}, nil
	}
	name, count, hasCount := strings.Cut(s.Restart, ":")
	rp := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	switch rp.Name {
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if hasCount {
			return rp, fmt.Errorf("services.%s.restart %q: only on-failure takes a retry count", s.Name, s.Restart)
		}
	case container.RestartPolicyOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return rp, fmt.Errorf("services.%s.restart %q: bad retry count", s.Name, s.Restart)
			}
			rp.MaximumRetryCount = n
		}
	default:
		return rp, fmt.Errorf("services.%s.restart %q: want no, always, unless-stopped or on-failure[:N]", s.Name, s.Restart)
	}
	return rp, nil
}

func volumeMount(p *types.Project, s types.ServiceConfig, i int, v types.ServiceVolumeConfig) (mount.Mount, error) {
	m := mount.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
	switch v.Type {
	case types.VolumeTypeVolume:
		m.Type = mount.TypeVolume
		if v.Source != "" {
			vc, ok := p.Volumes[v.Source]
			if !ok {
				return m, fmt.Errorf("services.%s.volumes[%d]: volume %q is not defined under top-level volumes", s.Name, i, v.Source)
			}
			m.Source = vc.Name
		}
		if v.Volume != nil {
			m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
		}
	case types.VolumeTypeTmpfs:
		m.Type = mount.TypeTmpfs
		if v.Tmpfs != nil {
			m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: fileMode(v.Tmpfs.Mode)}
		}
	default:
		return m, fmt.Errorf("services.%s.volumes[%d].type %q is not supported", s.Name, i, v.Type)
	}
	return m, nil
}

func fileMode(m uint32) os.FileMode { return os.FileMode(m) }

// dependsOnLabel is the service's depends_on as compose records it on
// containers ("db:service_healthy:false,..."), so that down, which has no
// compose file, stops dependents before what they depend on.
func dependsOnLabel(s types.ServiceConfig) string {
	parts := make([]string, 0, len(s.DependsOn))
	for name, dep := range s.DependsOn {
		parts = append(parts, fmt.Sprintf("%s:%s:%t", name, dep.Condition, dep.Restart))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Runtime is the one conversion of a compose service to the engine's
// container config and host config. Targets other than one engine (Swarm)
// build their specs from it rather than reading compose a second time.
type Runtime struct {
	Config *container.Config
	Host   *container.HostConfig
}

// ConvertService converts one service (its first container).
func ConvertService(p *types.Project, s types.ServiceConfig) (Runtime, error) {
	spec, err := convert(p, s, 1, "")
	if err != nil {
		return Runtime{}, err
	}
	return Runtime{Config: spec.Config, Host: spec.Host}, nil
}
