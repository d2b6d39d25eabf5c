package deployer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeEngine is an in-memory Engine for unit tests of our own logic: it keeps
// containers, networks, volumes and images, and records every mutating call.
type fakeEngine struct {
	mu         sync.Mutex
	pingErr    error
	pings      int // Ping calls
	versions   int // ServerVersion calls
	reads      int // CopyFromContainer calls
	apiVersion string
	images     map[string]string // ref -> id
	// imageLabels are the labels of built images, by id.
	imageLabels map[string]map[string]string
	pullable    map[string]bool
	// pullIDs are the ids pulls bring (default: sha256:pulled-<ref>).
	pullIDs    map[string]string
	containers map[string]*fakeContainer
	networks   map[string]network.Summary
	volumes    map[string]volume.Volume
	// volumeFiles are the files in each volume: name -> path -> file.
	volumeFiles map[string]map[string]fakeFile
	calls       []string
	// execInput is what execs got on stdin; execExit their exit code.
	execInput bytes.Buffer
	execExit  int
	// health is the health status a started container with a healthcheck
	// reports, by service ("" means healthy).
	health map[string]string
	// healthyAfter turns a service's containers healthy that long after
	// their start (health says what they report before).
	healthyAfter map[string]time.Duration
	// probes script the execs without stdin (healthcheck probes) of a
	// service; a service without one fails its probes at once (exit 1).
	probes map[string]fakeProbe
	// exits makes a service's containers exit with that code as soon as
	// they start (one-shot services).
	exits map[string]int
	execs map[string]*fakeExec
	// execOrder lists the exec ids in creation order.
	execOrder []string
	// builds records the build options of each ImageBuild.
	builds []build.ImageBuildOptions
	// buildFiles are the file names of the last build context.
	buildFiles []string
	seq        int

	// distInspects are the refs asked of the registry (DistributionInspect).
	distInspects []string
}

type fakeContainer struct {
	id       string
	name     string
	cfg      container.Config
	host     container.HostConfig
	state    string
	health   string
	created  time.Time
	started  time.Time
	exitCode int
	imageID  string
	// files copied in with CopyToContainer: path -> header + content
	files map[string]fakeFile
	// connected are the networks joined with NetworkConnect.
	connected []string
	// aliases are the names it answers per network.
	aliases map[string][]string
}

type fakeFile struct {
	hdr     tar.Header
	content string
	opts    container.CopyToContainerOptions
}

// fakeProbe is how a healthcheck exec behaves: it runs for took, then
// exits with code.
type fakeProbe struct {
	code int
	took time.Duration
}

type fakeExec struct {
	id        string
	container string
	opts      container.ExecOptions
	probe     fakeProbe
	started   time.Time // zero until attached
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		apiVersion:   "1.41",
		images:       map[string]string{},
		imageLabels:  map[string]map[string]string{},
		pullable:     map[string]bool{},
		pullIDs:      map[string]string{},
		containers:   map[string]*fakeContainer{},
		networks:     map[string]network.Summary{},
		volumes:      map[string]volume.Volume{},
		health:       map[string]string{},
		healthyAfter: map[string]time.Duration{},
		probes:       map[string]fakeProbe{},
		execs:        map[string]*fakeExec{},
		exits:        map[string]int{},
		volumeFiles:  map[string]map[string]fakeFile{},
	}
}

func (f *fakeEngine) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// recordNamed records verb on a container; an unnamed one (the secret
// loader) as verb-unnamed, so counts of named containers stay exact.
func (f *fakeEngine) recordNamed(verb, name string) {
	if name == "" || strings.HasPrefix(name, " ") {
		f.record("%s-unnamed%s", verb, name)
		return
	}
	f.record("%s %s", verb, name)
}

// mutations are the recorded calls that create or change something.
func (f *fakeEngine) mutations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.calls...)
}

func (f *fakeEngine) countCalls(prefix string) int {
	n := 0
	for _, c := range f.mutations() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeEngine) Ping(context.Context) (types.Ping, error) {
	f.mu.Lock()
	f.pings++
	f.mu.Unlock()
	return types.Ping{APIVersion: f.apiVersion}, f.pingErr
}

func (f *fakeEngine) ServerVersion(context.Context) (types.Version, error) {
	f.mu.Lock()
	f.versions++
	f.mu.Unlock()
	return types.Version{APIVersion: f.apiVersion, Version: "20.10.24"}, f.pingErr
}

