package deployer

import (
	"context"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// OpKind is the kind of one operation of a plan.
type OpKind string

// Operations of a plan: each is one change on the target (or, for secrets,
// on this machine's config directory).
const (
	// OpSecretAdopt stores here a generated secret that the engine keeps or
	// a running container holds but this machine does not (another machine
	// deployed, a lost config directory), or whose copy here is older than
	// the engine's (rotated from another machine).
	OpSecretAdopt OpKind = "secret-adopt"
	// OpSecretGenerate generates a secret marked x-invdeploy-generate (kept
	// here and on the engine, see targetstate.go).
	OpSecretGenerate OpKind = "secret-generate"
	// OpSecretStore stores on the engine a generated secret this machine
	// kept before the engine kept one (an older invdeploy).
	OpSecretStore OpKind = "secret-store"
	// OpSecretRotate gives a generated PostgreSQL password a new value
	// (secret rotate): ALTER ROLE in the database container, then the value
	// is stored on this machine and on the engine.
	OpSecretRotate OpKind = "secret-rotate"
	// OpSecretRewrite rewrites a running container's delivered copy of a
	// secret in place (the database, which is not restarted).
	OpSecretRewrite OpKind = "secret-rewrite"
	// OpPull pulls an image (missing, or pull_policy always/refresh).
	OpPull OpKind = "pull"
	// OpBuild builds a service's image.
	OpBuild OpKind = "build"
	// OpProxyImage builds the rollout proxy's image.
	OpProxyImage OpKind = "proxy-image"
	// OpNetworkRecreate removes this project's containers on a network that
	// differs from its compose definition, the network, and creates it anew.
	OpNetworkRecreate OpKind = "network-recreate"
	// OpNetworkCreate creates a missing network.
	OpNetworkCreate OpKind = "network-create"
	// OpVolumeCreate creates a missing named volume.
	OpVolumeCreate OpKind = "volume-create"
	// OpProxyCreate, OpProxyRecreate and OpProxyStart make a service's
	// rollout proxy exist, current and running.
	OpProxyCreate   OpKind = "proxy-create"
	OpProxyRecreate OpKind = "proxy-recreate"
	OpProxyStart    OpKind = "proxy-start"
	// Container operations: remove (an orphan, beyond scale), create and
	// start, start a stopped one, roll (new beside old behind the proxy),
	// recreate in place, and rename (a rolled container whose rename
	// failed gets its name).
	OpRemove   OpKind = "container-remove"
	OpCreate   OpKind = "container-create"
	OpStart    OpKind = "container-start"
	OpRoll     OpKind = "container-roll"
	OpRecreate OpKind = "container-recreate"
	OpRename   OpKind = "container-rename"
	// Edge operations (deployer/edge.go): the engine's HTTPS edge is
	// created, upgraded (a hand-off: no connection lost) or started, and
	// routes a service's host names (or no longer does).
	OpEdgeCreate  OpKind = "edge-create"
	OpEdgeUpgrade OpKind = "edge-upgrade"
	OpEdgeStart   OpKind = "edge-start"
	OpEdgeRoute   OpKind = "edge-route"
	OpEdgeUnroute OpKind = "edge-unroute"
)

// Op is one operation of a plan: one change, on what, and why.
type Op struct {
	Kind OpKind `json:"op"`
	// Service is the service the operation is for ("" for a network,
	// volume or secret; the orphan's former service for its removal).
	Service string `json:"service,omitempty"`
	// Target names what changes: a container, network, volume, image or
	// secret.
	Target string `json:"target"`
	Reason string `json:"reason,omitempty"`
	// If is set when the operation changes something only under a
	// condition a dry run cannot know ("the pull brings another image"):
	// otherwise the container gets Else (keep or start).
	If   string `json:"if,omitempty"`
	Else Action `json:"else,omitempty"`
	// Delivers lists the secrets and configs a created container receives
	// (as files, through the engine).
	Delivers []string `json:"delivers,omitempty"`
	// Result is, in UpResult.Ops, the container action a container
	// operation took (its Else when its condition did not hold).
	Result Action `json:"result,omitempty"`

	x opData
}

// opData is what the executor needs of an operation beyond its words.
type opData struct {
	c       container.Summary // the existing container, for container ops
	n       int               // container number, for create/recreate/roll
	name    string            // the name a roll creates the new container under
	net     network.Summary   // OpNetworkRecreate: the existing network
	netKey  string            // network ops: the key under networks
	remove  []container.Summary
	ref     string // pull, build, proxy-image: the image
	stored  string // secret ops: where the value is kept
	value   []byte // OpSecretAdopt: the value (never printed)
	from    string // OpSecretAdopt: the container it was read from
	engine  bool   // secret ops: the engine is to keep the value too
	proxy   string // proxy ops: the existing proxy container's id
	kept    []container.Summary
	ofStack bool // OpRemove: a container of a service the stack has
	edge    *edgeWork
}

// Action is what Up did to one container.
type Action string

// Actions of the plan.
const (
	ActionCreate   Action = "create"
	ActionKeep     Action = "keep"
	ActionRecreate Action = "recreate"
	ActionStart    Action = "start"
	ActionRemove   Action = "remove"
	// ActionRoll starts a new container beside the old one, switches the
	// service's rollout proxy to it once healthy, drains and stops the old.
	ActionRoll Action = "roll"
	// ActionRename gives a kept container its service's name again.
	ActionRename Action = "rename"
)

// Step is one container's part of a plan.
type Step struct {
	Service   string `json:"service"`
	Container string `json:"container"`
	Action    Action `json:"action"`
	// Reason says why a container is recreated.
	Reason string `json:"reason,omitempty"`
	// If and Else: see Op.
	If   string `json:"if,omitempty"`
	Else Action `json:"else,omitempty"`

	c *container.Summary // the existing container (nil: none)
	n int                // its number (0: a removal)
}

// ServicePlan is what up would do to one service, and why.
type ServicePlan struct {
	Service string `json:"service"`
	// Action sums up the service: the most disruptive of its steps
	// (create, roll, recreate, start, remove, keep).
	Action Action `json:"action"`
	// Rollout says how a change of this service is applied: "proxy"
	// (rolled, zero downtime) or "recreate" (stopped, then started again).
	Rollout       string `json:"rollout"`
	RolloutReason string `json:"rollout_reason"`
	// Image is what runs: the image reference, and "build" when up would
	// build it first.
	Image      string `json:"image"`
	WillBuild  bool   `json:"will_build,omitempty"`
	Containers []Step `json:"containers"`
	// Proxy is what happens to the service's rollout proxy (rollout
	// "proxy" only): create, keep, start, or recreate (its published port
	// changed: the one change that interrupts clients).
	Proxy Action `json:"proxy,omitempty"`
	// ProxyReason says why the proxy is created, recreated or started.
	ProxyReason string `json:"proxy_reason,omitempty"`
}

// Plan is up's plan for a stack, computed from the compose model and the
// engine's state without changing anything: Ops is what Up performs, in
// order; Services sums it up per service (kept containers included).
type Plan struct {
	Project  string        `json:"project"`
	Ops      []Op          `json:"operations"`
	Services []ServicePlan `json:"services"`
	// Orphans are containers of services the file no longer has that stay
	// (up warns; with --remove-orphans they are OpRemove operations).
	Orphans []string `json:"orphans,omitempty"`
	// Warnings are said by up too (a rollout proxy that cannot be made).
	Warnings []string `json:"warnings,omitempty"`
	Report   *Report  `json:"-"`

	p        *types.Project
	order    []string
	rollouts map[string]rollout
	hashes   map[string]string
	values   map[string][]byte
	// proxyImage is the rollout proxy's image ("" when none is needed);
	// proxyIDs are the proxies that exist: service -> container id.
	proxyImage string
	proxyIDs   map[string]string
	// confirm are the mirrored secrets (their stored paths) the engine
	// was found to keep with the same value: noted once applied.
	confirm []string
	// mirrored are the generated secrets whose value is this machine's
	// confirmed mirror, not read from the engine (see verifyMirrors).
	mirrored []string
	// rewritten is a container whose delivered secrets are rewritten in
	// place before the plan's container operations (secret rotate's
	// database): it counts as holding the plan's values.
	rewritten string
}

// Changes reports whether applying the plan would change anything.
func (p *Plan) Changes() bool { return len(p.Ops) > 0 }

// actionWeight orders the actions of a service's summary.
var actionWeight = map[Action]int{ActionKeep: 0, ActionRename: 1, ActionStart: 1, ActionRemove: 2, ActionCreate: 3, ActionRoll: 4, ActionRecreate: 5}

// Plan runs preflight and computes what Up would do (up --dry-run): the
// operations Up performs, with their reasons. It builds, pulls, generates
// and creates nothing; what it cannot know (whether a pull or build brings
// another image) is said as a condition.
func (d *Deployer) Plan(ctx context.Context, st *Stack, o UpOptions) (*Plan, error) {
	rep, err := d.Check(ctx, st, CheckOptions{Remote: o.Remote, ConfigDir: o.ConfigDir, Build: o.Build, Edge: o.Edge})
	if err != nil {
		return &Plan{Project: st.Project.Name, Report: rep}, err
	}
	d.loadDeliveryRecord(st.Project.Name, o.ConfigDir)
	defer func() { d.delivered = nil }()
	pl, err := d.plan(ctx, st.Project, o)
	pl.Report = rep
	return pl, err
}

// lockedPlan plans an up. With o.Lock, a held lock refuses at once (exit
// 5); a plan with operations takes the lock and is computed again under it
// (another deploy may have changed the stack meanwhile), so an up with
// nothing to change only reads. The lock it took (nil when none) is the caller's to release.
func (d *Deployer) lockedPlan(ctx context.Context, p *types.Project, o UpOptions) (pl *Plan, lock *Lock, err error) {
	if o.Lock {
		if err := d.lockFree(ctx, p.Name); err != nil {
			return &Plan{Project: p.Name}, nil, err
		}
	}
	pl, err = d.plan(ctx, p, o)
	if err != nil || !o.Lock || !pl.Changes() {
		return pl, nil, err
	}
	l, err := d.Lock(ctx, p.Name, LockOptions{Command: "up"})
	if err != nil {
		return pl, nil, err
	}
	pl, err = d.plan(ctx, p, o)
	return pl, l, err
}
