package deployer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/invdeploy/invdeploy/internal/httpguard"
	"github.com/invdeploy/invdeploy/internal/version"
)

// Labels of the zero-downtime rollout.
const (
	// LabelRole marks a container invdeploy adds to a service: "proxy" for
	// the rollout proxy that owns the service's published port.
	LabelRole = "io.invdeploy.role"
	// LabelRollout is "proxy" on a service container whose published port
	// belongs to the service's rollout proxy.
	LabelRollout = "io.invdeploy.rollout"
	// LabelBackend is the network alias the proxy reaches a container by:
	// unique per container, so old and new are told apart during a roll.
	LabelBackend = "io.invdeploy.backend"
	// LabelProxyHash is the hash of what a proxy container publishes.
	LabelProxyHash = "io.invdeploy.proxy-hash"
	// LabelDeliveryKey names a container's secret-delivery volumes when the
	// container was created under another name (a rolled container is
	// renamed once it serves).
	LabelDeliveryKey = "io.invdeploy.delivery-key"

	roleProxy = "proxy"
	// ExtService is a service's invdeploy settings:
	//   x-invdeploy:
	//     rollout: proxy | recreate   # override the rule (see rolloutOf)
	//     health_path: /readyz         # what the proxy requests before switching (default /)
	//     drain_timeout: 30s           # how long in-flight requests may take after the switch
	//     max_connections: 1024        # the proxy's limits (see proxyLimitKeys)
	//     read_timeout: 30s
	//     idle_timeout: 60s
	//     write_timeout: 30s
	//     upstream_timeout: 30s
	//     backup: continuous           # PostgreSQL's continuous protection (deployer/backup)
	//     hosts: [api.example.com]     # the HTTPS edge routes these host names here (edge.go)
	//     hsts: true                   # or a max-age such as 8760h
	//     tls_certificate: SECRET      # own certificate chain and key instead of ACME
	//     tls_key: SECRET
	ExtService = "x-invdeploy"

	proxyUser     = "65532:65532"
	proxyAdminDir = "/run/invdeploy-proxy"
	proxyStateDir = "/var/lib/invdeploy-proxy"
	// proxyMemory is the proxy container's memory limit; the Go runtime
	// is told to collect harder as it nears proxyGoMemLimit, below it.
	proxyMemory     = 128 << 20
	proxyGoMemLimit = "96MiB"
	proxyMetrics    = 9180
	proxyBinary     = "/invdeploy-proxy"
	defaultDrain    = 30 * time.Second
	nextNameSuffix  = "-next-"
)

// rollout is how changes of one service are applied.
type rollout struct {
	// Proxy: the service's published port belongs to a rollout proxy and a
	// changed container is rolled (new beside old, switch, drain, stop old).
	Proxy bool
	// Why says why in the plan's words.
	Why string
	// Port is the port the proxy serves (Proxy only): the service's one
	// ports entry, or its one exposed port.
	Port types.ServicePortConfig
	// Publish: the proxy publishes Port on the host (the service's ports
	// entry); otherwise the service is reached by name only.
	Publish      bool
	HealthPath   string
	DrainTimeout time.Duration
	// Release names the release this up records, for the proxy's
	// invdeploy_release_info series (0: none).
	Release  int
	Revision string
	Project  string
	// Limits bound what clients can hold of the proxy.
	Limits httpguard.Limits
}

// serviceExt is the x-invdeploy extension of a service.
type serviceExt struct {
	Rollout      string
	HealthPath   string
	DrainTimeout time.Duration
	Limits       httpguard.Limits
}

// proxyLimitKeys are the x-invdeploy keys of the proxy's limits (README,
// "Rollout proxy limits"), each a field of httpguard.Limits.
var proxyLimitKeys = map[string]func(*httpguard.Limits) *time.Duration{
	"read_timeout":     func(l *httpguard.Limits) *time.Duration { return &l.ReadTimeout },
	"idle_timeout":     func(l *httpguard.Limits) *time.Duration { return &l.IdleTimeout },
	"write_timeout":    func(l *httpguard.Limits) *time.Duration { return &l.WriteTimeout },
	"upstream_timeout": func(l *httpguard.Limits) *time.Duration { return &l.UpstreamTimeout },
}