func (f *fakeEngine) DaemonHost() string { return "unix:///fake.sock" }

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.imageLocked(ref); ok {
		return image.InspectResponse{ID: id, Config: &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Labels: f.imageLabels[id]}}}, nil
	}
	return image.InspectResponse{}, errdefs.NotFound(fmt.Errorf("No such image: %s", ref))
}

// imageLocked resolves a reference or an image id, as the engine does.
func (f *fakeEngine) imageLocked(ref string) (string, bool) {
	if id, ok := f.images[ref]; ok {
		return id, true
	}
	for _, id := range f.images {
		if id == ref {
			return id, true
		}
	}
	return "", false
}

func (f *fakeEngine) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("pull %s", ref)
	if !f.pullable[ref] {
		return nil, errors.New("pull access denied: no registry answers")
	}
	f.images[ref] = "sha256:pulled-" + ref
	if id, ok := f.pullIDs[ref]; ok {
		f.images[ref] = id
	}
	return io.NopCloser(strings.NewReader(`{"status":"Pulled"}` + "\n")), nil
}

// DistributionInspect answers as a registry holding the pullable images;
// it changes nothing, so it is counted apart from the mutations.
func (f *fakeEngine) DistributionInspect(_ context.Context, ref, _ string) (registry.DistributionInspect, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.distInspects = append(f.distInspects, ref)
	if !f.pullable[ref] {
		return registry.DistributionInspect{}, errors.New("manifest unknown: no registry answers")
	}
	return registry.DistributionInspect{}, nil
}

func (f *fakeEngine) ImageBuild(_ context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	tr := tar.NewReader(r)
	var files []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return build.ImageBuildResponse{}, err
		}
		files = append(files, h.Name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("sha256:built%d", f.seq)
	for _, t := range o.Tags {
		f.images[t] = id
	}
	f.builds = append(f.builds, o)
	f.imageLabels[id] = o.Labels
	f.buildFiles = files
	f.record("build %s", strings.Join(o.Tags, ","))
	return build.ImageBuildResponse{Body: io.NopCloser(strings.NewReader(`{"stream":"Step 1/1 : FROM scratch\n"}` + "\n"))}, nil
}

func (f *fakeEngine) ImageTag(_ context.Context, src, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[target] = f.images[src]
	return nil
}

// ImagePush answers as a registry that accepts everything: the pushed
// digest is derived from the image ID, so every tag of one image has one.
func (f *fakeEngine) ImagePush(_ context.Context, ref string, _ image.PushOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("push %s", ref)
	id, ok := f.images[ref]
	if !ok {
		return nil, errdefs.NotFound(fmt.Errorf("No such image: %s", ref))
	}
	digest := "sha256:" + strings.Repeat("0", 64-len(strings.TrimPrefix(id, "sha256:"))) + strings.TrimPrefix(id, "sha256:")
	return io.NopCloser(strings.NewReader(`{"status":"latest: digest: ` + digest + `"}` + "\n" + `{"progressDetail":{},"aux":{"Tag":"latest","Digest":"` + digest + `","Size":1}}` + "\n")), nil
}

func (f *fakeEngine) RegistryLogin(context.Context, registry.AuthConfig) (registry.AuthenticateOKBody, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("login")
	return registry.AuthenticateOKBody{Status: "Login Succeeded"}, nil
}

func (f *fakeEngine) summary(c *fakeContainer) container.Summary {
	s := container.Summary{ID: c.id, Names: []string{"/" + c.name}, Labels: c.cfg.Labels, State: c.state, Image: c.cfg.Image, ImageID: c.imageID, Created: c.created.Unix()}
	for _, m := range c.host.Mounts { // as the engine lists them: a volume by name, a bind by source
		mp := container.MountPoint{Type: m.Type, Source: m.Source, Destination: m.Target, RW: !m.ReadOnly}
		if m.Type == mount.TypeVolume {
			mp.Name, mp.Source = m.Source, "/fake/volumes/"+m.Source+"/_data"
		}
		s.Mounts = append(s.Mounts, mp)
	}
	for port, bs := range c.host.PortBindings {
		for _, b := range bs {
			pub := 0
			fmt.Sscan(b.HostPort, &pub)
			s.Ports = append(s.Ports, container.Port{IP: b.HostIP, PrivatePort: uint16(port.Int()), PublicPort: uint16(pub), Type: port.Proto()})
		}
	}
	return s
}

