package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
)

// The planner: one function from the compose model and the engine's state
// to the list of operations Up performs. It reads only; Plan (up --dry-run)
// renders its result and Up applies it.

// imageState is what the planner knows of a service's image before the
// pulls and builds of the plan run.
type imageState struct {
	id string // the local image now ("" absent)
	// unknown is set when a planned pull or build may change the image
	// (the condition, in words); reason is the containers' reason then.
	unknown, reason string
}

// plan computes the plan of p against the engine (see Plan). d.delivered
// is the delivery record to trust, when loaded.
func (d *Deployer) plan(ctx context.Context, p *types.Project, o UpOptions) (*Plan, error) {
	pl := &Plan{Project: p.Name, Ops: []Op{}, p: p, rollouts: map[string]rollout{}, hashes: map[string]string{}, proxyIDs: map[string]string{}}
	order, err := dependencyOrder(p)
	if err != nil {
		return pl, err
	}
	pl.order = order
	cs, err := d.projectContainers(ctx, p.Name)
	if err != nil {
		return pl, err
	}
	// The order of the operations is up's: pulls (a failed one refuses
	// before anything changed), orphans, secrets, builds, the proxy image,
	// networks, volumes, then each service in dependency order.
	images, builds, err := d.planImages(ctx, pl, o)
	if err != nil {
		return pl, err
	}
	planOrphans(pl, cs, o.RemoveOrphans)
	if pl.values, err = readValues(p, o.ConfigDir, false); err != nil {
		return pl, err
	}
	if err := d.planSecrets(ctx, pl, cs, o.ConfigDir, o.readState); err != nil {
		return pl, err
	}
	if r := o.rotating; r != nil {
		// The value secret rotate is about to set, and the database's
		// copy rewritten in place before any container is changed.
		pl.values[valueKey(kindSecret, r.name)] = r.next
		pl.mirrored = slices.DeleteFunc(pl.mirrored, func(n string) bool { return n == r.name })
		pl.rewritten = r.dbc.ID
	}
	pl.Ops = append(pl.Ops, builds...)
	if err := d.planRollouts(ctx, pl, o.ProxyBinary); err != nil {
		return pl, err
	}
	gone, err := d.planNetworks(ctx, pl)
	if err != nil {
		return pl, err
	}
	if err := d.planVolumes(ctx, pl); err != nil {
		return pl, err
	}
	for _, name := range order {
		if err := d.planService(ctx, pl, cs, name, images[name], gone); err != nil {
			return pl, err
		}
	}
	if !o.readState {
		stale, err := d.staleMirrors(ctx, pl)
		if err != nil {
			return pl, err
		}
		if stale {
			o.readState = true
			return d.plan(ctx, p, o)
		}
	}
	if err := d.planEdge(ctx, pl, o); err != nil {
		return pl, err
	}
	return pl, nil
}

// staleMirrors reports whether the plan would deliver a generated secret
// from this machine's confirmed mirror while the engine keeps another value
// or none: a rotation made from another machine, or a state container
// removed since (docker container prune). The engine's store is read only
// then (one archive call), so an up that delivers nothing costs nothing
// more; the caller plans again reading every value from the engine, which
// adopts its value (or stores the mirror's there again) before anything is
// delivered.
func (d *Deployer) staleMirrors(ctx context.Context, pl *Plan) (bool, error) {
	if len(pl.mirrored) == 0 {
		return false, nil
	}
	delivers := false
	for _, op := range pl.Ops {
		for _, what := range op.Delivers {
			for _, name := range pl.mirrored {
				delivers = delivers || what == kindSecret+" "+name
			}
		}
	}
	if !delivers {
		return false, nil
	}
	onEngine, err := d.readState(ctx, pl.p.Name)
	if err != nil {
		return false, err
	}
	for _, name := range pl.mirrored {
		if v, ok := onEngine[name]; !ok || !bytes.Equal(v, pl.values[valueKey(kindSecret, name)]) {
			return true, nil
		}
	}
	return false, nil
}

