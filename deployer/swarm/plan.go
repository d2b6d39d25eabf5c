package swarm

import (
	"context"
	"fmt"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/invdeploy/invdeploy/deployer"
)

// Kinds of the operations of a swarm plan: each is one change on the swarm
// (or, for OpBuild, on this machine's engine, before the rest).
const (
	OpBuild         = "build"
	OpNodeLabel     = "node label"
	OpImagesSend    = "images send"
	OpNetworkCreate = "network create"
	OpSecretCreate  = "secret create"
	OpServiceCreate = "service create"
	OpServiceUpdate = "service update"
	OpSecretRemove  = "secret remove"
)

// Op is one operation of a plan.
type Op struct {
	// Kind is one of the Op* constants.
	Kind string `json:"kind"`
	// Target is the object changed: a service, network or secret name, a
	// node's hostname, an image reference.
	Target string `json:"target"`
	// Service is the compose service the operation is for, if any.
	Service string `json:"service,omitempty"`
	// Reason says why, in words.
	Reason string `json:"reason"`
	// MayChange marks an operation whose outcome a dry run cannot know (an
	// image still to be built): it is shown, never as "keep".
	MayChange bool `json:"may_change,omitempty"`

	x opData
}

// opData is what the applier needs to perform an operation.
type opData struct {
	spec     swarm.ServiceSpec
	id       string
	version  swarm.Version
	node     swarm.Node
	addr     string
	refs     []string
	network  network.CreateOptions
	secret   swarm.SecretSpec
	edge     bool
	imageID  string
	pinnedTo string
}

func (o Op) String() string {
	s := o.Kind + " " + o.Target
	if o.Reason != "" {
		s += ": " + o.Reason
	}
	return s
}

// Plan is what swarm up changes: the operations in order, and the services
// it leaves as they are. Up applies exactly Ops; --dry-run prints them.
type Plan struct {
	Project string `json:"project"`
	Ops     []Op   `json:"ops"`
	// Keep are the services whose spec is unchanged (still waited for).
	Keep []string `json:"keep,omitempty"`
	// Warnings say what a target honours differently (bind mounts).
	Warnings []string `json:"warnings,omitempty"`

	// order is every swarm service (edges after the service they front)
	// in the order they are created, updated and waited for.
	order []serviceStep
}

// serviceStep is one swarm service of the stack in apply order.
type serviceStep struct {
	name, service, image, imageID string
	pinned                        bool
	replicas                      uint64
}

// Changes says whether the plan changes anything on the swarm besides
// sending images a node may lack (they change nothing that runs).
func (p *Plan) Changes() bool {
	for _, op := range p.Ops {
		if op.Kind != OpImagesSend {
			return true
		}
	}
	return false
}

// planInput is what the planner knows besides the swarm's state.
type planInput struct {
	imageIDs map[string]string // "" : to be built, unknown
	users    map[string]string // numeric "uid:gid" per service ("" unknown)
	secrets  map[string][]byte // secret values by compose name (a generated one may be missing)
	edgeRef  string
	edgeID   string
	builds   []string // services whose images are built first
}