func (f *fakeEngine) ContainerList(_ context.Context, o container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []container.Summary
	for _, c := range f.containers {
		if !o.All && c.state != "running" {
			continue
		}
		if !matchLabels(o.Filters, c.cfg.Labels) || !onNetworks(o.Filters, c) {
			continue
		}
		out = append(out, f.summary(c))
	}
	return out, nil
}

// onNetworks applies a "network" filter: the container's network mode or a
// network it was connected to.
func onNetworks(fs filters.Args, c *fakeContainer) bool {
	for _, n := range fs.Get("network") {
		if string(c.host.NetworkMode) != n && !contains(c.connected, n) {
			return false
		}
	}
	return true
}

func matchLabels(fs filters.Args, labels map[string]string) bool {
	for _, l := range fs.Get("label") {
		k, v, hasValue := strings.Cut(l, "=")
		if got, ok := labels[k]; !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

func (f *fakeEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byIDOrName(id)
	if !ok {
		return container.InspectResponse{}, errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	st := &container.State{Status: c.state, Running: c.state == "running", ExitCode: c.exitCode}
	if c.cfg.Healthcheck != nil && c.state == "running" {
		health := c.health
		if after, ok := f.healthyAfter[c.cfg.Labels[LabelService]]; ok && time.Since(c.started) >= after {
			health = "healthy"
		}
		st.Health = &container.Health{Status: health, Log: []*container.HealthcheckResult{{Output: "check output " + health}}}
	}
	cfg := c.cfg
	host := c.host
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: c.id, Name: "/" + c.name, State: st, HostConfig: &host, Created: c.created.Format(time.RFC3339Nano)},
		Config:            &cfg,
	}, nil
}

func (f *fakeEngine) ContainerCreate(_ context.Context, cfg *container.Config, host *container.HostConfig, nc *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		if c.name == name {
			return container.CreateResponse{}, errdefs.Conflict(fmt.Errorf("name %s in use", name))
		}
	}
	imgID, ok := f.imageLocked(cfg.Image)
	if !ok {
		return container.CreateResponse{}, errdefs.NotFound(fmt.Errorf("No such image: %s", cfg.Image))
	}
	f.seq++
	id := fmt.Sprintf("c%04d", f.seq)
	hc := container.HostConfig{}
	if host != nil { // the engine's default, as for the lock container
		hc = *host
	}
	aliases := map[string][]string{}
	if nc != nil {
		for n, ep := range nc.EndpointsConfig {
			aliases[n] = ep.Aliases
		}
	}
	f.containers[id] = &fakeContainer{id: id, name: name, cfg: *cfg, host: hc, state: "created", created: time.Now(), imageID: imgID, files: map[string]fakeFile{}, aliases: aliases}
	f.recordNamed("create", name)
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeEngine) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	c.state = "running"
	c.started = time.Now()
	c.health = "healthy"
	if h := f.health[c.cfg.Labels[LabelService]]; h != "" {
		c.health = h
	}
	if code, ok := f.exits[c.cfg.Labels[LabelService]]; ok {
		c.state, c.exitCode = "exited", code
	}
	f.record("start %s", c.name)
	return nil
}

func (f *fakeEngine) ContainerStop(_ context.Context, id string, _ container.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	c.state = "exited"
	f.record("stop %s", c.name)
	return nil
}

func (f *fakeEngine) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byIDOrName(id)
	if !ok {
		return errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	delete(f.containers, c.id)
	f.recordNamed("remove", c.name)
	return nil
}

func (f *fakeEngine) ContainerRename(_ context.Context, id, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	for _, o := range f.containers {
		if o.name == name {
			return errdefs.Conflict(fmt.Errorf("name %s in use", name))
		}
	}
	f.record("rename %s %s", c.name, name)
	c.name = name
	return nil
}

func (f *fakeEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}

// byIDOrName finds a container as the engine does, by id or by name
// (f.mu held).
func (f *fakeEngine) byIDOrName(ref string) (*fakeContainer, bool) {
	if c, ok := f.containers[ref]; ok {
		return c, true
	}
	for _, c := range f.containers {
		if c.name == ref {
			return c, true
		}
	}
	return nil, false
}