// planSecrets plans the generated secrets (see targetstate.go: the engine
// keeps them, this machine mirrors them). One this machine does not keep is
// adopted from the engine's store, else from a running container that
// holds it (read back through the API; a new value would hand the services
// a password the database was never given), else generated, as on a first
// up, unless a volume of a service that uses it already exists: its data
// was set up with a value nobody has, so the plan is refused (exit 3) with
// the ways out. One this machine keeps but the engine has not confirmed
// (the first up after an upgrade), or any one with readAll (see
// staleMirrors), is stored on the engine, or, when the engine keeps another
// value (rotated from another machine), the engine's is adopted. The values
// count in the plan.
func (d *Deployer) planSecrets(ctx context.Context, pl *Plan, cs []container.Summary, configDir string, readAll bool) error {
	p := pl.p
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return err
	}
	var onEngine map[string][]byte // read once, when needed
	engineValue := func(name string) ([]byte, bool, error) {
		if onEngine == nil {
			if onEngine, err = d.readState(ctx, p.Name); err != nil {
				return nil, false, err
			}
		}
		v, ok := onEngine[name]
		return v, ok, nil
	}
	var problems []Problem
	confirmedIn := map[string]map[string]bool{} // mirror directory -> names, read once
	for _, name := range usedSecrets(p) {
		src := srcs[name]
		if !src.Generate || p.Environment[src.Env] != "" {
			continue
		}
		mine, err := os.ReadFile(src.Stored)
		switch {
		case err == nil:
			dir := filepath.Dir(src.Stored)
			if confirmedIn[dir] == nil {
				confirmedIn[dir] = confirmed(dir)
			}
			if confirmedIn[dir][name] && !readAll {
				pl.mirrored = append(pl.mirrored, name)
				continue
			}
			mine = bytes.TrimRight(mine, "\r\n")
			v, ok, err := engineValue(name)
			if err != nil {
				return err
			}
			switch {
			case !ok:
				pl.Ops = append(pl.Ops, Op{Kind: OpSecretStore, Target: name, Reason: "kept on this machine, not yet on the engine: stored there too",
					x: opData{stored: src.Stored, value: mine}})
			case !bytes.Equal(v, mine):
				pl.values[valueKey(kindSecret, name)] = v
				pl.Ops = append(pl.Ops, Op{Kind: OpSecretAdopt, Target: name, Reason: "the engine keeps another value than this machine's copy (rotated from another machine): take the engine's",
					x: opData{stored: src.Stored, value: v, from: "the engine's store"}})
			default:
				pl.confirm = append(pl.confirm, src.Stored)
			}
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("read generated secret %s from %s: %w", name, src.Stored, err)
		}
		if v, ok, err := engineValue(name); err != nil {
			return err
		} else if ok {
			pl.values[valueKey(kindSecret, name)] = v
			pl.Ops = append(pl.Ops, Op{Kind: OpSecretAdopt, Target: name, Reason: "not stored on this machine: take the value the engine keeps",
				x: opData{stored: src.Stored, value: v, from: "the engine's store"}})
			continue
		}
		value, from, err := d.heldSecret(ctx, p, cs, name)
		if err != nil {
			return err
		}
		if value != nil {
			pl.values[valueKey(kindSecret, name)] = value
			pl.Ops = append(pl.Ops, Op{Kind: OpSecretAdopt, Target: name, Reason: "not stored on this machine: take the value " + from + " holds",
				x: opData{stored: src.Stored, value: value, from: from, engine: true}})
			continue
		}
		vols, err := d.existingVolumesUsing(ctx, p, name)
		if err != nil {
			return err
		}
		if len(vols) > 0 {
			problems = append(problems, stateRefusal(name, src.Stored, vols, p, src))
			continue
		}
		pl.Ops = append(pl.Ops, Op{Kind: OpSecretGenerate, Target: name, Reason: "not stored on this machine or the engine and held by no running container",
			x: opData{stored: src.Stored}})
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}

// pullsAlways reports whether up pulls a present image again (pull_policy
// always or refresh).
func pullsAlways(s types.ServiceConfig) bool {
	return s.Build == nil && (s.PullPolicy == types.PullPolicyAlways || s.PullPolicy == types.PullPolicyRefresh)
}