const extKeys = "rollout, health_path, drain_timeout, max_connections, read_timeout, idle_timeout, write_timeout, upstream_timeout, backup, " + edgeKeys

// extInt reads a YAML integer (however the loader typed it).
func extInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), n == int64(int(n))
	case uint64:
		return int(n), n <= 1<<31
	case float64:
		return int(n), n == float64(int(n))
	case string:
		i, err := strconv.Atoi(n)
		return i, err == nil
	}
	return 0, false
}

// parseServiceExt reads x-invdeploy of a service; unknown keys and bad
// values are errors (a typo must not silently pick the other rollout).
func parseServiceExt(s types.ServiceConfig) (serviceExt, error) {
	e := serviceExt{Limits: httpguard.Defaults()}
	raw, ok := s.Extensions[ExtService]
	if !ok || raw == nil {
		return e, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return e, fmt.Errorf("services.%s.%s: want a mapping (%s)", s.Name, ExtService, extKeys)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		str, isStr := v.(string)
		switch k {
		case "rollout":
			if !isStr || (str != "proxy" && str != "recreate") {
				return e, fmt.Errorf("services.%s.%s.rollout: want proxy or recreate, not %v", s.Name, ExtService, v)
			}
			e.Rollout = str
		case "health_path":
			if !isStr || !strings.HasPrefix(str, "/") || strings.ContainsAny(str, " \t\r\n") {
				return e, fmt.Errorf("services.%s.%s.health_path: want a path starting with /, not %v", s.Name, ExtService, v)
			}
			e.HealthPath = str
		case "drain_timeout":
			d, err := time.ParseDuration(str)
			if !isStr || err != nil || d <= 0 || d > time.Hour {
				return e, fmt.Errorf("services.%s.%s.drain_timeout: want a duration such as 30s (at most 1h), not %v", s.Name, ExtService, v)
			}
			e.DrainTimeout = d
		case "max_connections":
			n, ok := extInt(v)
			if !ok || n < 1 || n > 1<<20 {
				return e, fmt.Errorf("services.%s.%s.max_connections: want a number of connections from 1 to %d, not %v", s.Name, ExtService, 1<<20, v)
			}
			e.Limits.MaxConns = n
		case "backup":
			// continuous protection: read and checked by deployer/backup
		case "hosts", "hsts", "tls_certificate", "tls_key":
			// the HTTPS edge's: read and checked by edgeOf (edge.go)
		default:
			field, ok := proxyLimitKeys[k]
			if !ok {
				return e, fmt.Errorf("services.%s.%s: unknown key %q (%s)", s.Name, ExtService, k, extKeys)
			}
			d, err := time.ParseDuration(str)
			if !isStr || err != nil || d < 100*time.Millisecond || d > 24*time.Hour {
				return e, fmt.Errorf("services.%s.%s.%s: want a duration such as 30s (100ms to 24h), not %v", s.Name, ExtService, k, v)
			}
			*field(&e.Limits) = d
		}
	}
	return e, nil
}

// ProxyLimits are the limits x-invdeploy gives the proxy in front of s
// (the rollout proxy, or the Swarm edge): httpguard's defaults changed by
// max_connections, read_timeout, idle_timeout, write_timeout and
// upstream_timeout.
//
// The HTTPS edge's keys (hosts, hsts, tls_certificate, tls_key) are
// refused: the Swarm edge serves plain HTTP (docs/guides/https.md, "On
// Swarm"), and a host name must not be dropped silently.
func ProxyLimits(s types.ServiceConfig) (httpguard.Limits, error) {
	e, err := parseServiceExt(s)
	if err == nil {
		if m, _ := s.Extensions[ExtService].(map[string]any); m != nil {
			for _, k := range []string{"hosts", "hsts", "tls_certificate", "tls_key"} {
				if _, ok := m[k]; ok {
					return e.Limits, fmt.Errorf("services.%s.%s.%s: the HTTPS edge is not available on Swarm (its edge serves plain HTTP): remove the key, or terminate TLS in front of the swarm (docs/guides/https.md)", s.Name, ExtService, k)
				}
			}
		}
	}
	return e.Limits, err
}

