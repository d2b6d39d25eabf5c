package swarm

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// ManagerEngine is what Up, Down and Status need of a manager's engine;
// *client.Client implements it.
type ManagerEngine interface {
	NodeEngine
	NodeUpdate(ctx context.Context, nodeID string, version swarm.Version, node swarm.NodeSpec) error
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkRemove(ctx context.Context, networkID string) error
	SecretList(ctx context.Context, options swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretCreate(ctx context.Context, secret swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretRemove(ctx context.Context, id string) error
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, service swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	TaskLogs(ctx context.Context, taskID string, options container.LogsOptions) (io.ReadCloser, error)
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)
}

var _ ManagerEngine = (*client.Client)(nil)

// LocalEngine is the engine on this machine that images are built in and
// sent from; *client.Client implements it.
type LocalEngine interface {
	remote.ImageEngine
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	CopyFromContainer(ctx context.Context, containerID, srcPath string) (io.ReadCloser, container.PathStat, error)
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

// UpOptions control Up.
type UpOptions struct {
	// Local is the engine images are built in and sent from.
	Local LocalEngine
	// Build builds one service's image in Local (the same build as `up`).
	Build func(ctx context.Context, service string) error
	// Rebuild builds images with a build section even when present.
	Rebuild bool
	// DialNode returns the engine of the node at addr (over its own SSH
	// connection), to send it the images it lacks. The caller closes them.
	DialNode func(ctx context.Context, addr string) (remote.ImageEngine, error)
	// Scale overrides deploy.replicas per service (--scale svc=N).
	Scale map[string]uint64
	// WaitTimeout bounds waiting for each service to converge.
	WaitTimeout time.Duration
	// ConfigDir is where generated secrets are kept ("" : deployer.ConfigDir).
	ConfigDir string
	// EdgeExecutable is the static invdeploy binary the edge image is made
	// of ("" : this executable).
	EdgeExecutable string
}

// ServiceResult is what Up did with one service.
type ServiceResult struct {
	Service string `json:"service"`
	// Action is created, updated or unchanged.
	Action   string   `json:"action"`
	Image    string   `json:"image"`
	ImageID  string   `json:"image_id"`
	Replicas uint64   `json:"replicas"`
	Nodes    []string `json:"nodes"`
	// PinnedTo is the node a stateful service runs on.
	PinnedTo string `json:"pinned_to,omitempty"`
}

// NodeTransfer is what reached one node.
type NodeTransfer struct {
	Node     string                `json:"node"`
	Addr     string                `json:"addr"`
	Transfer remote.TransferResult `json:"transfer"`
}

// UpReport is the outcome of Up.
type UpReport struct {
	Services  []ServiceResult `json:"services"`
	Transfers []NodeTransfer  `json:"transfers"`
	Warnings  []string        `json:"warnings,omitempty"`
	// SecretsRemoved are old versions of the stack's secrets removed.
	SecretsRemoved []string `json:"secrets_removed,omitempty"`
}

// Up deploys st to the swarm of mgr: images built locally and sent to every
// node that lacks them, referenced by image ID; overlay networks; secrets
// with content-addressed names; services created or updated in dependency
// order, each only once what it depends on has converged (all replicas
// running, and healthy where they have a healthcheck). An update that Swarm
// rolled back, or a service that does not converge within WaitTimeout,
// fails with deployer.ErrUnhealthy (exit 4) and the failed tasks' errors.
func Up(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, o UpOptions, rep remote.Reporter) (*UpReport, error) {
	if rep == nil {
		rep = nopReporter{}
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 5 * time.Minute
	}
	p := st.Project
	report := &UpReport{}
	info, err := mgr.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("swarm up: engine info: %w", err)
	}
	if !info.Swarm.ControlAvailable {
		return nil, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "swarm", Subject: "--host",
			Message: "is not a swarm manager (node state " + string(info.Swarm.LocalNodeState) + "): give a manager, or run invdeploy swarm init first"}}}
	}
	for name := range o.Scale {
		if _, ok := p.Services[name]; !ok {
			return nil, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "scale", Subject: name, Message: "is not a service of " + st.Describe()}}}
		}
	}
	order, err := levels(p)
	if err != nil {
		return nil, err
	}

	// Images: built here, identified by ID.
	imageIDs := map[string]string{}
	for _, name := range order {
		s := p.Services[name]
		ref := deployer.ImageRef(p.Name, s)
		_, err := o.Local.ImageInspect(ctx, ref)
		missing := cerrdefs.IsNotFound(err)
		if err != nil && !missing {
			return nil, fmt.Errorf("inspect local image %s: %w", ref, err)
		}
		if deployer.NeedsBuild(s, !missing, o.Rebuild, false) {
			rep.Event("Building %s locally", ref)
			if err := o.Build(ctx, name); err != nil {
				return nil, err
			}
		} else if missing {
			return nil, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "image", Subject: ref,
				Message: "is not in the local engine: pull or build it here first (swarm up sends this machine's images to the nodes, so every node runs the same bytes)"}}}
		}
		li, err := o.Local.ImageInspect(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("inspect local image %s: %w", ref, err)
		}
		imageIDs[name] = li.ID
	}

	// The edge: one image, made from this executable, on every node.
	edges := edgeServices(p, order)
	edgeRef, edgeID := "", ""
	if len(edges) > 0 {
		exe := o.EdgeExecutable
		if exe == "" {
			if exe, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("edge image: %w", err)
			}
		}
		if edgeRef, err = edgeImage(ctx, o.Local, exe); err != nil {
			return nil, err
		}
		li, err := o.Local.ImageInspect(ctx, edgeRef)
		if err != nil {
			return nil, fmt.Errorf("inspect local image %s: %w", edgeRef, err)
		}
		edgeID = li.ID
	}

	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm up: list nodes: %w", err)
	}
	hostname := map[string]string{}
	var usable []swarm.Node
	for _, n := range nodes {
		hostname[n.ID] = n.Description.Hostname
		if n.Status.State == swarm.NodeStateReady && n.Spec.Availability == swarm.NodeAvailabilityActive {
			usable = append(usable, n)
		}
	}

	// Stateful services are pinned to one node by a node label.
	pins := map[string]string{} // service -> node ID
	for _, name := range order {
		if !Stateful(p.Services[name]) {
			continue
		}
		id, err := pin(ctx, mgr, nodes, PinLabel(p.Name, name), info.Swarm.NodeID)
		if err != nil {
			return report, err
		}
		pins[name] = id
	}

	// Every usable node gets the images of the services that may run on it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, n := range usable {
		var refs []string
		for _, name := range order {
			if id, pinned := pins[name]; pinned && id != n.ID {
				continue
			}
			refs = append(refs, deployer.ImageRef(p.Name, p.Services[name]))
		}
		if edgeRef != "" {
			refs = append(refs, edgeRef)
		}
		n := n
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := sendImages(ctx, o, n.Status.Addr, refs, rep)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("images to node %s (%s): %w", n.Description.Hostname, n.Status.Addr, err)
				}
				return
			}
			report.Transfers = append(report.Transfers, NodeTransfer{Node: n.Description.Hostname, Addr: n.Status.Addr, Transfer: res})
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return report, firstErr
	}
	sort.Slice(report.Transfers, func(i, j int) bool { return report.Transfers[i].Node < report.Transfers[j].Node })
	for _, t := range report.Transfers {
		rep.Event("Node %s: %s", t.Node, t.Transfer.Summary())
	}

	if err := ensureNetworks(ctx, mgr, p, rep); err != nil {
		return report, err
	}
	secrets, err := ensureSecrets(ctx, mgr, st, o.ConfigDir, rep)
	if err != nil {
		return report, err
	}

	for _, name := range order {
		s := p.Services[name]
		in := specInput{ImageID: imageIDs[name], Secrets: secrets}
		if v, ok := o.Scale[name]; ok {
			in.Replicas = &v
		}
		if _, ok := pins[name]; ok {
			in.PinTo = PinLabel(p.Name, name)
		}
		in.Edge = contains(edges, name)
		if len(s.Secrets) > 0 {
			if in.User, err = numericUser(ctx, o.Local, deployer.ImageRef(p.Name, s), s.User); err != nil {
				return report, err
			}
		}
		spec, warns, err := serviceSpec(p, s, in)
		if err != nil {
			return report, err
		}
		report.Warnings = append(report.Warnings, warns...)
		res, err := apply(ctx, mgr, spec, o.WaitTimeout, rep)
		res.Service, res.Image, res.ImageID = name, deployer.ImageRef(p.Name, s), in.ImageID
		if id, ok := pins[name]; ok {
			res.PinnedTo = hostname[id]
		}
		if err == nil {
			res.Nodes, err = taskNodes(ctx, mgr, spec.Name, hostname)
		}
		report.Services = append(report.Services, res)
		if err != nil {
			return report, err
		}
		if !in.Edge {
			continue
		}
		es, err := edgeSpec(p, s, edgeID)
		if err != nil {
			return report, err
		}
		res, err = apply(ctx, mgr, es, o.WaitTimeout, rep)
		res.Service, res.Image, res.ImageID = s.Name+"-edge", edgeRef, edgeID
		if err == nil {
			res.Nodes, err = taskNodes(ctx, mgr, es.Name, hostname)
		}
		report.Services = append(report.Services, res)
		if err != nil {
			return report, err
		}
	}

	report.SecretsRemoved = removeStaleSecrets(ctx, mgr, p.Name)
	return report, nil
}