// planImages plans the pulls (missing images first, then pull_policy
// always/refresh; added to the plan) and the builds (returned), and says
// per service what is known of its image.
func (d *Deployer) planImages(ctx context.Context, pl *Plan, o UpOptions) (map[string]imageState, []Op, error) {
	p := pl.p
	out := map[string]imageState{}
	ids := map[string]string{}
	var missing, refresh, builds []Op
	planned := map[string]string{} // ref -> the condition its pull or build sets
	for ref, cond := range o.Pending {
		planned[ref] = cond
	}
	for _, name := range pl.order {
		s := p.Services[name]
		ref := ImageRef(p.Name, s)
		id, seen := ids[ref]
		why := ""
		if !seen || s.Build != nil {
			var err error
			if id, why, err = d.serviceBuild(ctx, p, s, o.Build, o.Remote); err != nil {
				return nil, nil, err
			}
			ids[ref] = id
		}
		st := imageState{id: id}
		switch {
		case planned[ref] != "":
		case why != "":
			planned[ref] = "the build changes the image"
			builds = append(builds, Op{Kind: OpBuild, Service: name, Target: ref, Reason: why, x: opData{ref: ref}})
		case s.Build == nil && id == "" && s.PullPolicy != types.PullPolicyNever:
			planned[ref] = "the pull brings another image"
			missing = append(missing, Op{Kind: OpPull, Service: name, Target: ref, Reason: "not present", x: opData{ref: ref}})
		case pullsAlways(s) && id != "":
			planned[ref] = "the pull brings another image"
			refresh = append(refresh, Op{Kind: OpPull, Service: name, Target: ref, Reason: "pull_policy is " + s.PullPolicy + ": may change the image", x: opData{ref: ref}})
		}
		if cond := planned[ref]; cond != "" {
			st.unknown, st.reason = cond, "image changed"
			if s.Build != nil {
				st.reason = "image will be built"
			}
		}
		out[name] = st
	}
	pl.Ops = append(pl.Ops, missing...)
	pl.Ops = append(pl.Ops, refresh...)
	return out, builds, nil
}

// planRollouts decides how each service's changes are applied and, when one
// is rolled, whether the proxy's image is present or can be made here. A
// proxy that cannot be made is a warning: those services are recreated in
// place, and the plan says so.
func (d *Deployer) planRollouts(ctx context.Context, pl *Plan, proxyBinary string) error {
	need := false
	for _, name := range pl.order {
		ro, err := rolloutOf(pl.p.Services[name], proxyBinary != "")
		if err != nil {
			return err
		}
		pl.rollouts[name] = ro
		need = need || ro.Proxy
	}
	if !need {
		return nil
	}
	ref, present, err := d.proxyImage(ctx, proxyBinary)
	if err == nil {
		pl.proxyImage = ref
		if !present {
			pl.Ops = append(pl.Ops, Op{Kind: OpProxyImage, Target: ref, Reason: "the rollout proxy's image, not present", x: opData{ref: proxyBinary}})
		}
		return nil
	}
	pl.Warnings = append(pl.Warnings, fmt.Sprintf("%v; services that would roll are recreated in place", err))
	for _, name := range pl.order {
		if ro := pl.rollouts[name]; ro.Proxy {
			ro, _ = rolloutOf(pl.p.Services[name], false)
			ro.Why = "the rollout proxy's image cannot be made: recreated in place"
			pl.rollouts[name] = ro
		}
	}
	return nil
}

// planNetworks plans the networks: a changed one is recreated with this
// project's containers on it (preflight refused the cases that must not be
// touched), a missing one created. gone maps the ids of the containers the
// recreation removes to the reason.
func (d *Deployer) planNetworks(ctx context.Context, pl *Plan) (map[string]string, error) {
	p := pl.p
	gone := map[string]string{}
	removed := map[string]bool{} // by an earlier operation (orphans)
	for _, op := range pl.Ops {
		if op.Kind == OpRemove {
			removed[op.x.c.ID] = true
		}
	}
	for _, key := range usedNetworks(p) {
		nc := p.Networks[key]
		n, exists, err := d.existingNetwork(ctx, nc.Name)
		if err != nil {
			return nil, err
		}
		if !exists {
			if nc.External {
				return nil, fmt.Errorf("networks.%s: external network %s does not exist; create it first", key, nc.Name)
			}
			pl.Ops = append(pl.Ops, Op{Kind: OpNetworkCreate, Target: nc.Name, Reason: "not present", x: opData{netKey: key}})
			continue
		}
		diffs := networkDiff(nc, n)
		if nc.External || len(diffs) == 0 {
			continue
		}
		attached, others, err := d.networkUsers(ctx, n.Name, p.Name)
		if err != nil {
			return nil, err
		}
		if len(others) > 0 || n.Labels[LabelProject] != p.Name {
			return nil, fmt.Errorf("network %s differs from networks.%s but is not this project's alone; run invdeploy check for what to do", n.Name, key)
		}
		var ours []container.Summary // not removed before (an orphan, or with another network)
		for _, c := range attached {
			if !removed[c.ID] && gone[c.ID] == "" {
				ours = append(ours, c)
			}
		}
		sort.Slice(ours, func(i, j int) bool { return containerName(ours[i]) < containerName(ours[j]) })
		reason := joinDiffs(diffs)
		if len(ours) > 0 {
			reason += "; first removes " + strings.Join(containerNames(ours), ", ")
		}
		for _, c := range ours {
			gone[c.ID] = "network " + n.Name + " is recreated"
		}
		pl.Ops = append(pl.Ops, Op{Kind: OpNetworkRecreate, Target: n.Name, Reason: reason, x: opData{net: n, netKey: key, remove: ours}})
	}
	return gone, nil
}

