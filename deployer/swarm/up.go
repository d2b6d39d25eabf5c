package swarm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

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
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
	ConfigCreate(ctx context.Context, config swarm.ConfigSpec) (swarm.ConfigCreateResponse, error)
	ConfigRemove(ctx context.Context, id string) error
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
	// Locker takes the project's deploy lock on the manager (the same lock
	// as up's, on the manager's engine); nil: no lock (tests).
	Locker Locker
}

// Locker takes a project's deploy lock; *deployer.Deployer on the
// manager's engine is one.
type Locker interface {
	Lock(ctx context.Context, project string, o deployer.LockOptions) (*deployer.Lock, error)
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
	// Plan is what was planned; Applied the operations performed, in order
	// (all of Plan.Ops when the up succeeded).
	Plan    *Plan `json:"plan,omitempty"`
	Applied []Op  `json:"applied"`
	// Release is the release recorded on the swarm.
	Release *deployer.Release `json:"release,omitempty"`
}

// Check is swarm up's preflight: it changes nothing. It refuses (a
// *deployer.PreflightError, exit 3) a manager that is not one, a --scale of
// an unknown service, a compose field Swarm does not honour (the field
// table), a service that cannot be converted, a secret that cannot be read,
// an image neither here nor buildable here.
func Check(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, o UpOptions) error {
	p := st.Project
	var probs []deployer.Problem
	add := func(rule, subject, msg string) {
		probs = append(probs, deployer.Problem{Rule: rule, Subject: subject, Message: msg})
	}
	info, err := mgr.Info(ctx)
	if err != nil {
		return fmt.Errorf("swarm up: engine info: %w", err)
	}
	if !info.Swarm.ControlAvailable {
		add("swarm", "--host", "is not a swarm manager (node state "+string(info.Swarm.LocalNodeState)+"): give a manager, or run invdeploy swarm init first")
	}
	for name := range o.Scale {
		if _, ok := p.Services[name]; !ok {
			add("scale", name, "is not a service of "+st.Describe())
		}
	}
	fields, err := deployer.FieldProblems(p, deployer.TargetSwarm)
	if err != nil {
		return err
	}
	probs = append(probs, fields...)
	if len(fields) == 0 {
		any := map[string]secretRef{}
		for name := range p.Secrets {
			any[name] = secretRef{Name: name}
		}
		for _, name := range p.ServiceNames() {
			if _, _, err := serviceSpec(p, p.Services[name], specInput{ImageID: "sha256:x", Secrets: any}); err != nil {
				add("compose", "services."+name, err.Error()+"; fix the compose file")
			}
		}
	}
	if _, err := deployer.PeekSecretValues(st, o.ConfigDir); err != nil {
		add("secret", "secrets", err.Error())
	}
	if o.Local != nil {
		for _, name := range p.ServiceNames() {
			s := p.Services[name]
			ref := deployer.ImageRef(p.Name, s)
			_, err := o.Local.ImageInspect(ctx, ref)
			switch {
			case err == nil, s.Build != nil && cerrdefs.IsNotFound(err):
			case cerrdefs.IsNotFound(err):
				add("image", ref, "is not in the local engine: pull or build it here first (swarm up sends this machine's images to the nodes, so every node runs the same bytes)")
			default:
				return fmt.Errorf("inspect local image %s: %w", ref, err)
			}
		}
	}
	if len(probs) > 0 {
		return &deployer.PreflightError{Problems: probs}
	}
	return nil
}

// DryRun is swarm up --dry-run: preflight, then the plan swarm up would
// apply, without building, sending or changing anything. Images still to
// be built are shown as such (MayChange), never as kept.
func DryRun(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, o UpOptions) (*Plan, error) {
	if err := Check(ctx, mgr, st, o); err != nil {
		return nil, err
	}
	in, err := planInputs(ctx, mgr, st, o, false, nil)
	if err != nil {
		return nil, err
	}
	return plan(ctx, mgr, st, o, in)
}

// Up deploys st to the swarm of mgr: check -> lock -> build -> plan ->
// apply(plan) -> wait -> record. Images are built locally and sent to every
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
	if err := Check(ctx, mgr, st, o); err != nil {
		return nil, err
	}
	var fence func(context.Context, string) error
	if o.Locker != nil {
		l, err := o.Locker.Lock(ctx, st.Name(), deployer.LockOptions{Command: "swarm up"})
		if err != nil {
			return nil, err
		}
		defer l.Unlock(context.WithoutCancel(ctx))
		fence = l.Fence
	}
	in, err := planInputs(ctx, mgr, st, o, true, rep)
	if err != nil {
		return nil, err
	}
	pl, err := plan(ctx, mgr, st, o, in)
	if err != nil {
		return nil, err
	}
	report, err := applyPlan(ctx, mgr, st, pl, o, fence, rep)
	if err != nil {
		return report, err
	}
	rel, err := recordRelease(ctx, mgr, st, pl, "swarm up")
	if err != nil {
		return report, err
	}
	report.Release = rel
	return report, nil
}