// sendImages streams to the node at addr the images it lacks.
func sendImages(ctx context.Context, o UpOptions, addr string, refs []string, rep remote.Reporter) (remote.TransferResult, error) {
	eng, err := o.DialNode(ctx, addr)
	if err != nil {
		return remote.TransferResult{}, err
	}
	return remote.TransferSSH(ctx, o.Local, eng, refs, nopReporter{})
}

// levels orders the services so that each comes after what it depends on
// (by dependency level, then name).
func levels(p *types.Project) ([]string, error) {
	level := map[string]int{}
	var visit func(name string, path []string) (int, error)
	visit = func(name string, path []string) (int, error) {
		if l, ok := level[name]; ok {
			return l, nil
		}
		for _, q := range path {
			if q == name {
				return 0, fmt.Errorf("depends_on cycle: %s", strings.Join(append(path, name), " -> "))
			}
		}
		s, ok := p.Services[name]
		if !ok {
			return 0, fmt.Errorf("depends_on: service %s is not enabled", name)
		}
		l := 0
		for dep := range s.DependsOn {
			dl, err := visit(dep, append(path, name))
			if err != nil {
				return 0, err
			}
			if dl+1 > l {
				l = dl + 1
			}
		}
		level[name] = l
		return l, nil
	}
	names := p.ServiceNames()
	for _, n := range names {
		if _, err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if level[names[i]] != level[names[j]] {
			return level[names[i]] < level[names[j]]
		}
		return names[i] < names[j]
	})
	return names, nil
}