// planVolumes plans the named volumes that are missing.
func (d *Deployer) planVolumes(ctx context.Context, pl *Plan) error {
	p := pl.p
	if len(p.Volumes) == 0 {
		return nil
	}
	list, err := d.engine.VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	have := map[string]bool{}
	for _, v := range list.Volumes {
		have[v.Name] = true
	}
	for _, key := range sortedKeys(p.Volumes) {
		vc := p.Volumes[key]
		if have[vc.Name] {
			continue
		}
		if vc.External {
			return fmt.Errorf("volumes.%s: external volume %s does not exist; create it first", key, vc.Name)
		}
		pl.Ops = append(pl.Ops, Op{Kind: OpVolumeCreate, Target: vc.Name, Reason: "not present", x: opData{netKey: key}})
	}
	return nil
}

// planService plans one service: its rollout proxy, and per container
// create, keep, start, roll, recreate or remove, with the reason.
func (d *Deployer) planService(ctx context.Context, pl *Plan, cs []container.Summary, name string, img imageState, gone map[string]string) error {
	p := pl.p
	s := p.Services[name]
	ro := pl.rollouts[name]
	hash, err := ConfigHash(s)
	if err != nil {
		return err
	}
	pl.hashes[name] = hash
	sp := ServicePlan{Service: name, Image: ImageRef(p.Name, s), Rollout: "recreate", RolloutReason: ro.Why}
	for _, op := range pl.Ops {
		sp.WillBuild = sp.WillBuild || (op.Kind == OpBuild && op.Target == sp.Image)
	}
	existing := serviceContainers(cs, name)
	steps := planContainers(p, s, hash, img, existing, ro, gone)
	if err := d.recreateForDelivery(ctx, s, steps, pl.values, ro, pl.rewritten); err != nil {
		return err
	}
	delivers, err := deliveryNames(s)
	if err != nil {
		return err
	}
	var proxyOp *Op
	direct := false // a container publishes the port itself: the proxy takes it once that one is gone
	if ro.Proxy {
		sp.Rollout = "proxy"
		if proxyOp, err = planProxy(pl, s, ro, cs, gone); err != nil {
			return err
		}
		sp.Proxy = ActionKeep
		if proxyOp != nil {
			sp.Proxy = map[OpKind]Action{OpProxyCreate: ActionCreate, OpProxyRecreate: ActionRecreate, OpProxyStart: ActionStart}[proxyOp.Kind]
			sp.ProxyReason = proxyOp.Reason
		}
		for _, st := range steps {
			if st.c != nil && st.Action == ActionRecreate && st.c.Labels[LabelRollout] != roleProxy && gone[st.c.ID] == "" {
				direct = true
			}
		}
	}
	// Extra containers go first: a leftover of an interrupted roll holds
	// the name a new one needs.
	for _, st := range steps {
		if st.Action == ActionRemove {
			pl.Ops = append(pl.Ops, Op{Kind: OpRemove, Service: name, Target: st.Container, Reason: st.Reason, x: opData{c: *st.c, ofStack: true}})
		}
	}
	if proxyOp != nil && !direct {
		// A new proxy learns the backends that serve now, also those
		// about to roll: they serve until the roll switches.
		for _, st := range steps {
			if (st.Action == ActionKeep || st.Action == ActionRename || st.Action == ActionRoll) && st.c.State == "running" {
				proxyOp.x.kept = append(proxyOp.x.kept, *st.c)
			}
		}
		pl.Ops = append(pl.Ops, *proxyOp)
	}
	for _, st := range steps {
		op := Op{Service: name, Target: st.Container, Reason: st.Reason, If: st.If, Else: st.Else, x: opData{n: st.n}}
		if st.c != nil {
			op.x.c = *st.c
		}
		switch st.Action {
		case ActionKeep, ActionRemove:
			continue
		case ActionRename:
			op.Kind, op.x.name = OpRename, ContainerName(p.Name, s, st.n)
		case ActionStart:
			op.Kind = OpStart
		case ActionCreate:
			op.Kind, op.Delivers = OpCreate, delivers
		case ActionRecreate:
			op.Kind, op.Delivers = OpRecreate, delivers
		case ActionRoll:
			// A name of its own (also the key of its secret delivery), so
			// that no leftover of an earlier roll can collide with it.
			op.Kind, op.Delivers = OpRoll, delivers
			op.x.name = ContainerName(p.Name, s, st.n) + nextNameSuffix + randomHex(3)
		}
		pl.Ops = append(pl.Ops, op)
	}
	if proxyOp != nil && direct {
		pl.Ops = append(pl.Ops, *proxyOp)
	}
	sp.Containers = steps
	for _, st := range steps {
		if actionWeight[st.Action] > actionWeight[sp.Action] {
			sp.Action = st.Action
		}
	}
	if sp.Action == "" {
		sp.Action = ActionKeep
	}
	pl.Services = append(pl.Services, sp)
	return nil
}