// rolloutOf decides how a service's changes are applied. A service is
// rolled behind the proxy when it is reached on exactly one TCP port (one
// ports entry, published or not, or else one expose entry: the port other
// services reach it on by name), has no named volume (a service with state
// is never run twice), runs one container, has neither container_name,
// network_mode nor a fixed address, and is an HTTP service as far as
// invdeploy can tell: it builds it, or x-invdeploy names its health_path.
// x-invdeploy rollout: recreate opts out, rollout: proxy insists (refused
// when one of the first rules forbids it). Without a proxy image every
// service is recreated. The proxy holds the service's names on the stack
// networks (naming.go), and publishes its port when the service does.
func rolloutOf(s types.ServiceConfig, proxyAvailable bool) (rollout, error) {
	ext, err := parseServiceExt(s)
	if err != nil {
		return rollout{}, err
	}
	ro := rollout{HealthPath: ext.HealthPath, DrainTimeout: ext.DrainTimeout, Limits: ext.Limits}
	if ro.HealthPath == "" {
		ro.HealthPath = "/"
	}
	if ro.DrainTimeout == 0 {
		ro.DrainTimeout = defaultDrain
	}
	port, blocker := servedPort(s)
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source != "" {
			blocker = "has the named volume " + v.Source + ": a service with state is never run twice, so it is recreated in place"
			break
		}
	}
	switch {
	case blocker != "":
	case s.GetScale() != 1:
		blocker = fmt.Sprintf("runs %d containers: recreated in place", s.GetScale())
	case s.ContainerName != "":
		blocker = "has container_name: recreated in place"
	case s.NetworkMode != "":
		blocker = "has network_mode: recreated in place"
	case fixedAddress(s) != "":
		blocker = "has a fixed address on network " + fixedAddress(s) + " (two containers cannot hold it): recreated in place"
	case s.Build == nil && ext.HealthPath == "" && ext.Rollout != "proxy":
		// An image pulled as is may serve anything (a database, a cache):
		// only what invdeploy builds, or what says how to probe it over
		// HTTP, is taken to be an HTTP service.
		blocker = "runs an image invdeploy does not build (set " + ExtService + ".health_path or rollout: proxy if it serves HTTP): recreated in place"
	}
	switch {
	case ext.Rollout == "recreate":
		ro.Why = ExtService + ".rollout is recreate: recreated in place"
		return ro, nil
	case blocker != "" && ext.Rollout == "proxy":
		return ro, fmt.Errorf("services.%s.%s.rollout is proxy, but the service %s", s.Name, ExtService, strings.TrimSuffix(blocker, ": recreated in place"))
	case blocker != "":
		ro.Why = blocker
		return ro, nil
	case !proxyAvailable:
		ro.Why = "no rollout proxy image (invdeploy-proxy was not found beside invdeploy): recreated in place"
		return ro, nil
	}
	ro.Proxy = true
	ro.Port = port
	if len(s.Ports) == 1 {
		ro.Publish = true
		ro.Why = fmt.Sprintf("stateless, publishes %s:%d: rolled behind the rollout proxy, which holds its port and name (zero downtime)", displayPublished(port), port.Target)
	} else {
		ro.Why = fmt.Sprintf("stateless, reached by name on port %d: rolled behind the rollout proxy, which holds its name (zero downtime)", port.Target)
	}
	return ro, nil
}