// pin returns the node labelled key=true, labelling fallback when none is.
func pin(ctx context.Context, mgr ManagerEngine, nodes []swarm.Node, key, fallback string) (string, error) {
	for _, n := range nodes {
		if n.Spec.Labels[key] == "true" {
			return n.ID, nil
		}
	}
	for _, n := range nodes {
		if n.ID != fallback {
			continue
		}
		spec := n.Spec
		labels := map[string]string{}
		for k, v := range spec.Labels {
			labels[k] = v
		}
		labels[key] = "true"
		spec.Labels = labels
		if err := mgr.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
			return "", fmt.Errorf("label node %s %s=true: %w", n.Description.Hostname, key, err)
		}
		return n.ID, nil
	}
	return "", fmt.Errorf("swarm up: node %s is not in the node list", fallback)
}

func projectFilter(project string) filters.Args {
	return filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project))
}

func ensureNetworks(ctx context.Context, mgr ManagerEngine, p *types.Project, rep remote.Reporter) error {
	keys := make([]string, 0, len(p.Networks))
	for k := range p.Networks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Swarm-scoped only: a node may still list a network removed from the
	// swarm a moment ago.
	existing, err := mgr.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("scope", "swarm"))})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	have := map[string]bool{}
	for _, n := range existing {
		have[n.Name] = true
	}
	for _, k := range keys {
		nc := p.Networks[k]
		if bool(nc.External) || have[nc.Name] {
			continue
		}
		driver := nc.Driver
		if driver == "" || driver == "bridge" {
			driver = "overlay"
		}
		labels := map[string]string{deployer.LabelProject: p.Name, deployer.LabelNetwork: k, deployer.LabelManagedBy: "invdeploy"}
		for lk, lv := range nc.Labels {
			labels[lk] = lv
		}
		rep.Event("Creating overlay network %s", nc.Name)
		if _, err := mgr.NetworkCreate(ctx, nc.Name, network.CreateOptions{
			Driver: driver, Attachable: true, Internal: nc.Internal, Labels: labels, Options: nc.DriverOpts,
		}); err != nil {
			return fmt.Errorf("create network %s: %w", nc.Name, err)
		}
	}
	return nil
}