// planInputs gathers what the planner needs besides the swarm: image IDs
// (building the images that need it when build is true; else they are
// left unknown), the numeric users of services with secrets, the secret
// values, the edge image.
func planInputs(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, o UpOptions, build bool, rep remote.Reporter) (planInput, error) {
	p := st.Project
	in := planInput{imageIDs: map[string]string{}, users: map[string]string{}}
	order, err := deployer.ServiceOrder(p)
	if err != nil {
		return in, err
	}
	for _, name := range order {
		s := p.Services[name]
		ref := deployer.ImageRef(p.Name, s)
		li, err := o.Local.ImageInspect(ctx, ref)
		missing := cerrdefs.IsNotFound(err)
		if err != nil && !missing {
			return in, fmt.Errorf("inspect local image %s: %w", ref, err)
		}
		if deployer.NeedsBuild(s, !missing, o.Rebuild, false) {
			if !build {
				in.builds = append(in.builds, name)
				continue
			}
			rep.Event("Building %s locally", ref)
			if err := o.Build(ctx, name); err != nil {
				return in, err
			}
			if li, err = o.Local.ImageInspect(ctx, ref); err != nil {
				return in, fmt.Errorf("inspect local image %s: %w", ref, err)
			}
		}
		in.imageIDs[name] = li.ID
		if len(s.Secrets) > 0 {
			if in.users[name], err = numericUser(ctx, o.Local, ref, s.User); err != nil {
				return in, err
			}
		}
	}
	if build {
		in.secrets, err = deployer.SecretValues(st, o.ConfigDir)
	} else {
		in.secrets, err = deployer.PeekSecretValues(st, o.ConfigDir)
	}
	if err != nil {
		return in, err
	}
	if len(edgeServices(p, order)) > 0 {
		exe := o.EdgeExecutable
		if exe == "" {
			if exe, err = os.Executable(); err != nil {
				return in, fmt.Errorf("edge image: %w", err)
			}
		}
		if in.edgeRef, err = edgeImage(ctx, o.Local, exe); err != nil {
			return in, err
		}
		li, err := o.Local.ImageInspect(ctx, in.edgeRef)
		if err != nil {
			return in, fmt.Errorf("inspect local image %s: %w", in.edgeRef, err)
		}
		in.edgeID = li.ID
	}
	return in, nil
}

// applyPlan performs the plan's operations, in order and nothing else,
// waiting for each service (changed or kept) to converge in dependency
// order; the report lists the operations done.
func applyPlan(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, pl *Plan, o UpOptions, fence func(context.Context, string) error, rep remote.Reporter) (*UpReport, error) {
	report := &UpReport{Plan: pl, Warnings: pl.Warnings}
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return report, fmt.Errorf("swarm up: list nodes: %w", err)
	}
	hostname := map[string]string{}
	for _, n := range nodes {
		hostname[n.ID] = n.Description.Hostname
	}
	secretIDs := map[string]string{}
	done := map[string]Op{}
	do := func(op Op) error {
		if fence != nil {
			if err := fence(ctx, op.String()); err != nil {
				return err
			}
		}
		if err := applyOp(ctx, mgr, op, secretIDs, rep); err != nil {
			return err
		}
		report.Applied = append(report.Applied, op)
		return nil
	}
	// Everything before the services, in plan order: labels, images (all
	// nodes at once), networks, secrets.
	sent := false
	for _, op := range pl.Ops {
		switch op.Kind {
		case OpServiceCreate, OpServiceUpdate, OpSecretRemove, OpBuild:
			continue
		case OpImagesSend:
			if !sent {
				sent = true
				if err := sendAll(ctx, pl.Ops, o, fence, report, rep); err != nil {
					return report, err
				}
			}
			continue
		}
		if err := do(op); err != nil {
			return report, err
		}
	}
	for _, op := range pl.Ops {
		if op.Kind == OpServiceCreate || op.Kind == OpServiceUpdate {
			done[op.Target] = op
		}
	}
	// Services in dependency order, each waited for before the next.
	for _, step := range pl.order {
		res := ServiceResult{Service: step.service, Image: step.image, ImageID: step.imageID, Replicas: step.replicas, Action: ActionUnchanged}
		var before *time.Time
		if op, ok := done[step.name]; ok {
			if op.Kind == OpServiceUpdate {
				if before, err = updateStartedAt(ctx, mgr, op.x.id); err != nil {
					return report, err
				}
			}
			if err := do(op); err != nil {
				return report, err
			}
			res.Action = ActionCreated
			if op.Kind == OpServiceUpdate {
				res.Action = ActionUpdated
				if before, err = rollingUpdate(ctx, mgr, op, before); err != nil {
					return report, err
				}
			}
		}
		err := waitConverged(ctx, mgr, step.name, before, o.WaitTimeout, rep)
		if err == nil {
			res.Nodes, err = taskNodes(ctx, mgr, step.name, hostname)
		}
		if step.pinned {
			res.PinnedTo = pinnedHost(nodes, PinLabel(st.Name(), step.service))
		}
		report.Services = append(report.Services, res)
		if err != nil {
			return report, err
		}
	}
	for _, op := range pl.Ops {
		if op.Kind != OpSecretRemove {
			continue
		}
		if err := do(op); err != nil {
			return report, err
		}
		report.SecretsRemoved = append(report.SecretsRemoved, op.Target)
	}
	return report, nil
}

