package deployer

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/invdeploy/invdeploy/internal/edge"
	"github.com/invdeploy/invdeploy/internal/version"
)

// The per-engine HTTPS edge (internal/edge): one container per engine,
// shared by every project deployed to it, in the host's network namespace
// so that it owns ports 80 and 443 itself and can hand its listening
// sockets to the next edge on an upgrade. It routes each host name named
// by a service's x-invdeploy hosts to that service's published port on the
// host's loopback, where the service's rollout proxy answers (so a roll
// through the edge is the rollout proxy's zero-downtime roll).
const (
	// EdgeName is the edge's container; EdgeVolume its data (certificates,
	// ACME account, routes), mounted into no other container.
	EdgeName   = "invdeploy-edge"
	EdgeVolume = "invdeploy-edge-data"
	// LabelEdgeHash is the hash of the edge's image and settings; a change
	// upgrades the edge. LabelEdgePorts are its ports ("80,443").
	LabelEdgeHash  = "io.invdeploy.edge-hash"
	LabelEdgePorts = "io.invdeploy.edge-ports"
	// LabelEdgeSettings are the edge's settings (JSON of edgeSettings):
	// an up that gives none keeps them.
	LabelEdgeSettings = "io.invdeploy.edge-settings"
	roleEdge          = "edge"
	// EdgeMetricsPort is where the edge serves /metrics, on the default
	// bridge's gateway address only (containers reach it as
	// host.docker.internal with extra_hosts host-gateway; nothing outside
	// the host does).
	EdgeMetricsPort = 9190
	edgeCAFile      = "acme-ca.pem"
	edgeNextSuffix  = "-next"
	edgeMemory      = 256 << 20
)

// EdgeOptions are the edge's settings (up's --edge-* and --acme-* flags).
// They are the engine's, not a project's: the last up that names other
// settings upgrades the edge for every project on the engine.
type EdgeOptions struct {
	// HTTPPort and HTTPSPort are the host's ports (0: 80 and 443).
	HTTPPort, HTTPSPort int
	// ACMEDirectory is the ACME directory ("": Let's Encrypt).
	ACMEDirectory string
	// ACMEEmail is the ACME account's contact (optional).
	ACMEEmail string
	// ACMECAFile is a PEM bundle on this machine trusted for the ACME
	// directory's HTTPS (a private CA); copied into the edge's volume.
	ACMECAFile string
	// Name is the edge's container ("": EdgeName); its volume is
	// Name-data. Tests give each edge its own.
	Name string
}

func (o EdgeOptions) name() string {
	if o.Name == "" {
		return EdgeName
	}
	return o.Name
}

func (o EdgeOptions) volume() string { return o.name() + "-data" }

// edgeSettings are EdgeOptions as the edge's label keeps them (the CA
// bundle itself is in the edge's volume).
type edgeSettings struct {
	HTTPPort      int    `json:"http_port,omitempty"`
	HTTPSPort     int    `json:"https_port,omitempty"`
	ACMEDirectory string `json:"acme_directory,omitempty"`
	ACMEEmail     string `json:"acme_email,omitempty"`
	ACMECA        bool   `json:"acme_ca,omitempty"`
}

// inheritEdge fills the settings o leaves unset from the running edge c
// (its label, and its CA bundle read back from its volume): another
// project's up without --acme-* flags does not reset the engine's edge.
func (d *Deployer) inheritEdge(ctx context.Context, c container.Summary, o EdgeOptions, caPEM []byte) (EdgeOptions, []byte) {
	var s edgeSettings
	if json.Unmarshal([]byte(c.Labels[LabelEdgeSettings]), &s) != nil {
		return o, caPEM
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = s.HTTPPort
	}
	if o.HTTPSPort == 0 {
		o.HTTPSPort = s.HTTPSPort
	}
	if o.ACMEDirectory == "" {
		o.ACMEDirectory = s.ACMEDirectory
	}
	if o.ACMEEmail == "" {
		o.ACMEEmail = s.ACMEEmail
	}
	if caPEM == nil && s.ACMECA && o.ACMEDirectory == s.ACMEDirectory {
		rc, _, err := d.engine.CopyFromContainer(ctx, c.ID, edge.DefaultDataDir+"/"+edgeCAFile)
		if err == nil {
			defer rc.Close()
			tr := tar.NewReader(rc)
			if _, err := tr.Next(); err == nil {
				var b bytes.Buffer
				if _, err := b.ReadFrom(io.LimitReader(tr, 1<<20)); err == nil {
					caPEM = b.Bytes()
				}
			}
		}
	}
	return o, caPEM
}