func (f *fakeEngine) CopyToContainer(_ context.Context, id, dst string, r io.Reader, o container.CopyToContainerOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byIDOrName(id)
	if !ok {
		return errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	if c.state != "created" {
		return fmt.Errorf("copy into %s in state %s: secrets must arrive before start", c.name, c.state)
	}
	vol := ""
	for _, m := range c.host.Mounts {
		if m.Type == mount.TypeVolume && m.Target == dst {
			vol = m.Source
		}
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		var b bytes.Buffer
		io.Copy(&b, tr)
		if vol != "" {
			if f.volumeFiles[vol] == nil {
				f.volumeFiles[vol] = map[string]fakeFile{}
			}
			f.volumeFiles[vol][strings.TrimSuffix(h.Name, "/")] = fakeFile{hdr: *h, content: b.String(), opts: o}
			continue
		}
		c.files[path.Clean(dst+"/"+h.Name)] = fakeFile{hdr: *h, content: b.String(), opts: o}
	}
	f.recordNamed("copy", c.name+" "+dst)
	return nil
}

// CopyFromContainer serves /etc/passwd and /etc/group with root, postgres
// (999) and nonroot (65532).
func (f *fakeEngine) CopyFromContainer(_ context.Context, id, path string) (io.ReadCloser, container.PathStat, error) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	files := map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/bash\npostgres:x:999:999::/var/lib/postgresql:/bin/bash\nnonroot:x:65532:65532::/nonexistent:/sbin/nologin\n",
		"/etc/group":  "root:x:0:\npostgres:x:999:\nnonroot:x:65532:\n",
	}
	if dir, ok := f.deliveredDir(id, path); ok {
		return io.NopCloser(dir), container.PathStat{Name: path, Mode: os.ModeDir}, nil
	}
	if dir, ok := f.copiedDir(id, path); ok {
		return io.NopCloser(dir), container.PathStat{Name: path, Mode: os.ModeDir}, nil
	}
	content, ok := files[path]
	f.mu.Lock()
	if c, found := f.byIDOrName(id); found {
		if file, found := f.deliveredLocked(c, path); found {
			content, ok = file.content, true
		}
	}
	f.mu.Unlock()
	if !ok {
		return nil, container.PathStat{}, errdefs.NotFound(fmt.Errorf("no such file %s", path))
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: path[strings.LastIndex(path, "/")+1:], Mode: 0o644, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	return io.NopCloser(&buf), container.PathStat{Name: path, Size: int64(len(content))}, nil
}

// copiedDir is a directory of files copied into a container's own
// filesystem (not a volume), as the engine's archive of it.
func (f *fakeEngine) copiedDir(id, dir string) (*bytes.Buffer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byIDOrName(id)
	if !ok {
		return nil, false
	}
	var names []string
	for p, file := range c.files {
		if strings.HasPrefix(p, dir+"/") && file.hdr.Typeflag != tar.TypeDir {
			names = append(names, p)
		}
	}
	if len(names) == 0 {
		return nil, false
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	base := dir[strings.LastIndex(dir, "/")+1:]
	for _, p := range names {
		file := c.files[p]
		tw.WriteHeader(&tar.Header{Name: base + "/" + strings.TrimPrefix(p, dir+"/"), Mode: file.hdr.Mode, Size: int64(len(file.content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(file.content))
	}
	tw.Close()
	return &buf, true
}

func (f *fakeEngine) NetworkList(_ context.Context, o network.ListOptions) ([]network.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []network.Summary
	for _, n := range f.networks {
		if names := o.Filters.Get("name"); len(names) > 0 && !strings.Contains(n.Name, names[0]) {
			continue
		}
		if !matchLabels(o.Filters, n.Labels) {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeEngine) NetworkCreate(_ context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	driver := o.Driver
	if driver == "" {
		driver = "bridge"
	}
	n := network.Summary{ID: "n-" + name, Name: name, Labels: o.Labels, Driver: driver, Internal: o.Internal, Attachable: o.Attachable, Options: o.Options}
	if o.IPAM != nil {
		n.IPAM = *o.IPAM
	} else {
		n.IPAM = network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: fmt.Sprintf("172.%d.0.0/16", 18+len(f.networks))}}}
	}
	f.networks[name] = n
	f.record("network-create %s", name)
	return network.CreateResponse{ID: "n-" + name}, nil
}

func (f *fakeEngine) NetworkConnect(_ context.Context, netID, id string, ep *network.EndpointSettings) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("network-connect %s %s", netID, id)
	if c, ok := f.containers[id]; ok {
		c.connected = append(c.connected, netID)
		if ep != nil && c.aliases != nil {
			c.aliases[netID] = ep.Aliases
		}
	}
	return nil
}

func (f *fakeEngine) NetworkRemove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, n := range f.networks {
		if n.ID == id {
			delete(f.networks, k)
		}
	}
	f.record("network-remove %s", id)
	return nil
}

func (f *fakeEngine) VolumeList(_ context.Context, o volume.ListOptions) (volume.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out volume.ListResponse
	for _, v := range f.volumes {
		if !matchLabels(o.Filters, v.Labels) {
			continue
		}
		v := v
		out.Volumes = append(out.Volumes, &v)
	}
	return out, nil
}

func (f *fakeEngine) VolumeCreate(_ context.Context, o volume.CreateOptions) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := volume.Volume{Name: o.Name, Labels: o.Labels, Driver: o.Driver, Options: o.DriverOpts, Mountpoint: "/fake/volumes/" + o.Name + "/_data"}
	f.volumes[o.Name] = v
	f.record("volume-create %s", o.Name)
	return v, nil
}