// plan computes the operations of swarm up from the compose model and the
// swarm's state. It changes nothing.
func plan(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, o UpOptions, in planInput) (*Plan, error) {
	p := st.Project
	pl := &Plan{Project: p.Name}
	for _, name := range in.builds {
		s := p.Services[name]
		pl.Ops = append(pl.Ops, Op{Kind: OpBuild, Target: deployer.ImageRef(p.Name, s), Service: name,
			Reason: "built on this machine first; the services using it are then planned with the built image", MayChange: true})
	}
	info, err := mgr.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("swarm up: engine info: %w", err)
	}
	order, err := deployer.ServiceOrder(p)
	if err != nil {
		return nil, err
	}
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm up: list nodes: %w", err)
	}

	// Stateful services are pinned to one node by a node label.
	pins := map[string]string{}
	for _, name := range order {
		if !Stateful(p.Services[name]) {
			continue
		}
		key := PinLabel(p.Name, name)
		id := ""
		for _, n := range nodes {
			if n.Spec.Labels[key] == "true" {
				id = n.ID
				break
			}
		}
		if id == "" {
			for _, n := range nodes {
				if n.ID == info.Swarm.NodeID {
					id = n.ID
					pl.Ops = append(pl.Ops, Op{Kind: OpNodeLabel, Target: n.Description.Hostname, Service: name,
						Reason: fmt.Sprintf("pins %s (it keeps data in a named volume) to this manager: %s=true", name, key), x: opData{node: n, id: key}})
				}
			}
			if id == "" {
				return nil, fmt.Errorf("swarm up: node %s is not in the node list", info.Swarm.NodeID)
			}
		}
		pins[name] = id
	}

	// Every usable node gets the images of the services that may run on it.
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady || n.Spec.Availability != swarm.NodeAvailabilityActive {
			continue
		}
		var refs []string
		for _, name := range order {
			if id, pinned := pins[name]; pinned && id != n.ID {
				continue
			}
			refs = append(refs, deployer.ImageRef(p.Name, p.Services[name]))
		}
		if in.edgeRef != "" {
			refs = append(refs, in.edgeRef)
		}
		pl.Ops = append(pl.Ops, Op{Kind: OpImagesSend, Target: n.Description.Hostname,
			Reason: "sends what the node lacks of " + strings.Join(refs, ", ") + " (nothing when it has them)", MayChange: true,
			x: opData{addr: n.Status.Addr, refs: refs}})
	}

	netOps, err := planNetworks(ctx, mgr, p.Name, st)
	if err != nil {
		return nil, err
	}
	pl.Ops = append(pl.Ops, netOps...)

	secretOps, refs, err := planSecrets(ctx, mgr, p.Name, in.secrets)
	if err != nil {
		return nil, err
	}
	// A secret generated on the first up does not exist before it: a dry
	// run shows its creation with the name it will have once generated.
	for _, name := range order {
		for _, ref := range p.Services[name].Secrets {
			if _, ok := refs[ref.Source]; ok {
				continue
			}
			sn := p.Name + "_" + ref.Source + "_<generated>"
			refs[ref.Source] = secretRef{Name: sn}
			secretOps = append(secretOps, Op{Kind: OpSecretCreate, Target: sn, MayChange: true,
				Reason: "value of " + ref.Source + " generated on the first up, then created"})
		}
	}
	pl.Ops = append(pl.Ops, secretOps...)

	current, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{Filters: projectFilter(p.Name)})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	byName := map[string]swarm.Service{}
	for _, svc := range current {
		byName[svc.Spec.Name] = svc
	}
	edges := edgeServices(p, order)
	updated := map[string]bool{}
	var newSpecs []swarm.ServiceSpec
	for _, name := range order {
		s := p.Services[name]
		si := specInput{ImageID: in.imageIDs[name], Secrets: refs, User: in.users[name]}
		if si.ImageID == "" {
			si.ImageID = "sha256:to-be-built"
		}
		if v, ok := o.Scale[name]; ok {
			si.Replicas = &v
		}
		if _, ok := pins[name]; ok {
			si.PinTo = PinLabel(p.Name, name)
		}
		si.Edge = contains(edges, name)
		spec, warns, err := serviceSpec(p, s, si)
		if err != nil {
			return nil, err
		}
		pl.Warnings = append(pl.Warnings, warns...)
		specs := []swarm.ServiceSpec{spec}
		if si.Edge {
			es, err := edgeSpec(p, s, in.edgeID)
			if err != nil {
				return nil, err
			}
			specs = append(specs, es)
		}
		for i, sp := range specs {
			step := serviceStep{name: sp.Name, service: name, image: deployer.ImageRef(p.Name, s), imageID: si.ImageID}
			if i == 1 {
				step.service, step.image, step.imageID = name+"-edge", in.edgeRef, in.edgeID
			}
			_, step.pinned = pins[name]
			if sp.Mode.Replicated != nil {
				step.replicas = *sp.Mode.Replicated.Replicas
			}
			pl.order = append(pl.order, step)
			hash := specHash(sp)
			sp.Labels[deployer.LabelConfigHash] = hash
			newSpecs = append(newSpecs, sp)
			cur, exists := byName[sp.Name]
			op := Op{Target: sp.Name, Service: step.service, x: opData{spec: sp, edge: i == 1, imageID: step.imageID}}
			switch {
			case !exists:
				op.Kind, op.Reason = OpServiceCreate, "new service"
			case cur.Spec.Labels[deployer.LabelConfigHash] == hash:
				pl.Keep = append(pl.Keep, sp.Name)
				continue
			default:
				op.Kind, op.Reason = OpServiceUpdate, specChange(cur.Spec, sp)
				op.x.id, op.x.version = cur.ID, cur.Version
				updated[sp.Name] = true
			}
			if in.imageIDs[name] == "" && i == 0 {
				op.MayChange = true
				op.Reason += " (its image is built first: the update happens only if the built image or spec differs)"
			}
			pl.Ops = append(pl.Ops, op)
		}
	}
	pl.Ops = append(pl.Ops, planStaleSecrets(ctx, mgr, p.Name, current, newSpecs, updated, secretOps)...)
	return pl, nil
}

// specChange says in words how the new spec differs from the current one.
func specChange(cur, want swarm.ServiceSpec) string {
	var what []string
	cc, wc := cur.TaskTemplate.ContainerSpec, want.TaskTemplate.ContainerSpec
	if cc != nil && wc != nil && cc.Image != wc.Image {
		what = append(what, "image "+shortImage(cc.Image)+" -> "+shortImage(wc.Image))
	}
	if cc != nil && wc != nil && fmt.Sprint(secretNames(cc)) != fmt.Sprint(secretNames(wc)) {
		what = append(what, "secrets "+strings.Join(secretNames(wc), ","))
	}
	cr, wr := cur.Mode.Replicated, want.Mode.Replicated
	if cr != nil && wr != nil && cr.Replicas != nil && wr.Replicas != nil && *cr.Replicas != *wr.Replicas {
		what = append(what, fmt.Sprintf("replicas %d -> %d", *cr.Replicas, *wr.Replicas))
	}
	if len(what) == 0 {
		return "spec changed"
	}
	return strings.Join(what, "; ")
}