// servedPort is the one TCP port a service is reached on: its one ports
// entry, else its one expose entry. Otherwise blocker says why it cannot
// roll.
func servedPort(s types.ServiceConfig) (port types.ServicePortConfig, blocker string) {
	switch {
	case len(s.Ports) > 1:
		return port, fmt.Sprintf("publishes %d ports (the rollout proxy serves one): recreated in place", len(s.Ports))
	case len(s.Ports) == 1 && s.Ports[0].Protocol != "" && s.Ports[0].Protocol != "tcp":
		return port, "publishes a " + s.Ports[0].Protocol + " port: recreated in place"
	case len(s.Ports) == 1:
		port = s.Ports[0]
	case len(s.Expose) == 0:
		return port, "publishes no port and exposes none (name the port other services reach it on under expose to roll it): recreated in place"
	case len(s.Expose) > 1 || strings.Contains(s.Expose[0], "-"):
		return port, "exposes more than one port (the rollout proxy serves one): recreated in place"
	case protoOf(s.Expose[0]) != "tcp":
		return port, "exposes a " + protoOf(s.Expose[0]) + " port: recreated in place"
	default:
		n, err := strconv.ParseUint(strings.Split(s.Expose[0], "/")[0], 10, 16)
		if err != nil || n == 0 {
			return port, fmt.Sprintf("exposes %q, not a port number: recreated in place", s.Expose[0])
		}
		port = types.ServicePortConfig{Target: uint32(n), Protocol: "tcp"}
	}
	// Another port exposed besides the one published would reach the proxy
	// by the service's name, which forwards one.
	for _, e := range s.Expose {
		if strings.Split(e, "/")[0] != strconv.Itoa(int(port.Target)) {
			return types.ServicePortConfig{}, fmt.Sprintf("is reached on port %d and exposes %s (the rollout proxy serves one port): recreated in place", port.Target, e)
		}
	}
	return port, ""
}

// fixedAddress is the first network a service has a fixed address on.
func fixedAddress(s types.ServiceConfig) string {
	for _, key := range sortedKeys(s.Networks) {
		if sn := s.Networks[key]; sn != nil && (sn.Ipv4Address != "" || sn.Ipv6Address != "") {
			return key
		}
	}
	return ""
}

// displayPublished is a published port in the plan's words: the host
// port, or "an ephemeral port" when the engine picks one.
func displayPublished(p types.ServicePortConfig) string {
	if p.Published == "" {
		return "an ephemeral port"
	}
	return p.Published
}

// ProxyName is the container name of a service's rollout proxy.
func ProxyName(project, service string) string { return project + "-" + service + "-proxy" }