// ensureSecrets creates the swarm secret of every used secret's current
// value (content-addressed) and returns them by compose name.
func ensureSecrets(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, configDir string, rep remote.Reporter) (map[string]secretRef, error) {
	values, err := deployer.SecretValues(st, configDir)
	if err != nil {
		return nil, err
	}
	p := st.Project
	existing, err := mgr.SecretList(ctx, swarm.SecretListOptions{Filters: projectFilter(p.Name)})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	byName := map[string]string{}
	for _, s := range existing {
		byName[s.Spec.Name] = s.ID
	}
	out := map[string]secretRef{}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sn := SecretName(p.Name, n, values[n])
		id, ok := byName[sn]
		if !ok {
			rep.Event("Creating swarm secret %s", sn)
			resp, err := mgr.SecretCreate(ctx, swarm.SecretSpec{
				Annotations: swarm.Annotations{Name: sn, Labels: map[string]string{
					deployer.LabelProject: p.Name, LabelSecretName: n, deployer.LabelManagedBy: "invdeploy"}},
				Data: values[n],
			})
			if err != nil {
				return nil, fmt.Errorf("create swarm secret %s: %w", sn, err)
			}
			id = resp.ID
		}
		out[n] = secretRef{Name: sn, ID: id}
	}
	return out, nil
}

// removeStaleSecrets removes the project's secrets no service uses any more
// (old versions); a secret still in use is kept.
func removeStaleSecrets(ctx context.Context, mgr ManagerEngine, project string) []string {
	secrets, err := mgr.SecretList(ctx, swarm.SecretListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil
	}
	services, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return nil
	}
	used := map[string]bool{}
	for _, svc := range services {
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			for _, r := range cs.Secrets {
				used[r.SecretID] = true
			}
		}
		if svc.PreviousSpec != nil && svc.PreviousSpec.TaskTemplate.ContainerSpec != nil {
			// Kept for a rollback to the previous spec.
			for _, r := range svc.PreviousSpec.TaskTemplate.ContainerSpec.Secrets {
				used[r.SecretID] = true
			}
		}
	}
	var removed []string
	for _, s := range secrets {
		if used[s.ID] {
			continue
		}
		if err := mgr.SecretRemove(ctx, s.ID); err == nil {
			removed = append(removed, s.Spec.Name)
		}
	}
	sort.Strings(removed)
	return removed
}

// Actions of ServiceResult.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
)