// planProxy plans a service's rollout proxy: nil when it is current and
// running. A proxy whose settings changed (another published port) is
// recreated: the one change that interrupts clients.
func planProxy(pl *Plan, s types.ServiceConfig, ro rollout, cs []container.Summary, gone map[string]string) (*Op, error) {
	spec, err := proxySpec(pl.p, s, ro, "")
	if err != nil {
		return nil, err
	}
	op := &Op{Kind: OpProxyCreate, Service: s.Name, Target: spec.Name, Reason: "it holds the service's name on the stack network"}
	if ro.Publish {
		op.Reason = "it takes over the published port and the service's name"
	}
	ps, ok := findProxy(cs, s.Name, spec.Config.Labels[LabelProxyHash])
	if ok && gone[ps.ID] == "" {
		pl.proxyIDs[s.Name] = ps.ID
	}
	switch {
	case !ok:
	case gone[ps.ID] != "":
		op.Reason = gone[ps.ID]
	case !ps.Naming:
		op.Kind, op.Reason, op.x.proxy = OpProxyRecreate, "it takes over the service's name from the service's containers: clients are interrupted once", ps.ID
	case !ps.Current:
		op.Kind, op.Reason, op.x.proxy = OpProxyRecreate, "its published port, networks or settings changed: clients are interrupted once", ps.ID
	case !ps.Running:
		op.Kind, op.Reason, op.x.proxy = OpProxyStart, "was stopped", ps.ID
	default:
		return nil, nil
	}
	return op, nil
}

// serviceContainers are a service's containers among a project's (not the
// rollout proxy), in the order of their numbers.
func serviceContainers(cs []container.Summary, service string) []container.Summary {
	var out []container.Summary
	for _, c := range cs {
		if c.Labels[LabelService] == service && c.Labels[LabelRole] == "" {
			out = append(out, c)
		}
	}
	return out
}