// proxySpec is the rollout proxy of a service: it joins every network of
// the service and answers there the service's name and aliases (see
// naming.go), publishes the service's port when the service does, reaches
// the backend by its container alias, and runs non-root, read-only, with
// no capability. Its fallback target (after a restart of the proxy, before
// the next deploy tells it the backend) is the alias all the service's
// containers answer.
func proxySpec(p *types.Project, s types.ServiceConfig, ro rollout, image string) (*containerSpec, error) {
	nets := s.NetworksByPriority()
	if len(nets) == 0 {
		return nil, fmt.Errorf("services.%s: the rollout proxy needs a network", s.Name)
	}
	target := strconv.Itoa(int(ro.Port.Target))
	metrics := proxyMetrics
	if int(ro.Port.Target) == metrics {
		metrics++
	}
	cport, err := nat.NewPort("tcp", target)
	if err != nil {
		return nil, fmt.Errorf("services.%s.ports: %w", s.Name, err)
	}
	spec := &containerSpec{Name: ProxyName(p.Name, s.Name), Network: &network.NetworkingConfig{}}
	key := []string{ro.Port.HostIP, ro.Port.Published, strconv.FormatBool(ro.Publish), target, ro.HealthPath, strconv.Itoa(metrics)}
	for i, nk := range nets {
		nc, ok := p.Networks[nk]
		if !ok {
			return nil, fmt.Errorf("services.%s.networks: network %q is not defined", s.Name, nk)
		}
		ep := &network.EndpointSettings{Aliases: proxyAliases(s, nk)}
		key = append(key, nc.Name+"="+strings.Join(ep.Aliases, ","))
		if i == 0 {
			spec.Network.EndpointsConfig = map[string]*network.EndpointSettings{nc.Name: ep}
			continue
		}
		if spec.Connect == nil {
			spec.Connect = map[string]*network.EndpointSettings{}
		}
		spec.Connect[nc.Name] = ep
	}
	limits := ro.Limits.Args()
	labels := map[string]string{
		LabelProject:   p.Name,
		LabelService:   s.Name,
		LabelRole:      roleProxy,
		LabelNaming:    roleProxy,
		LabelProxyHash: shortHash(strings.Join(append(key, limits...), "|")),
		LabelManagedBy: "invdeploy",
		LabelVersion:   version.Version,
	}
	stop := int((ro.DrainTimeout + 5*time.Second).Seconds())
	mem, pids := int64(proxyMemory), int64(64)
	health := proxyHealth
	spec.Config = &container.Config{
		Image: image,
		User:  proxyUser,
		Cmd: append([]string{"run", "--listen", ":" + target, "--metrics", ":" + strconv.Itoa(metrics),
			// The kept state (the backend the last deploy switched to)
			// serves after a restart of the proxy; without one, the alias
			// of the service's containers is the fallback; up names the
			// real one (the wait keeps the two from racing while up
			// starts it).
			"--state", proxyStateDir + "/state.json",
			"--target", backendAlias(s.Name) + ":" + target, "--target-delay", "10s", "--health-path", ro.HealthPath}, limits...),
		Env:          []string{"GOMEMLIMIT=" + proxyGoMemLimit},
		Labels:       labels,
		ExposedPorts: nat.PortSet{cport: {}, nat.Port(strconv.Itoa(metrics) + "/tcp"): {}},
		StopTimeout:  &stop,
		Healthcheck:  &health,
		// An anonymous volume: it outlives restarts of the container (the
		// engine's, after a crash or a reboot) and goes with it.
		Volumes: map[string]struct{}{proxyStateDir: {}},
	}
	spec.Host = &container.HostConfig{
		PortBindings:   nat.PortMap{},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		Tmpfs:          map[string]string{proxyAdminDir: "uid=65532,gid=65532,mode=0700,size=1m"},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		NetworkMode:    container.NetworkMode(p.Networks[nets[0]].Name),
		Resources:      container.Resources{Memory: mem, PidsLimit: &pids},
	}
	if ro.Publish {
		spec.Host.PortBindings[cport] = []nat.PortBinding{{HostIP: ro.Port.HostIP, HostPort: ro.Port.Published}}
	}
	return spec, nil
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// backendSpec adapts a service container's spec for life behind the proxy:
// the proxy publishes the port and answers the service's names, so the
// container answers only invdeploy's: the alias of all the service's
// containers and one of its own (returned), by which the proxy tells old
// and new apart during a roll.
func backendSpec(spec *containerSpec, s types.ServiceConfig, ro rollout) (alias string, err error) {
	alias = containerAlias(s.Name)
	cport, err := nat.NewPort("tcp", strconv.Itoa(int(ro.Port.Target)))
	if err != nil {
		return "", err
	}
	delete(spec.Host.PortBindings, cport)
	spec.Config.Labels[LabelRollout] = roleProxy
	spec.Config.Labels[LabelBackend] = alias
	for _, ep := range spec.Network.EndpointsConfig {
		ep.Aliases = []string{backendAlias(s.Name), alias}
	}
	for _, ep := range spec.Connect {
		ep.Aliases = []string{backendAlias(s.Name), alias}
	}
	return alias, nil
}

// randomHex is n random bytes in hex (crypto/rand never fails on Linux).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// proxyState is the service's proxy as it is on the engine.
type proxyState struct {
	ID      string
	Running bool
	Current bool // its published port and settings are what the service wants
	Naming  bool // it holds the service's in-stack names (LabelNaming)
}

// findProxy looks for a service's proxy among a project's containers.
func findProxy(cs []container.Summary, service, hash string) (proxyState, bool) {
	for _, c := range cs {
		if c.Labels[LabelRole] == roleProxy && c.Labels[LabelService] == service {
			return proxyState{ID: c.ID, Running: c.State == "running", Current: c.Labels[LabelProxyHash] == hash, Naming: c.Labels[LabelNaming] == roleProxy}, true
		}
	}
	return proxyState{}, false
}

// ensureProxy performs a proxy operation of the plan (see planProxy): the
// service's proxy is started (OpProxyStart), recreated (OpProxyRecreate: its
// settings changed, another published port; that is the one change that
// interrupts clients, and up says so) or created. It returns the proxy's id.
func (d *Deployer) ensureProxy(ctx context.Context, p *types.Project, s types.ServiceConfig, ro rollout, image string, op Op) (id string, err error) {
	spec, err := proxySpec(p, s, ro, image)
	if err != nil {
		return "", err
	}
	if op.Kind == OpProxyStart {
		if err := d.engine.ContainerStart(ctx, op.x.proxy, container.StartOptions{}); err != nil {
			return "", fmt.Errorf("start %s: %w", spec.Name, err)
		}
		d.out.Event("Container %s started", spec.Name)
		return op.x.proxy, nil
	}
	if op.Kind == OpProxyRecreate {
		d.out.Event("Container %s recreated (its published port, health path or limits changed: clients are interrupted once)", spec.Name)
		if err := d.engine.ContainerRemove(ctx, op.x.proxy, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("remove %s: %w", spec.Name, err)
		}
	}
	created, err := d.engine.ContainerCreate(ctx, spec.Config, spec.Host, spec.Network, nil, spec.Name)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", spec.Name, err)
	}
	err = d.connectNetworks(ctx, created.ID, spec)
	if err == nil {
		if err = d.engine.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			err = fmt.Errorf("start %s: %w", spec.Name, err)
		}
	}
	if err != nil {
		_ = d.engine.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		return "", err
	}
	if op.Kind == OpProxyCreate {
		owns := "the name " + s.Name + " on the stack network"
		if ro.Publish {
			owns = fmt.Sprintf("%s:%s and %s", displayIP(ro.Port.HostIP), displayPublished(ro.Port), owns)
		}
		d.out.Event("Container %s created and started (owns %s)", spec.Name, owns)
	}
	return created.ID, nil
}