// Ports are the edge's ports with their defaults.
func (o EdgeOptions) Ports() (httpPort, httpsPort int) {
	httpPort, httpsPort = o.HTTPPort, o.HTTPSPort
	if httpPort == 0 {
		httpPort = 80
	}
	if httpsPort == 0 {
		httpsPort = 443
	}
	return httpPort, httpsPort
}

// serviceEdge is what x-invdeploy says of a service's place on the edge.
type serviceEdge struct {
	// Hosts are the host names routed to the service.
	Hosts []string
	// HSTS is the Strict-Transport-Security max-age in seconds (0: none).
	HSTS int
	// CertSecret and KeySecret name top-level secrets holding the
	// service's own certificate chain and key (instead of ACME).
	CertSecret, KeySecret string
	// Upstream is where the edge reaches the service's published port.
	Upstream string
}

// edgeKeys are the x-invdeploy keys of the edge (see parseServiceExt).
const edgeKeys = "hosts, hsts, tls_certificate, tls_key"

// edgeOf reads the edge's keys of a service's x-invdeploy; bad values are
// errors. A service with hosts must publish exactly one TCP port: the edge
// forwards to it.
func edgeOf(s types.ServiceConfig) (serviceEdge, error) {
	var se serviceEdge
	m, _ := s.Extensions[ExtService].(map[string]any)
	where := "services." + s.Name + "." + ExtService
	switch v := m["hosts"].(type) {
	case nil:
	case string:
		se.Hosts = strings.Split(v, ",")
	case []any:
		for _, h := range v {
			str, ok := h.(string)
			if !ok {
				return se, fmt.Errorf("%s.hosts: want host names, not %v", where, h)
			}
			se.Hosts = append(se.Hosts, str)
		}
	default:
		return se, fmt.Errorf("%s.hosts: want a list of host names, not %v", where, v)
	}
	seen := map[string]bool{}
	for i, h := range se.Hosts {
		h = strings.TrimSpace(h)
		se.Hosts[i] = h
		if err := edge.ValidHost(h); err != nil {
			return se, fmt.Errorf("%s.hosts: %w", where, err)
		}
		if seen[h] {
			return se, fmt.Errorf("%s.hosts: %s twice", where, h)
		}
		seen[h] = true
	}
	switch v := m["hsts"].(type) {
	case nil:
	case bool:
		if v {
			se.HSTS = 365 * 86400
		}
	case string:
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 2*365*24*time.Hour {
			return se, fmt.Errorf("%s.hsts: want true or a max-age such as 8760h (at most two years), not %q", where, v)
		}
		se.HSTS = int(d / time.Second)
	default:
		return se, fmt.Errorf("%s.hsts: want true or a max-age such as 8760h, not %v", where, v)
	}
	for key, dst := range map[string]*string{"tls_certificate": &se.CertSecret, "tls_key": &se.KeySecret} {
		if v, ok := m[key]; ok {
			str, isStr := v.(string)
			if !isStr || str == "" {
				return se, fmt.Errorf("%s.%s: want the name of a top-level secret, not %v", where, key, v)
			}
			*dst = str
		}
	}
	if (se.CertSecret == "") != (se.KeySecret == "") {
		return se, fmt.Errorf("%s: tls_certificate and tls_key go together", where)
	}
	if len(se.Hosts) == 0 {
		if se.HSTS > 0 || se.CertSecret != "" {
			return se, fmt.Errorf("%s: hsts and tls_certificate need hosts", where)
		}
		return se, nil
	}
	var published []types.ServicePortConfig
	for _, p := range s.Ports {
		if p.Published != "" && (p.Protocol == "" || p.Protocol == "tcp") {
			published = append(published, p)
		}
	}
	if len(published) != 1 {
		return se, fmt.Errorf("%s.hosts: the edge forwards to the service's published port, and it publishes %d TCP ports; publish exactly one (e.g. \"127.0.0.1:8000:8000\": the edge reaches it on the host's loopback)", where, len(published))
	}
	host := published[0].HostIP
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	se.Upstream = net.JoinHostPort(host, published[0].Published)
	return se, nil
}