func secretNames(cs *swarm.ContainerSpec) []string {
	var out []string
	for _, r := range cs.Secrets {
		out = append(out, r.SecretName)
	}
	sort.Strings(out)
	return out
}

func shortImage(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// planNetworks creates the stack's overlay networks that are missing.
func planNetworks(ctx context.Context, mgr ManagerEngine, project string, st *deployer.Stack) ([]Op, error) {
	p := st.Project
	keys := make([]string, 0, len(p.Networks))
	for k := range p.Networks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Swarm-scoped only: a node may still list a network removed from the
	// swarm a moment ago.
	existing, err := mgr.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("scope", "swarm"))})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	have := map[string]bool{}
	for _, n := range existing {
		have[n.Name] = true
	}
	var ops []Op
	for _, k := range keys {
		nc := p.Networks[k]
		if bool(nc.External) || have[nc.Name] {
			continue
		}
		ops = append(ops, Op{Kind: OpNetworkCreate, Target: nc.Name, Reason: "new overlay network",
			x: opData{network: networkSpec(project, k, nc.Driver, nc.Internal, nc.Labels, nc.DriverOpts)}})
	}
	return ops, nil
}

// networkSpec is the create request of a stack network on Swarm: an
// attachable overlay (bridge, the compose default, becomes overlay).
func networkSpec(project, key, driver string, internal bool, userLabels, opts map[string]string) network.CreateOptions {
	if driver == "" || driver == "bridge" {
		driver = "overlay"
	}
	labels := map[string]string{deployer.LabelProject: project, deployer.LabelNetwork: key, deployer.LabelManagedBy: "invdeploy"}
	for lk, lv := range userLabels {
		labels[lk] = lv
	}
	return network.CreateOptions{Driver: driver, Attachable: true, Internal: internal, Labels: labels, Options: opts}
}

// planSecrets creates the swarm secret of every used secret's current value
// that is missing (content-addressed names), and returns the references the
// services will name. A generated secret not generated yet (dry run) is
// shown as created with an unknown name.
func planSecrets(ctx context.Context, mgr ManagerEngine, project string, values map[string][]byte) ([]Op, map[string]secretRef, error) {
	existing, err := mgr.SecretList(ctx, swarm.SecretListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil, nil, fmt.Errorf("list secrets: %w", err)
	}
	byName := map[string]string{}
	for _, s := range existing {
		byName[s.Spec.Name] = s.ID
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	var ops []Op
	refs := map[string]secretRef{}
	for _, n := range names {
		sn := SecretName(project, n, values[n])
		if id, ok := byName[sn]; ok {
			refs[n] = secretRef{Name: sn, ID: id}
			continue
		}
		refs[n] = secretRef{Name: sn}
		ops = append(ops, Op{Kind: OpSecretCreate, Target: sn, Reason: "value of " + n + " not on the swarm yet",
			x: opData{secret: swarm.SecretSpec{
				Annotations: swarm.Annotations{Name: sn, Labels: map[string]string{
					deployer.LabelProject: project, LabelSecretName: n, deployer.LabelManagedBy: "invdeploy"}},
				Data: values[n],
			}}})
	}
	return ops, refs, nil
}

// planStaleSecrets removes the project's secrets no service will use once
// the plan is applied: not in a new spec, nor in a current spec (it becomes
// the previous one, kept for a rollback), nor in the previous spec of a
// service the plan does not update.
func planStaleSecrets(ctx context.Context, mgr ManagerEngine, project string, current []swarm.Service, newSpecs []swarm.ServiceSpec, updated map[string]bool, creates []Op) []Op {
	secrets, err := mgr.SecretList(ctx, swarm.SecretListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil
	}
	used := map[string]bool{}
	mark := func(cs *swarm.ContainerSpec) {
		if cs == nil {
			return
		}
		for _, r := range cs.Secrets {
			used[r.SecretName] = true
		}
	}
	for i := range newSpecs {
		mark(newSpecs[i].TaskTemplate.ContainerSpec)
	}
	for _, svc := range current {
		mark(svc.Spec.TaskTemplate.ContainerSpec)
		if svc.PreviousSpec != nil && !updated[svc.Spec.Name] {
			mark(svc.PreviousSpec.TaskTemplate.ContainerSpec)
		}
	}
	sort.Slice(secrets, func(i, j int) bool { return secrets[i].Spec.Name < secrets[j].Spec.Name })
	var ops []Op
	for _, s := range secrets {
		if used[s.Spec.Name] {
			continue
		}
		ops = append(ops, Op{Kind: OpSecretRemove, Target: s.Spec.Name, Reason: "an old value no service uses any more", x: opData{id: s.ID}})
	}
	return ops
}

// isNotFound is the engine's "no such object", classified by errdefs.
func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