// pinnedHost is the hostname of the node labelled key=true.
func pinnedHost(nodes []swarm.Node, key string) string {
	for _, n := range nodes {
		if n.Spec.Labels[key] == "true" {
			return n.Description.Hostname
		}
	}
	return ""
}

// sendAll performs the plan's images-send operations, every node at once,
// and records them in plan order.
func sendAll(ctx context.Context, all []Op, o UpOptions, fence func(context.Context, string) error, report *UpReport, rep remote.Reporter) error {
	var ops []Op
	for _, op := range all {
		if op.Kind == OpImagesSend {
			ops = append(ops, op)
		}
	}
	if fence != nil {
		if err := fence(ctx, "send images"); err != nil {
			return err
		}
	}
	results := make([]remote.TransferResult, len(ops))
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = sendImages(ctx, o, op.x.addr, op.x.refs, rep)
		}()
	}
	wg.Wait()
	for i, op := range ops {
		if errs[i] != nil {
			return fmt.Errorf("images to node %s (%s): %w", op.Target, op.x.addr, errs[i])
		}
		report.Transfers = append(report.Transfers, NodeTransfer{Node: op.Target, Addr: op.x.addr, Transfer: results[i]})
		report.Applied = append(report.Applied, op)
		rep.Event("Node %s: %s", op.Target, results[i].Summary())
	}
	return nil
}

// applyOp performs one operation other than sending images: one engine call.
func applyOp(ctx context.Context, mgr ManagerEngine, op Op, secretIDs map[string]string, rep remote.Reporter) error {
	switch op.Kind {
	case OpNodeLabel:
		n := op.x.node
		spec := n.Spec
		labels := map[string]string{}
		for k, v := range spec.Labels {
			labels[k] = v
		}
		labels[op.x.id] = "true"
		spec.Labels = labels
		if err := mgr.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
			return fmt.Errorf("label node %s %s=true: %w", n.Description.Hostname, op.x.id, err)
		}
	case OpNetworkCreate:
		rep.Event("Creating overlay network %s", op.Target)
		if _, err := mgr.NetworkCreate(ctx, op.Target, op.x.network); err != nil {
			return fmt.Errorf("create network %s: %w", op.Target, err)
		}
	case OpSecretCreate:
		rep.Event("Creating swarm secret %s", op.Target)
		resp, err := mgr.SecretCreate(ctx, op.x.secret)
		if err != nil {
			return fmt.Errorf("create swarm secret %s: %w", op.Target, err)
		}
		secretIDs[op.Target] = resp.ID
	case OpServiceCreate, OpServiceUpdate:
		spec := withSecretIDs(op.x.spec, secretIDs)
		if op.Kind == OpServiceCreate {
			rep.Event("Creating service %s", op.Target)
			if _, err := mgr.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{}); err != nil {
				return fmt.Errorf("create service %s: %w", op.Target, err)
			}
			return nil
		}
		rep.Event("Updating service %s (%s)", op.Target, op.Reason)
		resp, err := mgr.ServiceUpdate(ctx, op.x.id, op.x.version, spec, swarm.ServiceUpdateOptions{})
		if err != nil {
			return fmt.Errorf("update service %s: %w", op.Target, err)
		}
		for _, w := range resp.Warnings {
			rep.Event("warning: %s", w)
		}
	case OpSecretRemove:
		if err := mgr.SecretRemove(ctx, op.x.id); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove swarm secret %s: %w", op.Target, err)
		}
	default:
		return fmt.Errorf("swarm up: cannot apply a %s operation", op.Kind)
	}
	return nil
}