// projectEdges are the services of p that the edge fronts.
func projectEdges(p *types.Project, order []string) (map[string]serviceEdge, error) {
	out := map[string]serviceEdge{}
	owner := map[string]string{}
	for _, name := range order {
		se, err := edgeOf(p.Services[name])
		if err != nil {
			return nil, err
		}
		if len(se.Hosts) == 0 {
			continue
		}
		for _, h := range se.Hosts {
			if o, dup := owner[h]; dup {
				return nil, fmt.Errorf("services.%s.%s.hosts: %s is services.%s's too", name, ExtService, h, o)
			}
			owner[h] = name
		}
		out[name] = se
	}
	return out, nil
}

// ownCertificate reads a service's own certificate and key from their
// secrets and checks that they make a pair (errors never hold a value).
func ownCertificate(p *types.Project, se serviceEdge, configDir string) (certPEM, keyPEM []byte, err error) {
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return nil, nil, err
	}
	var out [2][]byte
	for i, name := range []string{se.CertSecret, se.KeySecret} {
		src, ok := srcs[name]
		if !ok {
			return nil, nil, fmt.Errorf("secret %s is not defined under top-level secrets", name)
		}
		if out[i], err = readSecret(p, src, false); err != nil {
			return nil, nil, err
		}
	}
	if _, err := tls.X509KeyPair(out[0], out[1]); err != nil {
		return nil, nil, fmt.Errorf("secrets %s and %s are not a PEM certificate chain and its key", se.CertSecret, se.KeySecret)
	}
	return out[0], out[1], nil
}

// edgeRoute is the route the edge should hold for a service.
func edgeRoute(project, service string, se serviceEdge, certPEM []byte) edge.Route {
	r := edge.Route{Project: project, Service: service, Hosts: append([]string{}, se.Hosts...), Upstream: se.Upstream, HSTS: se.HSTS}
	if certPEM != nil {
		// The name changes with the certificate: a new one is a new route.
		r.CertFile = "own-" + project + "-" + service + "-" + shortHash(string(certPEM)) + ".crt"
		r.KeyFile = strings.TrimSuffix(r.CertFile, ".crt") + ".key"
	}
	return r
}