func (f *fakeEngine) VolumeRemove(_ context.Context, name string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.volumes, name)
	delete(f.volumeFiles, name)
	f.record("volume-remove %s", name)
	return nil
}

// runningContainer adds a running container that is not part of any stack,
// publishing hostPort.
func (f *fakeEngine) runningContainer(name string, labels map[string]string, hostIP string, hostPort string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("x%04d", f.seq)
	if labels == nil {
		labels = map[string]string{}
	}
	f.containers[id] = &fakeContainer{id: id, name: name, state: "running", cfg: container.Config{Labels: labels, Image: "other"},
		host: container.HostConfig{PortBindings: nat.PortMap{"80/tcp": {{HostIP: hostIP, HostPort: hostPort}}}}, files: map[string]fakeFile{}}
}

// deliveredDir is a tar of the files a container sees in a directory that is
// a volume mount (/run/secrets), named from the directory's base name on as
// the engine names them.
func (f *fakeEngine) deliveredDir(id, dir string) (*bytes.Buffer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return nil, false
	}
	for _, m := range c.host.Mounts {
		if m.Type != mount.TypeVolume || m.Target != dir {
			continue
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		base := dir[strings.LastIndex(dir, "/")+1:]
		for _, name := range f.volumePaths(m.Source) {
			if file, ok := f.deliveredLocked(c, dir+"/"+name); ok && file.hdr.Typeflag == tar.TypeReg {
				tw.WriteHeader(&tar.Header{Name: base + "/" + name, Mode: file.hdr.Mode, Size: int64(len(file.content)), Typeflag: tar.TypeReg})
				tw.Write([]byte(file.content))
			}
		}
		tw.Close()
		return &buf, true
	}
	return nil, false
}