// withSecretIDs fills the IDs of the secrets created by this apply into a
// spec's references (the plan knows only their names).
func withSecretIDs(spec swarm.ServiceSpec, ids map[string]string) swarm.ServiceSpec {
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil || len(cs.Secrets) == 0 {
		return spec
	}
	c := *cs
	c.Secrets = make([]*swarm.SecretReference, len(cs.Secrets))
	for i, r := range cs.Secrets {
		rc := *r
		if rc.SecretID == "" {
			rc.SecretID = ids[rc.SecretName]
		}
		c.Secrets[i] = &rc
	}
	spec.TaskTemplate.ContainerSpec = &c
	return spec
}

// updateStartedAt is when the service's last rolling update started (zero
// when it never had one).
func updateStartedAt(ctx context.Context, mgr ManagerEngine, id string) (*time.Time, error) {
	cur, _, err := mgr.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect service %s: %w", id, err)
	}
	t := time.Time{}
	if cur.UpdateStatus != nil && cur.UpdateStatus.StartedAt != nil {
		t = *cur.UpdateStatus.StartedAt
	}
	return &t, nil
}

// rollingUpdate says whether an update started a rolling update to wait
// for: a change of the service's own fields (labels, replicas) starts none,
// so the task templates are compared as the manager stores them.
func rollingUpdate(ctx context.Context, mgr ManagerEngine, op Op, before *time.Time) (*time.Time, error) {
	now, _, err := mgr.ServiceInspectWithRaw(ctx, op.x.id, swarm.ServiceInspectOptions{})
	if err != nil {
		return before, nil
	}
	if now.PreviousSpec != nil && taskSpecEqual(now.PreviousSpec.TaskTemplate, now.Spec.TaskTemplate) {
		return nil, nil
	}
	return before, nil
}

// sendImages streams to the node at addr the images it lacks.
func sendImages(ctx context.Context, o UpOptions, addr string, refs []string, rep remote.Reporter) (remote.TransferResult, error) {
	eng, err := o.DialNode(ctx, addr)
	if err != nil {
		return remote.TransferResult{}, err
	}
	return remote.TransferSSH(ctx, o.Local, eng, refs, nopReporter{})
}

func projectFilter(project string) filters.Args {
	return filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project))
}

// Actions of ServiceResult.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
)

func taskSpecEqual(a, b swarm.TaskSpec) bool {
	a.ForceUpdate, b.ForceUpdate = 0, 0
	return specHash(swarm.ServiceSpec{TaskTemplate: a}) == specHash(swarm.ServiceSpec{TaskTemplate: b})
}

// waitConverged waits until every replica of the service runs (healthy where
// it has a healthcheck: Swarm reports a task running only then). With
// updateAfter set, it first waits for a rolling update that started after
// that time to finish, and fails when Swarm paused or rolled it back.
func waitConverged(ctx context.Context, mgr ManagerEngine, name string, updateAfter *time.Time, timeout time.Duration, rep remote.Reporter) error {
	updating := updateAfter != nil
	var svc swarm.Service
	err := poll(ctx, timeout, 300*time.Millisecond, func(ctx context.Context) error {
		var err error
		if svc, _, err = mgr.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{}); err != nil {
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
			if err != nil || ok {
				return err
			}
		}
		return errPending
	})
	if errors.Is(err, errPending) {
		return unhealthy(ctx, mgr, svc, fmt.Sprintf("service %s did not converge within %s", name, timeout))
	}
	return err
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
// to "uid:gid" for the ownership of its secret files, with the one user
// resolution of every target (deployer.ResolveUser): unless both are
// numbers, the image's /etc/passwd and /etc/group are read from a created
// (never started) container in the local engine.
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
	if name, group, ok := strings.Cut(user, ":"); ok && isNumber(name) && isNumber(group) {
		return user, nil
	}
	c, err := local.ContainerCreate(ctx, &container.Config{Image: ref, Entrypoint: []string{"/nonexistent"}, Labels: map[string]string{deployer.LabelManagedBy: "invdeploy"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("resolve user %s of %s: %w", user, ref, err)
	}
	defer local.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	uid, gid, err := deployer.ContainerUser(ctx, local, c.ID, user)
	if err != nil {
		return "", fmt.Errorf("resolve the user of %s: %w", ref, err)
	}
	return strconv.Itoa(uid) + ":" + strconv.Itoa(gid), nil
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