func sameRoute(a, b edge.Route) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// edgeSpec is the edge's container: the rollout proxy's image run as
// `edge run`, in the host's network namespace, root with no capability but
// NET_BIND_SERVICE (ports 80 and 443; a non-root user cannot be given it
// without file capabilities), a read-only root, its data in EdgeVolume.
func edgeSpec(image string, o EdgeOptions, caPEM []byte, metricsIP string) *containerSpec {
	httpPort, httpsPort := o.Ports()
	cmd := []string{"edge", "run", "--http", ":" + strconv.Itoa(httpPort), "--https", ":" + strconv.Itoa(httpsPort),
		"--data", edge.DefaultDataDir, "--admin", edge.DefaultAdmin}
	if o.ACMEDirectory != "" {
		cmd = append(cmd, "--acme-directory", o.ACMEDirectory)
	}
	if o.ACMEEmail != "" {
		cmd = append(cmd, "--acme-email", o.ACMEEmail)
	}
	if caPEM != nil {
		cmd = append(cmd, "--acme-ca", edge.DefaultDataDir+"/"+edgeCAFile)
	}
	if metricsIP != "" {
		cmd = append(cmd, "--metrics", net.JoinHostPort(metricsIP, strconv.Itoa(EdgeMetricsPort)))
	}
	key := strings.Join(append([]string{image, string(caPEM)}, cmd...), "|")
	settings, _ := json.Marshal(edgeSettings{HTTPPort: httpPort, HTTPSPort: httpsPort, ACMEDirectory: o.ACMEDirectory, ACMEEmail: o.ACMEEmail, ACMECA: caPEM != nil})
	stop := 35
	mem, pids := int64(edgeMemory), int64(256)
	cfg := &container.Config{
		Image: image,
		User:  "0:0",
		Cmd:   cmd,
		Labels: map[string]string{
			LabelRole:         roleEdge,
			LabelEdgeHash:     shortHash(key),
			LabelEdgePorts:    strconv.Itoa(httpPort) + "," + strconv.Itoa(httpsPort),
			LabelEdgeSettings: string(settings),
			LabelManagedBy:    "invdeploy",
			LabelVersion:      version.Version,
		},
		StopTimeout: &stop,
		Healthcheck: &container.HealthConfig{Test: []string{"CMD", proxyBinary, "edge", "healthcheck"},
			Interval: 5 * time.Second, Timeout: 3 * time.Second, Retries: 3},
	}
	host := &container.HostConfig{
		NetworkMode:    "host",
		Mounts:         []mount.Mount{{Type: mount.TypeVolume, Source: o.volume(), Target: edge.DefaultDataDir}},
		Tmpfs:          map[string]string{"/run/invdeploy-edge": "mode=0700,size=1m"},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_BIND_SERVICE"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Resources:      container.Resources{Memory: mem, PidsLimit: &pids},
	}
	return &containerSpec{Name: o.name(), Config: cfg, Host: host}
}

// findEdge is the engine's edge container (ok false: none).
func (d *Deployer) findEdge(ctx context.Context, name string) (container.Summary, bool, error) {
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelRole+"="+roleEdge))})
	if err != nil {
		return container.Summary{}, false, fmt.Errorf("list the edge: %w", err)
	}
	for _, c := range cs {
		if containerName(c) == name {
			return c, true, nil
		}
	}
	return container.Summary{}, false, nil
}

// bridgeGateway is the default bridge's gateway address (where the edge
// serves its metrics), "" when the engine has none.
func (d *Deployer) bridgeGateway(ctx context.Context) string {
	nets, err := d.engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "bridge"))})
	if err != nil {
		return ""
	}
	for _, n := range nets {
		if n.Name != "bridge" {
			continue
		}
		for _, c := range n.IPAM.Config {
			if ip := net.ParseIP(c.Gateway); ip != nil && ip.To4() != nil {
				return c.Gateway
			}
			// The engine may list the subnet only: its gateway is the
			// subnet's first address (docker0's).
			if _, sub, err := net.ParseCIDR(c.Subnet); err == nil && sub.IP.To4() != nil {
				ip := sub.IP.To4()
				return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String()
			}
		}
	}
	return ""
}

// edgeExec runs the edge's command line in its container and returns its
// standard output.
func (d *Deployer) edgeExec(ctx context.Context, id string, args ...string) ([]byte, error) {
	cmd := append([]string{proxyBinary, "edge"}, args...)
	ex, err := d.engine.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	att, err := d.engine.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	var stdout, stderr bytes.Buffer
	_, err = stdcopy.StdCopy(&stdout, &stderr, att.Reader)
	att.Close()
	if err != nil {
		return nil, fmt.Errorf("edge: read its answer: %w", err)
	}
	ins, err := d.engine.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if ins.ExitCode != 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("exit code %d", ins.ExitCode)
		}
		return nil, fmt.Errorf("edge %s: %s", args[0], msg)
	}
	return stdout.Bytes(), nil
}