// ProxySwitch is what the proxy reported for one switch.
type ProxySwitch struct {
	Previous     string `json:"previous"`
	Target       string `json:"target"`
	Drained      bool   `json:"drained"`
	HealthyAfter int64  `json:"healthy_after_ns"`
	DrainedAfter int64  `json:"drained_after_ns"`
}

// proxyDeploy tells the proxy (by exec of its deploy command, so it needs
// no published admin port and works on a remote engine) to switch to
// target once target answers the health path, and to drain the previous
// backend. It returns when the old backend is drained; an error means the
// proxy did not switch.
func (d *Deployer) proxyDeploy(ctx context.Context, proxyID, service, target string, ro rollout, healthTimeout time.Duration) (ProxySwitch, error) {
	cmd := []string{proxyBinary, "deploy", "--target", target, "--health-path", ro.HealthPath,
		"--health-timeout", healthTimeout.Round(time.Second).String(), "--health-interval", "100ms",
		"--drain-timeout", ro.DrainTimeout.String()}
	if ro.Release > 0 {
		cmd = append(cmd, "--project", ro.Project, "--service", service, "--release", strconv.Itoa(ro.Release))
		if validRevision(ro.Revision) {
			cmd = append(cmd, "--revision", ro.Revision)
		}
	}
	var sw ProxySwitch
	ex, err := d.engine.ContainerExecCreate(ctx, proxyID, container.ExecOptions{Cmd: cmd, User: proxyUser, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return sw, fmt.Errorf("rollout proxy: %w", err)
	}
	att, err := d.engine.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return sw, fmt.Errorf("rollout proxy: %w", err)
	}
	var stdout, stderr bytes.Buffer
	_, err = stdcopy.StdCopy(&stdout, &stderr, att.Reader)
	att.Close()
	if err != nil {
		return sw, fmt.Errorf("rollout proxy: read its answer: %w", err)
	}
	ins, err := d.engine.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return sw, fmt.Errorf("rollout proxy: %w", err)
	}
	if ins.ExitCode != 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("exit code %d", ins.ExitCode)
		}
		return sw, fmt.Errorf("rollout proxy did not switch to %s: %s", target, msg)
	}
	if b := bytes.TrimSpace(stdout.Bytes()); len(b) > 0 {
		if err := json.Unmarshal(b, &sw); err != nil {
			return sw, fmt.Errorf("rollout proxy: unreadable answer %q: %w", b, err)
		}
	}
	return sw, nil
}

// validRevision is what the proxy accepts as a revision label.
func validRevision(r string) bool {
	if r == "" || len(r) > 64 {
		return false
	}
	for i, c := range r {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && strings.ContainsRune("_.+-", c))
		if !ok {
			return false
		}
	}
	return true
}