// volumePaths are the file paths a volume mount shows, relative to it.
func (f *fakeEngine) volumePaths(vol string) []string {
	v := f.volumes[vol]
	root := v.Mountpoint
	if dev := v.Options["device"]; dev != "" {
		root = dev
	}
	var out []string
	for name, v := range f.volumes {
		for rel := range f.volumeFiles[name] {
			if p, ok := strings.CutPrefix(v.Mountpoint+"/"+rel, root+"/"); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

// delivered is the file a container sees at target through its volume and
// bind mounts (the fake's model of the engine's mount table).
func (f *fakeEngine) delivered(c *fakeContainer, target string) (fakeFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deliveredLocked(c, target)
}

func (f *fakeEngine) deliveredLocked(c *fakeContainer, target string) (fakeFile, bool) {
	for _, m := range c.host.Mounts {
		var hostPath string
		switch {
		case m.Type == mount.TypeBind && m.Target == target:
			hostPath = m.Source
		case m.Type == mount.TypeVolume && strings.HasPrefix(target, m.Target+"/"):
			v := f.volumes[m.Source]
			hostPath = v.Mountpoint
			if dev := v.Options["device"]; dev != "" {
				hostPath = dev
			}
			hostPath += strings.TrimPrefix(target, m.Target)
		default:
			continue
		}
		for name, v := range f.volumes {
			if rel, ok := strings.CutPrefix(hostPath, v.Mountpoint+"/"); ok {
				file, ok := f.volumeFiles[name][rel]
				return file, ok
			}
		}
	}
	return fakeFile{}, false
}

// ContainerExecCreate records the command. An exec with stdin (secret
// rotate) exits execExit; one without (a healthcheck probe) behaves as the
// service's probes script says, failing at once by default.
func (f *fakeEngine) ContainerExecCreate(_ context.Context, id string, o container.ExecOptions) (container.ExecCreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return container.ExecCreateResponse{}, errdefs.NotFound(fmt.Errorf("No such container: %s", id))
	}
	if c.state != "running" {
		return container.ExecCreateResponse{}, errdefs.Conflict(fmt.Errorf("container %s is not running", id))
	}
	f.record("exec %s %s", c.name, strings.Join(o.Cmd, " "))
	f.seq++
	ex := &fakeExec{id: fmt.Sprintf("exec-%04d", f.seq), container: id, opts: o, probe: fakeProbe{code: f.execExit}}
	if !o.AttachStdin {
		ex.probe = fakeProbe{code: 1}
		if p, ok := f.probes[c.cfg.Labels[LabelService]]; ok {
			ex.probe = p
		}
	}
	f.execs[ex.id] = ex
	f.execOrder = append(f.execOrder, ex.id)
	return container.ExecCreateResponse{ID: ex.id}, nil
}

// ContainerExecAttach starts the exec: what is written to stdin is kept in
// execInput, there is no output, and the stream ends when the exec does;
// the exec runs on when the caller hangs up, as on the real engine.
func (f *fakeEngine) ContainerExecAttach(_ context.Context, execID string, _ container.ExecAttachOptions) (types.HijackedResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ex, err := f.exec(execID)
	if err != nil {
		return types.HijackedResponse{}, err
	}
	ex.started = time.Now()
	client, server := net.Pipe()
	go func() {
		time.Sleep(ex.probe.took)
		server.Close()
	}()
	conn := &fakeConn{Conn: client, in: &f.execInput}
	return types.HijackedResponse{Conn: conn, Reader: bufio.NewReader(client)}, nil
}

func (f *fakeEngine) ContainerExecInspect(_ context.Context, execID string) (container.ExecInspect, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ex, err := f.exec(execID)
	if err != nil {
		return container.ExecInspect{}, err
	}
	ins := container.ExecInspect{ExecID: ex.id, ContainerID: ex.container, Running: f.execRunning(ex, time.Now())}
	if !ex.started.IsZero() && !ins.Running {
		ins.ExitCode = ex.probe.code
	}
	return ins, nil
}

// fakeConn is the client side of a fake exec: stdin goes to in; reads come
// from the embedded pipe, which ends when the exec does.
type fakeConn struct {
	net.Conn
	in *bytes.Buffer
}

func (c *fakeConn) Write(b []byte) (int, error) { return c.in.Write(b) }
func (c *fakeConn) CloseWrite() error           { return nil }

// exec finds an exec; f.mu is held.
func (f *fakeEngine) exec(id string) (*fakeExec, error) {
	if ex, ok := f.execs[id]; ok {
		return ex, nil
	}
	return nil, errdefs.NotFound(fmt.Errorf("No such exec instance: %s", id))
}

func (f *fakeEngine) execRunning(ex *fakeExec, at time.Time) bool {
	return !ex.started.IsZero() && at.Before(ex.started.Add(ex.probe.took))
}

// execOverlaps reports whether two execs in one container ever ran at once.
func (f *fakeEngine) execOverlaps() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.execs {
		for _, b := range f.execs {
			if a != b && a.container == b.container && !a.started.IsZero() && !b.started.IsZero() &&
				!b.started.Before(a.started) && f.execRunning(a, b.started) {
				return true
			}
		}
	}
	return false
}

func (f *fakeEngine) execList() []fakeExec {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fakeExec, 0, len(f.execOrder))
	for _, id := range f.execOrder {
		out = append(out, *f.execs[id])
	}
	return out
}

var _ Engine = (*fakeEngine)(nil)