// edgeRoutes is the table the running edge serves.
func (d *Deployer) edgeRoutes(ctx context.Context, id string) (edge.Table, error) {
	out, err := d.edgeExec(ctx, id, "routes")
	if err != nil {
		return edge.Table{}, err
	}
	return edge.ParseTable(out)
}

// waitEdge waits until the edge in container id serves (its admin API
// answers once its listeners are taken over or bound).
func (d *Deployer) waitEdge(ctx context.Context, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if _, last = d.edgeExec(ctx, id, "healthcheck"); last == nil {
			return nil
		}
		ins, err := d.engine.ContainerInspect(ctx, id)
		if err == nil && ins.State != nil && !ins.State.Running {
			logs, _ := d.tailLogs(ctx, id, 20)
			return fmt.Errorf("the edge exited (%d): %s", ins.State.ExitCode, strings.Join(logs, "\n"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the edge did not serve within %s: %v", timeout, last)
}

// edgeWork is what the plan's edge operations need.
type edgeWork struct {
	name   string // the edge's container
	spec   *containerSpec
	caPEM  []byte
	route  edge.Route
	cert   []byte // the route's own certificate chain (nil: ACME)
	key    []byte
	remove string // OpEdgeUnroute: the service whose route goes
}

// planEdge plans the edge for p: created, upgraded (its image or settings
// changed) or started when a service names hosts, and a route set for each
// such service whose route differs from the edge's (removed for a service
// that names none any more). The edge's operations come after the
// services': the routes name published ports that exist by then.
func (d *Deployer) planEdge(ctx context.Context, pl *Plan, o UpOptions) error {
	wants, err := projectEdges(pl.p, pl.order)
	if err != nil {
		return err
	}
	name := o.Edge.name()
	c, found, err := d.findEdge(ctx, name)
	if err != nil {
		return err
	}
	running := found && c.State == "running"
	current := edge.Table{}
	if running {
		if current, err = d.edgeRoutes(ctx, c.ID); err != nil {
			return err
		}
	}
	if len(wants) == 0 {
		for _, r := range current.Routes {
			if r.Project == pl.p.Name {
				pl.Ops = append(pl.Ops, Op{Kind: OpEdgeUnroute, Service: r.Service, Target: strings.Join(r.Hosts, ","),
					Reason: "the service names no hosts any more", x: opData{edge: &edgeWork{name: name, remove: r.Service}}})
			}
		}
		return nil
	}
	image := pl.proxyImage
	if image == "" {
		ref, present, err := d.proxyImage(ctx, o.ProxyBinary)
		if err != nil {
			return fmt.Errorf("x-invdeploy hosts need the edge, which runs from the rollout proxy's image: %w", err)
		}
		image = ref
		if !present {
			pl.Ops = append(pl.Ops, Op{Kind: OpProxyImage, Target: ref, Reason: "the edge's image (the rollout proxy's), not present", x: opData{ref: o.ProxyBinary}})
		}
	}
	var caPEM []byte
	if o.Edge.ACMECAFile != "" {
		if caPEM, err = readSourceFile(o.Edge.ACMECAFile, 1<<20); err != nil {
			return fmt.Errorf("--acme-ca: %w", err)
		}
	}
	eo := o.Edge
	if found {
		eo, caPEM = d.inheritEdge(ctx, c, eo, caPEM)
	}
	spec := edgeSpec(image, eo, caPEM, d.bridgeGateway(ctx))
	w := &edgeWork{name: name, spec: spec, caPEM: caPEM}
	httpPort, httpsPort := eo.Ports()
	ports := fmt.Sprintf("%d, %d", httpPort, httpsPort)
	switch {
	case !found:
		pl.Ops = append(pl.Ops, Op{Kind: OpEdgeCreate, Target: name, Reason: "the engine's HTTPS edge (ports " + ports + "), shared by every project on it", x: opData{edge: w}})
	case c.Labels[LabelEdgeHash] != spec.Config.Labels[LabelEdgeHash]:
		pl.Ops = append(pl.Ops, Op{Kind: OpEdgeUpgrade, Target: name, Reason: "its image or settings changed: the new edge takes the listeners over, then the old one drains (no connection lost)", x: opData{edge: w, proxy: c.ID}})
	case !running:
		pl.Ops = append(pl.Ops, Op{Kind: OpEdgeStart, Target: name, Reason: "stopped", x: opData{edge: w, proxy: c.ID}})
		current = edge.Table{} // unknown until it runs: set every route
	}
	names := make([]string, 0, len(wants))
	for name := range wants {
		names = append(names, name)
	}
	sort.Strings(names)
	have := map[string]edge.Route{}
	for _, r := range current.Routes {
		if r.Project == pl.p.Name {
			have[r.Service] = r
		} else {
			for _, h := range r.Hosts {
				for _, name := range names {
					for _, want := range wants[name].Hosts {
						if want == h {
							return &PreflightError{Problems: []Problem{{Rule: "edge", Subject: "services." + name + "." + ExtService + ".hosts",
								Message: fmt.Sprintf("%s is already routed to project %s (services.%s) on this engine; remove it there first", h, r.Project, r.Service)}}}
						}
					}
				}
			}
		}
	}
	for _, name := range names {
		se := wants[name]
		var cert, key []byte
		if se.CertSecret != "" {
			if cert, key, err = ownCertificate(pl.p, se, o.ConfigDir); err != nil {
				return err
			}
		}
		r := edgeRoute(pl.p.Name, name, se, cert)
		if old, ok := have[name]; ok && sameRoute(old, r) {
			continue
		}
		how := "ACME certificate"
		if cert != nil {
			how = "own certificate from secret " + se.CertSecret
		}
		pl.Ops = append(pl.Ops, Op{Kind: OpEdgeRoute, Service: name, Target: strings.Join(se.Hosts, ","),
			Reason: fmt.Sprintf("https://%s -> %s (the service's published port; %s)", se.Hosts[0], se.Upstream, how),
			x:      opData{edge: &edgeWork{name: w.name, route: r, cert: cert, key: key}}})
		delete(have, name)
	}
	for name, r := range have {
		if _, ok := wants[name]; !ok {
			pl.Ops = append(pl.Ops, Op{Kind: OpEdgeUnroute, Service: name, Target: strings.Join(r.Hosts, ","),
				Reason: "the service names no hosts any more", x: opData{edge: &edgeWork{name: w.name, remove: name}}})
		}
	}
	return nil
}

// applyEdge performs an edge operation of the plan.
func (d *Deployer) applyEdge(ctx context.Context, project string, op Op) error {
	w := op.x.edge
	switch op.Kind {
	case OpEdgeCreate:
		if _, err := d.createEdge(ctx, w, w.name); err != nil {
			return err
		}
		d.out.Event("Container %s created and started (%s)", w.name, strings.Join(w.spec.Config.Cmd[2:6], " "))
		return nil
	case OpEdgeStart:
		if err := d.engine.ContainerStart(ctx, op.x.proxy, container.StartOptions{}); err != nil {
			return fmt.Errorf("start %s: %w", w.name, err)
		}
		d.out.Event("Container %s started", w.name)
		return d.waitEdge(ctx, op.x.proxy, 60*time.Second)
	case OpEdgeUpgrade:
		return d.upgradeEdge(ctx, w, op.x.proxy)
	case OpEdgeRoute:
		c, found, err := d.findEdge(ctx, w.name)
		if err != nil || !found {
			return fmt.Errorf("route %s: the edge is gone (%v)", op.Target, err)
		}
		if w.cert != nil {
			if err := d.copyToEdge(ctx, c.ID, map[string][]byte{w.route.CertFile: w.cert, w.route.KeyFile: w.key}); err != nil {
				return err
			}
		}
		args := []string{"route", "set", "--project", project, "--service", op.Service, "--hosts", strings.Join(w.route.Hosts, ","),
			"--upstream", w.route.Upstream, "--hsts", strconv.Itoa(w.route.HSTS)}
		if w.route.CertFile != "" {
			args = append(args, "--cert", w.route.CertFile, "--key", w.route.KeyFile)
		}
		if _, err := d.edgeExec(ctx, c.ID, args...); err != nil {
			return err
		}
		d.out.Event("Edge routes %s to services.%s (%s)", op.Target, op.Service, w.route.Upstream)
		return nil
	case OpEdgeUnroute:
		c, found, err := d.findEdge(ctx, w.name)
		if err != nil || !found {
			return err
		}
		if _, err := d.edgeExec(ctx, c.ID, "route", "rm", "--project", project, "--service", w.remove); err != nil {
			return err
		}
		d.out.Event("Edge no longer routes %s", op.Target)
		return nil
	}
	return fmt.Errorf("not an edge operation: %s", op.Kind)
}

// createEdge creates the edge's volume (when missing) and container under
// name, puts the ACME CA bundle in, starts it and waits until it serves.
func (d *Deployer) createEdge(ctx context.Context, w *edgeWork, name string) (string, error) {
	vol := w.spec.Host.Mounts[0].Source
	if _, err := d.engine.VolumeCreate(ctx, volume.CreateOptions{Name: vol,
		Labels: map[string]string{LabelManagedBy: "invdeploy", LabelRole: roleEdge}}); err != nil {
		return "", fmt.Errorf("create volume %s: %w", vol, err)
	}
	created, err := d.engine.ContainerCreate(ctx, w.spec.Config, w.spec.Host, nil, nil, name)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	fail := func(err error) (string, error) {
		_ = d.engine.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return "", err
	}
	if w.caPEM != nil {
		if err := d.copyToEdge(ctx, created.ID, map[string][]byte{edgeCAFile: w.caPEM}); err != nil {
			return fail(err)
		}
	}
	if err := d.engine.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fail(fmt.Errorf("start %s: %w", name, err))
	}
	if err := d.waitEdge(ctx, created.ID, 60*time.Second); err != nil {
		return fail(err)
	}
	return created.ID, nil
}

// upgradeEdge replaces the edge without losing a connection: the new one
// starts beside the old, takes its listening sockets over (both accept
// from the same sockets meanwhile), and once it serves, the old one is
// stopped (it finishes what it serves) and removed, and the new one takes
// the name.
func (d *Deployer) upgradeEdge(ctx context.Context, w *edgeWork, oldID string) error {
	next := w.name + edgeNextSuffix
	if err := d.engine.ContainerRemove(ctx, next, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove a leftover %s: %w", next, err)
	}
	id, err := d.createEdge(ctx, w, next)
	if err != nil {
		return fmt.Errorf("upgrade the edge: %w", err)
	}
	timeout := 35
	if err := d.engine.ContainerStop(ctx, oldID, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop the old edge: %w", err)
	}
	if err := d.engine.ContainerRemove(ctx, oldID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove the old edge: %w", err)
	}
	if err := d.engine.ContainerRename(ctx, id, w.name); err != nil {
		return fmt.Errorf("rename %s: %w", next, err)
	}
	d.out.Event("Container %s upgraded (listeners handed over, the old edge drained)", w.name)
	return nil
}

// copyToEdge writes files (mode 0600, root's) into the edge's data
// directory.
func (d *Deployer) copyToEdge(ctx context.Context, id string, files map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n])), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := d.engine.CopyToContainer(ctx, id, edge.DefaultDataDir, &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("copy into the edge's volume: %w", err)
	}
	return nil
}