// apply creates or updates one service and waits until it converges.
func apply(ctx context.Context, mgr ManagerEngine, spec swarm.ServiceSpec, timeout time.Duration, rep remote.Reporter) (ServiceResult, error) {
	hash := specHash(spec)
	spec.Labels[deployer.LabelConfigHash] = hash
	res := ServiceResult{}
	if spec.Mode.Replicated != nil {
		res.Replicas = *spec.Mode.Replicated.Replicas
	}
	cur, _, err := mgr.ServiceInspectWithRaw(ctx, spec.Name, swarm.ServiceInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		rep.Event("Creating service %s", spec.Name)
		if _, err := mgr.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{}); err != nil {
			return res, fmt.Errorf("create service %s: %w", spec.Name, err)
		}
		res.Action = ActionCreated
		return res, waitConverged(ctx, mgr, spec.Name, nil, timeout, rep)
	case err != nil:
		return res, fmt.Errorf("inspect service %s: %w", spec.Name, err)
	}
	if cur.Spec.Labels[deployer.LabelConfigHash] == hash {
		res.Action = ActionUnchanged
		return res, waitConverged(ctx, mgr, spec.Name, nil, timeout, rep)
	}
	rep.Event("Updating service %s", spec.Name)
	var before *time.Time
	if cur.UpdateStatus != nil && cur.UpdateStatus.StartedAt != nil {
		t := *cur.UpdateStatus.StartedAt
		before = &t
	} else {
		zero := time.Time{}
		before = &zero
	}
	resp, err := mgr.ServiceUpdate(ctx, cur.ID, cur.Version, spec, swarm.ServiceUpdateOptions{})
	if err != nil {
		return res, fmt.Errorf("update service %s: %w", spec.Name, err)
	}
	for _, w := range resp.Warnings {
		rep.Event("warning: %s", w)
	}
	res.Action = ActionUpdated
	// A change of the service's own fields (labels, replicas) starts no
	// rolling update: compare the task templates as the manager stores them.
	if now, _, err := mgr.ServiceInspectWithRaw(ctx, cur.ID, swarm.ServiceInspectOptions{}); err == nil &&
		taskSpecEqual(cur.Spec.TaskTemplate, now.Spec.TaskTemplate) {
		before = nil
	}
	return res, waitConverged(ctx, mgr, spec.Name, before, timeout, rep)
}

func taskSpecEqual(a, b swarm.TaskSpec) bool {
	a.ForceUpdate, b.ForceUpdate = 0, 0
	return specHash(swarm.ServiceSpec{TaskTemplate: a}) == specHash(swarm.ServiceSpec{TaskTemplate: b})
}

// waitConverged waits until every replica of the service runs (healthy where
// it has a healthcheck: Swarm reports a task running only then). With
// updateAfter set, it first waits for a rolling update that started after
// that time to finish, and fails when Swarm paused or rolled it back.
func waitConverged(ctx context.Context, mgr ManagerEngine, name string, updateAfter *time.Time, timeout time.Duration, rep remote.Reporter) error {
	deadline := time.Now().Add(timeout)
	updating := updateAfter != nil
	for {
		svc, _, err := mgr.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect service %s: %w", name, err)
		}
		if updating {
			us := svc.UpdateStatus
			if us != nil && us.StartedAt != nil && us.StartedAt.After(*updateAfter) {
				switch us.State {
				case swarm.UpdateStateCompleted:
					updating = false
				case swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused, swarm.UpdateStatePaused:
					return unhealthy(ctx, mgr, svc, fmt.Sprintf("Swarm %s the update of %s: %s", describeState(us.State), name, us.Message))
				}
			}
		}
		if !updating {
			ok, err := allRunning(ctx, mgr, svc)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return unhealthy(ctx, mgr, svc, fmt.Sprintf("service %s did not converge within %s", name, timeout))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func describeState(s swarm.UpdateState) string {
	switch s {
	case swarm.UpdateStateRollbackCompleted:
		return "rolled back"
	case swarm.UpdateStateRollbackPaused:
		return "paused the rollback of"
	default:
		return "paused"
	}
}

func allRunning(ctx context.Context, mgr ManagerEngine, svc swarm.Service) (bool, error) {
	tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", svc.ID), filters.Arg("desired-state", "running"))})
	if err != nil {
		return false, fmt.Errorf("list tasks of %s: %w", svc.Spec.Name, err)
	}
	running := 0
	for _, t := range tasks {
		if t.Status.State != swarm.TaskStateRunning {
			return false, nil
		}
		running++
	}
	if r := svc.Spec.Mode.Replicated; r != nil {
		return uint64(running) == *r.Replicas, nil
	}
	// Global: a task on every ready, active node its placement allows.
	if p := svc.Spec.TaskTemplate.Placement; p != nil && len(p.Constraints) > 0 {
		return running > 0, nil
	}
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	eligible := 0
	for _, n := range nodes {
		if n.Status.State == swarm.NodeStateReady && n.Spec.Availability == swarm.NodeAvailabilityActive {
			eligible++
		}
	}
	return running >= eligible, nil
}

// unhealthy is the exit-4 error: msg, then the last failed tasks' errors and
// their last log lines.
func unhealthy(ctx context.Context, mgr ManagerEngine, svc swarm.Service, msg string) error {
	var b strings.Builder
	b.WriteString(msg)
	tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
	if err == nil {
		sort.Slice(tasks, func(i, j int) bool { return tasks[i].Status.Timestamp.After(tasks[j].Status.Timestamp) })
		shown := 0
		for _, t := range tasks {
			if shown == 3 {
				break
			}
			switch t.Status.State {
			case swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown:
				if t.Status.Err == "" && t.Status.State == swarm.TaskStateShutdown {
					continue
				}
			default:
				continue
			}
			shown++
			fmt.Fprintf(&b, "\n  task %s.%d (%s): %s %s", svc.Spec.Name, t.Slot, shortID(t.ID), t.Status.State, t.Status.Err)
			if lines := taskLogTail(ctx, mgr, t.ID, 10); lines != "" {
				fmt.Fprintf(&b, "\n    last log lines:\n%s", indent(lines, "      "))
			}
		}
	}
	return fmt.Errorf("%w: %s", deployer.ErrUnhealthy, b.String())
}

func taskLogTail(ctx context.Context, mgr ManagerEngine, id string, n int) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := mgr.TaskLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(rc, 64<<10))
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 8 && (line[0] == 1 || line[0] == 2) {
			line = line[8:] // the multiplexed stream's frame header
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func taskNodes(ctx context.Context, mgr ManagerEngine, name string, hostname map[string]string) ([]string, error) {
	tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", name), filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s: %w", name, err)
	}
	var out []string
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning {
			out = append(out, hostname[t.NodeID])
		}
	}
	sort.Strings(out)
	return out, nil
}