// planContainers decides, for each container a service should have,
// whether to create, keep (start if stopped), roll or recreate it, and
// which extra ones to remove. A changed container of a service behind the
// rollout proxy is rolled; one that still publishes the port itself is
// recreated once (its port moves to the proxy). When a planned pull or
// build may change the image, an otherwise unchanged container is rolled or
// recreated only if it does (If), else kept or started (Else).
func planContainers(p *types.Project, s types.ServiceConfig, hash string, img imageState, existing []container.Summary, ro rollout, gone map[string]string) []Step {
	byNumber := map[int]container.Summary{}
	var extra []container.Summary
	for _, c := range existing {
		n, err := strconv.Atoi(c.Labels[LabelContainerNumber])
		if err != nil || n < 1 {
			extra = append(extra, c)
			continue
		}
		if prev, dup := byNumber[n]; dup {
			// The container under the service's own name wins; a leftover
			// of an interrupted roll (<name>-next) goes.
			if containerName(c) == ContainerName(p.Name, s, n) {
				extra = append(extra, prev)
				byNumber[n] = c
			} else {
				extra = append(extra, c)
			}
			continue
		}
		byNumber[n] = c
	}
	var steps []Step
	for n := 1; n <= s.GetScale(); n++ {
		name := ContainerName(p.Name, s, n)
		c, ok := byNumber[n]
		delete(byNumber, n)
		if !ok {
			steps = append(steps, Step{Service: s.Name, Container: name, Action: ActionCreate, n: n})
			continue
		}
		st := Step{Service: s.Name, Container: containerName(c), c: &c, n: n}
		switch {
		case gone[c.ID] != "":
			st.Action, st.Reason = ActionRecreate, gone[c.ID]
		case c.Labels[LabelConfigHash] != hash:
			changedStep(&st, ro, "configuration changed")
		case img.unknown == "" && img.id != "" && c.ImageID != img.id:
			changedStep(&st, ro, "image changed")
		case ro.Proxy && c.Labels[LabelRollout] != roleProxy:
			changedStep(&st, ro, "serves its port and answers its name itself")
		case ro.Proxy && holdsServiceName(c):
			changedStep(&st, ro, "answers the service's name on the stack network itself (made before the rollout proxy held it)")
		default:
			st.Action = unchanged(c, name, &st)
			if img.unknown != "" {
				st.Else, st.If = st.Action, img.unknown
				changedStep(&st, ro, img.reason)
			}
		}
		steps = append(steps, st)
	}
	for _, c := range byNumber {
		extra = append(extra, c)
	}
	sort.Slice(extra, func(i, j int) bool { return containerName(extra[i]) < containerName(extra[j]) })
	for _, c := range extra {
		steps = append(steps, Step{Service: s.Name, Container: containerName(c), Action: ActionRemove, Reason: "beyond scale", c: &c})
	}
	return steps
}

// unchanged is what happens to an unchanged container: kept, started when
// stopped, renamed when a roll's rename failed.
func unchanged(c container.Summary, want string, st *Step) Action {
	switch {
	case c.State != "running":
		st.Reason = "was " + c.State
		return ActionStart
	case containerName(c) != want:
		st.Reason = "a roll left it under another name"
		return ActionRename
	}
	return ActionKeep
}

// changedStep makes st a roll or a recreate for why.
func changedStep(st *Step, ro rollout, why string) {
	st.Action, st.Reason = ActionRecreate, why
	switch {
	case ro.Proxy && st.c.Labels[LabelRollout] == roleProxy && st.c.State == "running":
		st.Action = ActionRoll
	case ro.Proxy:
		st.Reason += "; its port and name move to the rollout proxy"
	default:
		st.Reason += "; " + ro.Why
	}
}

// recreateForDelivery turns keep and start steps (also conditional ones)
// into recreates or rolls when the container's delivered secrets or
// configs changed (see deliveredChange); the rewritten container's copies
// are made current in place first.
func (d *Deployer) recreateForDelivery(ctx context.Context, s types.ServiceConfig, steps []Step, values map[string][]byte, ro rollout, rewritten string) error {
	for i := range steps {
		st := &steps[i]
		base := st.Action
		if st.If != "" {
			base = st.Else
		}
		if st.c == nil || st.c.ID == rewritten || (base != ActionKeep && base != ActionStart && base != ActionRename) {
			continue
		}
		why, err := d.deliveredChange(ctx, *st.c, s, values)
		if err != nil {
			return err
		}
		if why == "" {
			continue
		}
		st.If, st.Else, st.Action, st.Reason = "", "", ActionRecreate, why
		if ro.Proxy && st.c.Labels[LabelRollout] == roleProxy && st.c.State == "running" {
			st.Action = ActionRoll
		}
	}
	return nil
}

// deliveryNames are the secrets and configs a service's containers receive,
// in words ("secret db_password").
func deliveryNames(s types.ServiceConfig) ([]string, error) {
	files, err := deliveryFiles(s)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, f.Kind+" "+f.Name)
	}
	return out, nil
}