// EdgeRoutesRemove drops project's routes from the engine's edge (down):
// the edge itself stays for the other projects.
func (d *Deployer) EdgeRoutesRemove(ctx context.Context, project string, o EdgeOptions) (bool, error) {
	c, found, err := d.findEdge(ctx, o.name())
	if err != nil || !found || c.State != "running" {
		return false, err
	}
	t, err := d.edgeRoutes(ctx, c.ID)
	if err != nil {
		return false, err
	}
	has := false
	for _, r := range t.Routes {
		has = has || r.Project == project
	}
	if !has {
		return false, nil
	}
	_, err = d.edgeExec(ctx, c.ID, "route", "rm", "--project", project)
	return err == nil, err
}

// checkEdge is preflight's part for the edge: the x-invdeploy keys of the
// edge, own certificates that make a pair, and ports 80 and 443 (or
// o.Edge's) free for an edge that does not run yet, or held by it.
func (d *Deployer) checkEdge(ctx context.Context, p *types.Project, o CheckOptions, add func(rule, subject, format string, args ...any)) error {
	wants, err := projectEdges(p, p.ServiceNames())
	if err != nil || len(wants) == 0 {
		return nil // a bad key: Check said so (checkEdgeKeys)
	}
	for name, se := range wants {
		if se.CertSecret != "" {
			if _, _, err := ownCertificate(p, se, o.ConfigDir); err != nil {
				add("secret", "services."+name+"."+ExtService+".tls_certificate", "%v", err)
			}
		}
	}
	c, found, err := d.findEdge(ctx, o.Edge.name())
	if err != nil {
		return err
	}
	eo := o.Edge
	var s edgeSettings
	if found && json.Unmarshal([]byte(c.Labels[LabelEdgeSettings]), &s) == nil {
		eo.HTTPPort, eo.HTTPSPort = cmp.Or(eo.HTTPPort, s.HTTPPort), cmp.Or(eo.HTTPSPort, s.HTTPSPort)
	}
	httpPort, httpsPort := eo.Ports()
	if found && c.State == "running" && c.Labels[LabelEdgePorts] == strconv.Itoa(httpPort)+","+strconv.Itoa(httpsPort) {
		return nil // ours
	}
	running, err := d.engine.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return fmt.Errorf("preflight: list containers: %w", err)
	}
	for _, port := range []int{httpPort, httpsPort} {
		subject := "0.0.0.0:" + strconv.Itoa(port)
		held := false
		for _, rc := range running {
			for _, cp := range rc.Ports {
				if int(cp.PublicPort) == port && cp.Type == "tcp" {
					held = true
				}
			}
			if held {
				add("port", subject, "is held by container %s; the HTTPS edge needs it (x-invdeploy hosts): stop that container, or give the edge other ports (--edge-http-port/--edge-https-port)", containerName(rc))
				break
			}
		}
		if held || o.Remote {
			continue // a remote host's processes are probed by remote up
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			continue
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			holder := portHolder(port)
			if holder == "" {
				holder = "a process on this host"
			}
			add("port", subject, "is held by %s; the HTTPS edge needs it (x-invdeploy hosts): stop it, or give the edge other ports (--edge-http-port/--edge-https-port)", holder)
		}
	}
	return nil
}

// checkEdgeKeys refuses bad edge keys of x-invdeploy (a host name that
// does not look like one, hosts without a published port).
func checkEdgeKeys(p *types.Project, add func(rule, subject, format string, args ...any)) {
	if _, err := projectEdges(p, p.ServiceNames()); err != nil {
		add("compose", ExtService+".hosts", "%v", err)
	}
}

// EdgePorts are the host ports the edge of st's stack needs and whether
// the stack names hosts at all (remote up's security-group rules and host
// probe).
func EdgePorts(st *Stack, o EdgeOptions) (ports []int, fronted map[string]bool, err error) {
	wants, err := projectEdges(st.Project, st.Project.ServiceNames())
	if err != nil || len(wants) == 0 {
		return nil, nil, err
	}
	fronted = map[string]bool{}
	for name := range wants {
		fronted[name] = true
	}
	h, s := o.Ports()
	return []int{h, s}, fronted, nil
}