// numericUser resolves a service's user (its user:, else the image's USER)
// to "uid:gid" for the ownership of its secret files. A name is looked up
// in the image's /etc/passwd, read from a created (never started) container
// in the local engine.
func numericUser(ctx context.Context, local LocalEngine, ref, user string) (string, error) {
	if user == "" {
		ii, err := local.ImageInspect(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("inspect %s: %w", ref, err)
		}
		if ii.Config != nil {
			user = ii.Config.User
		}
	}
	if user == "" {
		return "0:0", nil
	}
	name, group, _ := strings.Cut(user, ":")
	if isNumber(name) && (group == "" || isNumber(group)) {
		if group == "" {
			group = name
		}
		return name + ":" + group, nil
	}
	c, err := local.ContainerCreate(ctx, &container.Config{Image: ref, Entrypoint: []string{"/nonexistent"}, Labels: map[string]string{deployer.LabelManagedBy: "invdeploy"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("resolve user %s of %s: %w", user, ref, err)
	}
	defer local.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	rc, _, err := local.CopyFromContainer(ctx, c.ID, "/etc/passwd")
	if err != nil {
		return "", fmt.Errorf("resolve user %s of %s: read /etc/passwd: %w", user, ref, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return "", fmt.Errorf("resolve user %s of %s: read /etc/passwd: %w", user, ref, err)
	}
	uid, gid, err := lookupPasswd(io.LimitReader(tr, 1<<20), name)
	if err != nil {
		return "", fmt.Errorf("resolve user %s of %s: %w", user, ref, err)
	}
	if group != "" && isNumber(group) {
		gid = group
	}
	return uid + ":" + gid, nil
}

// lookupPasswd finds name in an /etc/passwd and returns its uid and gid.
func lookupPasswd(r io.Reader, name string) (uid, gid string, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 4 && f[0] == name && isNumber(f[2]) && isNumber(f[3]) {
			return f[2], f[3], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	return "", "", fmt.Errorf("user %q is not in the image's /etc/passwd", name)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

func fileMode(m uint32) os.FileMode { return os.FileMode(m) }
