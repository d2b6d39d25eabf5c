package deployer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/internal/version"
)

// UpOptions control Up.
type UpOptions struct {
	// Build rebuilds images that have a build section even when present.
	Build bool
	// WaitTimeout bounds the wait for dependencies and health; 0 means 3 min.
	WaitTimeout time.Duration
	// Remote means the engine is on another host (see CheckOptions.Remote).
	Remote bool
	// ConfigDir holds generated secrets; "" means ConfigDir(project).
	ConfigDir string
	// Getenv is passed to Build; nil means os.Getenv.
	Getenv func(string) string
	// Lock takes the project's deploy lock (see Deployer.Lock) once
	// preflight passed, for the rest of Up: a held lock fails with
	// ErrLocked (exit 5) before anything is built or changed.
	Lock bool
	// RemoveOrphans removes the containers of services the stack no longer
	// has (else up warns and names them).
	RemoveOrphans bool
	// RecordCommand, when set, records a successful Up as the project's
	// next release (see Releases) under that command name ("up").
	RecordCommand string
	// ProxyBinary is the rollout proxy's executable (see EnsureProxyImage);
	// "" means no proxy: every changed container is recreated in place.
	ProxyBinary string
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
)

// Step is one container's part of a plan.
type Step struct {
	Service   string `json:"service"`
	Container string `json:"container"`
	Action    Action `json:"action"`
	// Reason says why a container is recreated.
	Reason string `json:"reason,omitempty"`
}

// UpResult is what Up did.
type UpResult struct {
	Steps []Step
	// Report is the preflight report (warnings).
	Report *Report
	// Elapsed is the wall time of Up.
	Elapsed time.Duration
	// Release is the release this Up recorded (nil: none).
	Release *Release
	// Ready says, per service, when it became ready and who saw it first.
	Ready []Readiness
	// Switches are the rollout proxies' switches.
	Switches []Switch
}

// Changed reports whether Up created, recreated, started or removed anything.
func (r *UpResult) Changed() bool {
	for _, s := range r.Steps {
		if s.Action != ActionKeep {
			return true
		}
	}
	return false
}

// Up deploys a stack: preflight (refusal: nothing created, ErrPreflight),
// build of missing images, networks and volumes, then each service in
// dependency order once its dependencies meet their depends_on condition;
// an unchanged container is left running untouched, a changed one recreated.
// It returns when every container is running and every healthcheck healthy
// (a container without a healthcheck that exited 0 is completed), or with
// ErrUnhealthy and the failing container's last 20 log lines. While it waits
// for health it also runs each healthcheck itself (see probe.go).
func (d *Deployer) Up(ctx context.Context, st *Stack, o UpOptions) (*UpResult, error) {
	start := time.Now()
	res := &UpResult{}
	timeout := o.WaitTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	for _, w := range st.Warnings {
		d.out.Event("warning: %s", w)
	}
	rep, err := d.Check(ctx, st, CheckOptions{Remote: o.Remote, ConfigDir: o.ConfigDir, Build: o.Build})
	res.Report = rep
	for _, w := range rep.Warnings[len(st.Warnings):] {
		d.out.Event("warning: %s", w)
	}
	if err != nil {
		return res, err
	}
	if state, err := StateDir(); err == nil {
		if dir := o.ConfigDir; dir != "" {
			d.delivered = loadDeliveryRecord(dir, state)
		} else if dir, err := ConfigDir(st.Project.Name); err == nil {
			d.delivered = loadDeliveryRecord(dir, state)
		}
	}
	defer d.saveDeliveryRecord(ctx, st.Project.Name)
	if o.Lock {
		// A held lock refuses at once (exit 5); the lock itself is taken
		// before the first change, so an up with nothing to change only
		// reads (see fencedEngine).
		if err := d.lockFree(ctx, st.Project.Name); err != nil {
			return res, err
		}
		orig := d
		var f *fencedEngine
		d, f = d.fenced(func() (*Lock, error) { return orig.Lock(ctx, st.Project.Name, LockOptions{Command: "up"}) }, nil)
		defer func() {
			if l := f.held(); l != nil {
				l.Unlock(ctx)
			}
		}()
	}
	p := st.Project
	if err := d.pullMissing(ctx, p); err != nil {
		return res, err
	}
	if err := d.refreshImages(ctx, p); err != nil {
		return res, err
	}
	orphans, err := d.orphans(ctx, p, o.RemoveOrphans)
	res.Steps = append(res.Steps, orphans...)
	if err != nil {
		return res, err
	}

	// Secret (generated on first use, or taken from the running
	// containers when another machine generated it) and config values;
	// never printed.
	if err := d.adoptSecrets(ctx, p, o.ConfigDir); err != nil {
		return res, err
	}
	values, err := deliveryValues(p, o.ConfigDir)
	if err != nil {
		return res, err
	}

	// Images: build what has a build section and is missing (or --build).
	order, err := dependencyOrder(p)
	if err != nil {
		return res, err
	}
	imageIDs := map[string]string{}
	for _, name := range order {
		s := p.Services[name]
		ref := ImageRef(p.Name, s)
		id, err := d.imageID(ctx, ref)
		if err != nil {
			return res, err
		}
		if s.Build != nil && (id == "" || o.Build || (s.PullPolicy == types.PullPolicyBuild && !o.Remote)) {
			if _, err := d.buildService(ctx, p, s, BuildOptions{Getenv: o.Getenv}); err != nil {
				return res, err
			}
			if id, err = d.imageID(ctx, ref); err != nil {
				return res, err
			}
		}
		if id == "" {
			return res, fmt.Errorf("image %s of services.%s is not present after preflight", ref, name)
		}
		imageIDs[name] = id
	}

	if err := d.ensureNetworks(ctx, p); err != nil {
		return res, err
	}
	if err := d.ensureVolumes(ctx, p); err != nil {
		return res, err
	}

	// Create every container first (in dependency order), so that creating
	// one never waits on another's health; then start each service once its
	// dependencies meet their condition. A service without dependencies
	// starts as soon as it is created; a rolled one when the others start.
	deadline := time.Now().Add(timeout)
	rd := newReadiness(ctx, probing(d.engine), start)
	defer rd.stop()
	rollouts, proxyImage, err := d.rollouts(ctx, p, order, o.ProxyBinary)
	if err != nil {
		return res, err
	}
	if proxyImage != "" && o.RecordCommand != "" {
		// The proxies name the release this up is about to record.
		next, rev := 1, gitRevision(p.WorkingDir)
		if rels, err := d.Releases(ctx, p.Name); err == nil && len(rels) > 0 {
			next = rels[0].Number + 1
		}
		for name, ro := range rollouts {
			ro.Release, ro.Revision, ro.Project = next, rev, p.Name
			rollouts[name] = ro
		}
	}
	pending := map[string][]pendingStart{}
	for _, name := range order {
		s := p.Services[name]
		ro := rollouts[name]
		steps, starts, err := d.prepare(ctx, p, s, imageIDs[name], values, ro, proxyImage)
		res.Steps = append(res.Steps, steps...)
		if err != nil {
			return res, err
		}
		if len(s.DependsOn) == 0 && !ro.Proxy {
			if err := d.startAll(ctx, rd, p.Name, starts, deadline, res); err != nil {
				return res, err
			}
			continue
		}
		pending[name] = starts
	}
	for _, name := range order {
		if len(pending[name]) == 0 {
			continue
		}
		if err := d.waitDependencies(ctx, rd, p, p.Services[name], deadline); err != nil {
			return res, err
		}
		if err := d.startAll(ctx, rd, p.Name, pending[name], deadline, res); err != nil {
			return res, err
		}
	}
	if err := d.waitHealthy(ctx, rd, p, order, deadline); err != nil {
		return res, err
	}
	res.Ready = rd.results()
	if o.RecordCommand != "" && res.Changed() { // a no-op up has nothing new to record
		rel, err := d.recordRelease(ctx, p, imageIDs, o.RecordCommand)
		if err != nil {
			d.out.Event("warning: the stack is up but its release was not recorded: %v", err)
		}
		res.Release = rel
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// saveDeliveryRecord writes this machine's delivery record, forgetting the
// containers of the project that are gone; failing to is only a warning (the
// next up reads the values back instead).
func (d *Deployer) saveDeliveryRecord(ctx context.Context, project string) {
	if d.delivered == nil {
		return
	}
	live := map[string]bool{}
	cs, err := d.projectContainers(context.WithoutCancel(ctx), project)
	if err != nil {
		live = nil
	}
	for _, c := range cs {
		live[c.ID] = true
	}
	if err := d.delivered.save(live); err != nil {
		d.out.Event("warning: keep the delivery record: %v", err)
	}
	d.delivered = nil
}

// rollouts decides how each service's changes are applied and, when one
// is rolled, makes the proxy's image present. A proxy binary that cannot
// run there is a warning: those services are recreated in place.
func (d *Deployer) rollouts(ctx context.Context, p *types.Project, order []string, proxyBinary string) (map[string]rollout, string, error) {
	out := map[string]rollout{}
	need := false
	for _, name := range order {
		ro, err := rolloutOf(p.Services[name], proxyBinary != "")
		if err != nil {
			return nil, "", err
		}
		out[name] = ro
		need = need || ro.Proxy
	}
	if !need {
		return out, "", nil
	}
	image, err := d.EnsureProxyImage(ctx, proxyBinary)
	if err == nil {
		return out, image, nil
	}
	d.out.Event("warning: %v; services that would roll are recreated in place", err)
	for _, name := range order {
		if out[name].Proxy {
			out[name], _ = rolloutOf(p.Services[name], false)
		}
	}
	return out, "", nil
}

// dependencyOrder sorts services by level, then within a level in the
// order the compose files list them (docker-compose's order; by name when
// that is unknown): a service's level is one more than its deepest
// dependency's (0 without dependencies), so every service comes after what
// it depends on and the order is the same on every run. A cycle is an error.
func dependencyOrder(p *types.Project) ([]string, error) {
	level := map[string]int{}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) (int, error)
	visit = func(name string, path []string) (int, error) {
		switch state[name] {
		case 1:
			return 0, fmt.Errorf("services: depends_on cycle %s", strings.Join(append(path, name), " -> "))
		case 2:
			return level[name], nil
		}
		state[name] = 1
		deps := make([]string, 0, len(p.Services[name].DependsOn))
		for dep := range p.Services[name].DependsOn {
			if _, ok := p.Services[dep]; ok { // else an optional dependency that is not enabled
				deps = append(deps, dep)
			}
		}
		sort.Strings(deps)
		for _, dep := range deps {
			l, err := visit(dep, append(path, name))
			if err != nil {
				return 0, err
			}
			level[name] = max(level[name], l+1)
		}
		state[name] = 2
		return level[name], nil
	}
	names := p.ServiceNames()
	sort.Strings(names)
	for _, n := range names {
		if _, err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	pos := fileOrderIndex(p)
	at := func(n string) int {
		if i, ok := pos[n]; ok {
			return i
		}
		return len(pos) + 1
	}
	sort.SliceStable(names, func(i, j int) bool {
		if level[names[i]] != level[names[j]] {
			return level[names[i]] < level[names[j]]
		}
		return at(names[i]) < at(names[j]) // names already sorted: the tie-break
	})
	return names, nil
}

func (d *Deployer) ensureNetworks(ctx context.Context, p *types.Project) error {
	if err := d.recreateChangedNetworks(ctx, p); err != nil {
		return err
	}
	for _, key := range usedNetworks(p) {
		nc := p.Networks[key]
		_, exists, err := d.existingNetwork(ctx, nc.Name)
		if err != nil {
			return err
		}
		if exists {
			continue
		}
		if nc.External {
			return fmt.Errorf("networks.%s: external network %s does not exist; create it first", key, nc.Name)
		}
		if _, err := d.engine.NetworkCreate(ctx, nc.Name, networkCreateOptions(p, key, nc)); err != nil {
			return fmt.Errorf("create network %s: %w", nc.Name, err)
		}
		d.out.Event("Network %s created", nc.Name)
	}
	return nil
}

func (d *Deployer) ensureVolumes(ctx context.Context, p *types.Project) error {
	names := make([]string, 0, len(p.Volumes))
	for k := range p.Volumes {
		names = append(names, k)
	}
	sort.Strings(names)
	list, err := d.engine.VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	have := map[string]bool{}
	for _, v := range list.Volumes {
		have[v.Name] = true
	}
	for _, key := range names {
		vc := p.Volumes[key]
		if have[vc.Name] {
			continue
		}
		if vc.External {
			return fmt.Errorf("volumes.%s: external volume %s does not exist; create it first", key, vc.Name)
		}
		labels := map[string]string{LabelProject: p.Name, LabelVolume: key, LabelManagedBy: "invdeploy", LabelVersion: version.Version}
		for k, v := range vc.Labels {
			labels[k] = v
		}
		if _, err := d.engine.VolumeCreate(ctx, volume.CreateOptions{Name: vc.Name, Driver: vc.Driver, DriverOpts: vc.DriverOpts, Labels: labels}); err != nil {
			return fmt.Errorf("create volume %s: %w", vc.Name, err)
		}
		d.out.Event("Volume %s created", vc.Name)
	}
	return nil
}

// plan decides, for each container a service should have, whether to create,
// keep (start if stopped), roll or recreate it, and which extra ones to
// remove. A changed container of a service behind the rollout proxy is
// rolled; one that still publishes the port itself is recreated once (its
// port moves to the proxy).
func plan(p *types.Project, s types.ServiceConfig, hash, imageID string, existing []container.Summary, ro rollout) []Step {
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
	scale := s.GetScale()
	var steps []Step
	changed := func(c container.Summary, why string) Step {
		st := Step{Service: s.Name, Container: containerName(c), Action: ActionRecreate, Reason: why}
		switch {
		case ro.Proxy && c.Labels[LabelRollout] == roleProxy && c.State == "running":
			st.Action = ActionRoll
		case ro.Proxy:
			st.Reason += "; its port moves behind the rollout proxy"
		default:
			st.Reason += "; " + ro.Why
		}
		return st
	}
	for n := 1; n <= scale; n++ {
		name := ContainerName(p.Name, s, n)
		c, ok := byNumber[n]
		delete(byNumber, n)
		switch {
		case !ok:
			steps = append(steps, Step{Service: s.Name, Container: name, Action: ActionCreate})
		case c.Labels[LabelConfigHash] != hash:
			steps = append(steps, changed(c, "configuration changed"))
		case imageID != "" && c.ImageID != imageID:
			steps = append(steps, changed(c, "image changed"))
		case ro.Proxy && c.Labels[LabelRollout] != roleProxy:
			steps = append(steps, changed(c, "publishes its port itself"))
		case c.State != "running":
			steps = append(steps, Step{Service: s.Name, Container: containerName(c), Action: ActionStart, Reason: "was " + c.State})
		default:
			steps = append(steps, Step{Service: s.Name, Container: containerName(c), Action: ActionKeep})
		}
	}
	for _, c := range byNumber {
		extra = append(extra, c)
	}
	sort.Slice(extra, func(i, j int) bool { return containerName(extra[i]) < containerName(extra[j]) })
	for _, c := range extra {
		steps = append(steps, Step{Service: s.Name, Container: containerName(c), Action: ActionRemove, Reason: "beyond scale"})
	}
	return steps
}

// pendingStart is a container prepare left created but not started (or,
// behind the proxy, not yet switched to).
type pendingStart struct {
	id, name, verb string
	// proxy is set for a service behind the rollout proxy: start, wait
	// until ready, switch the proxy to it, then retire old.
	proxy *proxyWork
}

type proxyWork struct {
	ro        rollout
	proxyID   string
	alias     string
	started   bool   // the container runs already (kept): only the switch
	oldID     string // the container that serves until the switch ("" none)
	oldName   string
	oldKey    string // its delivery key
	canonical string // the name the new container takes once it serves
	service   types.ServiceConfig
}

// prepare carries out a service's plan up to start: it removes what goes
// away, creates new containers with their networks and secrets, and returns
// the containers to start.
func (d *Deployer) prepare(ctx context.Context, p *types.Project, s types.ServiceConfig, imageID string, secrets map[string][]byte, ro rollout, proxyImage string) ([]Step, []pendingStart, error) {
	hash, err := ConfigHash(s)
	if err != nil {
		return nil, nil, err
	}
	existing, err := d.projectContainers(ctx, p.Name, s.Name)
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]container.Summary{}
	for _, c := range existing {
		byName[containerName(c)] = c
	}
	steps := plan(p, s, hash, imageID, existing, ro)
	if err := d.recreateForDelivery(ctx, s, steps, existing, secrets, ro); err != nil {
		return nil, nil, err
	}
	// Extra containers go first: a leftover of an interrupted roll holds
	// the name a new one needs.
	for _, st := range steps {
		if st.Action == ActionRemove {
			c := byName[st.Container]
			if err := d.removeContainer(ctx, c.ID, deliveryKey(c), s); err != nil {
				return steps, nil, err
			}
			d.out.Event("Container %s removed (%s)", st.Container, st.Reason)
		}
	}
	var proxyID string
	var fresh bool
	if ro.Proxy {
		// The proxy takes the port from a container that publishes it
		// itself only once that one is gone (recreate below).
		direct := false
		for _, st := range steps {
			if c, ok := byName[st.Container]; ok && st.Action == ActionRecreate && c.Labels[LabelRollout] != roleProxy {
				direct = true
			}
		}
		if !direct {
			if proxyID, fresh, err = d.ensureProxy(ctx, p, s, ro, proxyImage); err != nil {
				return steps, nil, err
			}
		}
	}
	var starts []pendingStart
	n := 0
	for _, st := range steps {
		c := byName[st.Container]
		switch st.Action {
		case ActionKeep:
			n++
			d.out.Event("Container %s unchanged", st.Container)
			if want := ContainerName(p.Name, s, n); st.Container != want {
				// A rolled container whose rename failed gets its name now.
				if err := d.engine.ContainerRename(ctx, c.ID, want); err == nil {
					d.out.Event("Container %s renamed %s", st.Container, want)
				}
			}
			if ro.Proxy && fresh {
				// A proxy that was (re)created or started learns its
				// backend again (no release is named: none is recorded).
				kept := ro
				kept.Release = 0
				starts = append(starts, pendingStart{id: c.ID, name: st.Container, verb: "unchanged",
					proxy: &proxyWork{ro: kept, proxyID: proxyID, alias: c.Labels[LabelBackend], started: true, service: s}})
			}
		case ActionStart:
			n++
			ps := pendingStart{id: c.ID, name: st.Container, verb: "started (" + st.Reason + ")"}
			if ro.Proxy {
				ps.proxy = &proxyWork{ro: ro, proxyID: proxyID, alias: c.Labels[LabelBackend], service: s}
			}
			starts = append(starts, ps)
		case ActionRoll:
			n++
			d.out.Event("Rolling %s (%s): a new container starts beside it", st.Container, st.Reason)
			// A name of its own (also the key of its secret delivery), so
			// that no leftover of an earlier roll can collide with it.
			id, name, alias, err := d.create(ctx, p, s, n, hash, secrets, ro, ContainerName(p.Name, s, n)+nextNameSuffix+randomHex(3))
			if err != nil {
				return steps, starts, err
			}
			starts = append(starts, pendingStart{id: id, name: name, verb: "rolled (" + st.Reason + ")",
				proxy: &proxyWork{ro: ro, proxyID: proxyID, alias: alias, oldID: c.ID, oldName: st.Container,
					oldKey: deliveryKey(c), canonical: ContainerName(p.Name, s, n), service: s}})
		case ActionRecreate, ActionCreate:
			n++
			verb := "created and started"
			if st.Action == ActionRecreate {
				d.out.Event("Recreating %s in place (%s): it stops before its successor starts", st.Container, st.Reason)
				if err := d.removeContainer(ctx, c.ID, deliveryKey(c), s); err != nil {
					return steps, starts, err
				}
				verb = "recreated (" + st.Reason + ")"
			}
			if ro.Proxy && proxyID == "" {
				if proxyID, _, err = d.ensureProxy(ctx, p, s, ro, proxyImage); err != nil {
					return steps, starts, err
				}
			}
			id, name, alias, err := d.create(ctx, p, s, n, hash, secrets, ro, "")
			if err != nil {
				return steps, starts, err
			}
			ps := pendingStart{id: id, name: name, verb: verb}
			if ro.Proxy {
				ps.proxy = &proxyWork{ro: ro, proxyID: proxyID, alias: alias, service: s}
			}
			starts = append(starts, ps)
		}
	}
	return steps, starts, nil
}

// startAll starts prepared containers; one behind the rollout proxy is
// started, waited for and switched to (see roll).
func (d *Deployer) startAll(ctx context.Context, rd *readiness, project string, starts []pendingStart, deadline time.Time, res *UpResult) error {
	for _, ps := range starts {
		if ps.proxy != nil {
			sw, err := d.roll(ctx, rd, project, ps, deadline)
			if err != nil {
				return err
			}
			if sw != nil {
				res.Switches = append(res.Switches, *sw)
			}
			continue
		}
		if err := d.engine.ContainerStart(ctx, ps.id, container.StartOptions{}); err != nil {
			return fmt.Errorf("start %s: %w", ps.name, err)
		}
		d.out.Event("Container %s %s", ps.name, ps.verb)
	}
	return nil
}

// roll starts a container behind the proxy, waits until it is ready (its
// healthcheck, with invdeploy's own probes), has the proxy switch to it
// (the proxy checks the health path through its own network path first),
// then stops and removes the container it replaces and gives the new one
// the service's name. Until the switch the old container serves; on any
// failure the new one is removed and the old one keeps serving (exit 4).
func (d *Deployer) roll(ctx context.Context, rd *readiness, project string, ps pendingStart, deadline time.Time) (*Switch, error) {
	w := ps.proxy
	fail := func(err error) (*Switch, error) {
		if w.oldID == "" || w.started {
			return nil, err
		}
		// Automatic rollback: the old container never stopped serving.
		rmErr := d.removeContainer(context.WithoutCancel(ctx), ps.id, ps.name, w.service)
		d.out.Event("Container %s removed: the rollout failed, %s keeps serving", ps.name, w.oldName)
		var ue *UnhealthyError
		if errors.As(err, &ue) {
			ue.Reason += "; rolled back: " + w.oldName + " keeps serving"
			if rmErr != nil {
				ue.Reason += " (removing " + ps.name + " failed: " + rmErr.Error() + ")"
			}
			return nil, ue
		}
		return nil, &UnhealthyError{Container: ps.name, Service: w.service.Name, Reason: err.Error() + "; rolled back: " + w.oldName + " keeps serving", Logs: d.lastLogs(ctx, ps.id)}
	}
	if !w.started {
		if err := d.engine.ContainerStart(ctx, ps.id, container.StartOptions{}); err != nil {
			return fail(fmt.Errorf("start %s: %w", ps.name, err))
		}
		if w.oldID == "" {
			d.out.Event("Container %s %s", ps.name, ps.verb)
		} else {
			d.out.Event("Container %s started beside %s", ps.name, w.oldName)
		}
	}
	if err := d.waitContainers(ctx, rd, project, w.service.Name, []string{ps.id}, condFinal, deadline, ""); err != nil {
		return fail(err)
	}
	if w.alias == "" {
		// A kept container from before aliases: the proxy finds it by the
		// service's alias (it is the only one).
		w.alias = w.service.Name
	}
	target := w.alias + ":" + strconv.Itoa(int(w.ro.Port.Target))
	remaining := max(time.Until(deadline), 5*time.Second)
	sw, err := d.proxyDeploy(ctx, w.proxyID, w.service.Name, target, w.ro, remaining)
	if err != nil {
		return fail(err)
	}
	out := &Switch{Service: w.service.Name, Container: ps.name, Target: target, Previous: sw.Previous, Drained: sw.Drained,
		HealthySeconds: time.Duration(sw.HealthyAfter).Seconds(), DrainSeconds: time.Duration(sw.DrainedAfter).Seconds()}
	if w.started {
		return nil, nil
	}
	if w.oldID != "" {
		drained := "drained"
		if !sw.Drained {
			drained = "drain timeout " + w.ro.DrainTimeout.String() + " passed with requests in flight"
		}
		d.out.Event("Proxy %s switched to %s (%s)", ProxyName(project, w.service.Name), ps.name, drained)
		if err := d.removeContainer(ctx, w.oldID, w.oldKey, w.service); err != nil {
			// The new container serves: the deploy stands; say what is left.
			d.out.Event("warning: %s no longer serves, but removing it failed: %v", w.oldName, err)
		} else {
			d.out.Event("Container %s stopped and removed", w.oldName)
		}
		if err := d.engine.ContainerRename(ctx, ps.id, w.canonical); err != nil {
			d.out.Event("warning: rename %s to %s: %v", ps.name, w.canonical, err)
		} else {
			out.Container = w.canonical
			d.out.Event("Container %s %s", w.canonical, ps.verb)
		}
		return out, nil
	}
	d.out.Event("Proxy %s serves %s", ProxyName(project, w.service.Name), ps.name)
	return out, nil
}

// Switch is one switch of a rollout proxy during up.
type Switch struct {
	Service        string  `json:"service"`
	Container      string  `json:"container"`
	Target         string  `json:"target"`
	Previous       string  `json:"previous,omitempty"`
	Drained        bool    `json:"drained"`
	HealthySeconds float64 `json:"healthy_seconds"`
	DrainSeconds   float64 `json:"drain_seconds"`
}

// deliveryKey names the secret-delivery volumes of a container.
func deliveryKey(c container.Summary) string {
	if k := c.Labels[LabelDeliveryKey]; k != "" {
		return k
	}
	return containerName(c)
}

// removeContainer stops and removes a container of s and its secret
// delivery (key: see deliveryKey).
func (d *Deployer) removeContainer(ctx context.Context, id, key string, s types.ServiceConfig) error {
	name := key
	var timeout *int
	if s.StopGracePeriod != nil {
		t := int(time.Duration(*s.StopGracePeriod).Seconds())
		timeout = &t
	}
	if err := d.engine.ContainerStop(ctx, id, container.StopOptions{Timeout: timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	// RemoveVolumes removes anonymous volumes only, never named volumes.
	if err := d.engine.ContainerRemove(ctx, id, container.RemoveOptions{RemoveVolumes: true, Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return d.removeDelivery(ctx, name)
}

// create delivers the secrets and configs of container n of a service,
// creates it (under name when set) and joins its further networks; the
// container is not started. Behind the rollout proxy it publishes no port
// and gets a unique alias, returned.
func (d *Deployer) create(ctx context.Context, p *types.Project, s types.ServiceConfig, n int, hash string, secrets map[string][]byte, ro rollout, name string) (id, cname, alias string, err error) {
	spec, err := convert(p, s, n, hash)
	if err != nil {
		return "", "", "", err
	}
	if name != "" {
		spec.Name = name
		spec.Config.Labels[LabelDeliveryKey] = name
	}
	if ro.Proxy {
		if alias, err = backendSpec(spec, s, ro); err != nil {
			return "", "", "", err
		}
	}
	undo, err := d.prepareDelivery(ctx, p, s, spec, secrets)
	if err != nil {
		undo()
		return "", "", "", err
	}
	created, err := d.engine.ContainerCreate(ctx, spec.Config, spec.Host, spec.Network, nil, spec.Name)
	if err != nil {
		undo()
		return "", "", "", fmt.Errorf("create %s: %w", spec.Name, err)
	}
	if files, err := deliveryFiles(s); err == nil && len(files) > 0 {
		d.delivered.remember(created.ID, files, secrets)
	}
	cleanup := func(cause error) (string, string, string, error) {
		_ = d.engine.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{RemoveVolumes: true, Force: true})
		undo()
		return "", "", "", cause
	}
	netNames := make([]string, 0, len(spec.Connect))
	for k := range spec.Connect {
		netNames = append(netNames, k)
	}
	sort.Strings(netNames)
	for _, nn := range netNames {
		if err := d.engine.NetworkConnect(ctx, nn, created.ID, spec.Connect[nn]); err != nil {
			return cleanup(fmt.Errorf("connect %s to network %s: %w", spec.Name, nn, err))
		}
	}
	return created.ID, spec.Name, alias, nil
}

// containerState is what the health wait needs of a container.
type containerState struct {
	Name     string
	Service  string
	ID       string
	Status   string // created, running, exited, ...
	ExitCode int
	Health   string // "" when the container has no healthcheck
	Restart  bool   // a restart policy may bring it back
	LastLog  string // last healthcheck output
	// Probe is the container's healthcheck as invdeploy runs it; nil when
	// it has none.
	Probe *healthProbe
	// Probed: invdeploy's own run of the healthcheck passed.
	Probed bool
}

func (d *Deployer) serviceStates(ctx context.Context, project, service string) ([]containerState, error) {
	cs, err := d.projectContainers(ctx, project, service)
	if err != nil {
		return nil, err
	}
	out := make([]containerState, 0, len(cs))
	for _, c := range cs {
		ins, err := d.engine.ContainerInspect(ctx, c.ID)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("inspect %s: %w", containerName(c), err)
		}
		st := containerState{Name: containerName(c), Service: service, ID: c.ID}
		if hp, ok := probeOf(ins.Config); ok {
			st.Probe = &hp
		}
		if ins.State != nil {
			st.Status = ins.State.Status
			st.ExitCode = ins.State.ExitCode
			if ins.State.Health != nil {
				st.Health = ins.State.Health.Status
				if l := ins.State.Health.Log; len(l) > 0 {
					st.LastLog = strings.TrimSpace(l[len(l)-1].Output)
				}
			}
		}
		if ins.HostConfig != nil {
			rp := ins.HostConfig.RestartPolicy
			st.Restart = rp.Name == container.RestartPolicyAlways || rp.Name == container.RestartPolicyUnlessStopped ||
				(rp.Name == container.RestartPolicyOnFailure && st.ExitCode != 0 && (rp.MaximumRetryCount == 0 || ins.RestartCount < rp.MaximumRetryCount))
		}
		out = append(out, st)
	}
	return out, nil
}

// condFinal is the condition of up's final wait: running, healthy where
// there is a healthcheck, or completed (exited 0) where there is none.
const condFinal = "final"

// completed reports whether a container is a one-shot that ran to success:
// it exited 0 and no restart policy brings it back.
func completed(st containerState) bool {
	return st.Status == "exited" && st.ExitCode == 0 && !st.Restart
}

// ready reports whether a container meets cond; failed means it never will.
func ready(st containerState, cond string) (ok, failed bool, why string) {
	// Healthy is the engine's word, or a passing probe the engine has not
	// contradicted: only the engine decides unhealthy.
	healthy := st.Status == "running" && (st.Health == "healthy" || (st.Probed && st.Health != "unhealthy"))
	switch cond {
	case types.ServiceConditionCompletedSuccessfully:
		if st.Status == "exited" {
			if st.ExitCode == 0 {
				return true, false, ""
			}
			return false, true, fmt.Sprintf("exited with code %d", st.ExitCode)
		}
		return false, false, st.Status
	case types.ServiceConditionHealthy:
		if st.Health == "" {
			if st.Status == "running" {
				return false, true, "has no healthcheck (depends_on condition service_healthy)"
			}
		}
		if healthy {
			return true, false, ""
		}
	case types.ServiceConditionStarted:
		// A one-shot dependency that already ran to success was started.
		if st.Status == "running" || completed(st) {
			return true, false, ""
		}
	default: // condFinal
		if (st.Status == "running" && st.Health == "") || healthy {
			return true, false, ""
		}
		if completed(st) && st.Probe == nil {
			return true, false, ""
		}
		if completed(st) {
			return false, true, "exited with code 0 before its healthcheck passed (a service with a healthcheck is expected to keep running)"
		}
	}
	if st.Health == "unhealthy" {
		why := "unhealthy"
		if st.LastLog != "" {
			why += ": " + st.LastLog
		}
		return false, true, why
	}
	if (st.Status == "exited" || st.Status == "dead") && !st.Restart {
		return false, true, fmt.Sprintf("exited with code %d", st.ExitCode)
	}
	if st.Health != "" {
		return false, false, st.Health
	}
	return false, false, st.Status
}

func (d *Deployer) waitDependencies(ctx context.Context, rd *readiness, p *types.Project, s types.ServiceConfig, deadline time.Time) error {
	deps := make([]string, 0, len(s.DependsOn))
	for dep := range s.DependsOn {
		if _, ok := p.Services[dep]; ok {
			deps = append(deps, dep)
		}
	}
	sort.Strings(deps)
	for _, dep := range deps {
		cond := s.DependsOn[dep].Condition
		if cond == "" {
			cond = types.ServiceConditionStarted
		}
		if err := d.waitService(ctx, rd, p.Name, dep, cond, deadline, s.Name); err != nil {
			return err
		}
	}
	return nil
}

// waitHealthy waits until every service meets its final condition: running,
// and healthy when it has a healthcheck; a service without one that exited 0
// is completed (one-shot services that others wait for with
// service_completed_successfully must complete).
func (d *Deployer) waitHealthy(ctx context.Context, rd *readiness, p *types.Project, order []string, deadline time.Time) error {
	oneShot := map[string]bool{}
	for _, s := range p.Services {
		for dep, c := range s.DependsOn {
			if c.Condition == types.ServiceConditionCompletedSuccessfully {
				oneShot[dep] = true
			}
		}
	}
	for _, name := range order {
		cond := condFinal
		if oneShot[name] {
			cond = types.ServiceConditionCompletedSuccessfully
		}
		if err := d.waitService(ctx, rd, p.Name, name, cond, deadline, ""); err != nil {
			return err
		}
	}
	return nil
}

// waitService waits until every container of a service meets cond. While a
// condition needs health it also probes each running container that has a
// healthcheck and is not yet healthy (see probe.go).
func (d *Deployer) waitService(ctx context.Context, rd *readiness, project, service, cond string, deadline time.Time, purpose string) error {
	return d.waitContainers(ctx, rd, project, service, nil, cond, deadline, purpose)
}

// waitContainers is waitService for some of a service's containers (ids;
// nil: all of them).
func (d *Deployer) waitContainers(ctx context.Context, rd *readiness, project, service string, ids []string, cond string, deadline time.Time, purpose string) error {
	start := time.Now()
	needsHealth := cond == types.ServiceConditionHealthy || cond == condFinal
	// Poll often: a local inspect costs about a millisecond, and health
	// changes should be seen at once (the benchmark against docker-compose);
	// a passing probe wakes the loop at once.
	delay := 50 * time.Millisecond
	for {
		states, err := d.serviceStates(ctx, project, service)
		if err != nil {
			return err
		}
		if ids != nil {
			kept := states[:0]
			for _, st := range states {
				if slices.Contains(ids, st.ID) {
					kept = append(kept, st)
				}
			}
			states = kept
		}
		allOK := len(states) > 0
		var waiting []string
		for i := range states {
			st := &states[i]
			st.Probed = rd.passed(st.ID)
			ok, failed, why := ready(*st, cond)
			if failed {
				d.out.Done()
				return d.unhealthy(ctx, *st, why)
			}
			if !ok {
				allOK = false
				waiting = append(waiting, st.Name+" ("+why+")")
				if needsHealth && st.Probe != nil && st.Status == "running" {
					rd.probe(st.ID, *st.Probe)
				}
				continue
			}
			if !st.Probed && (cond != types.ServiceConditionStarted || st.Probe == nil) {
				rd.see(st.ID, ReadyByEngine)
			}
		}
		if allOK {
			d.out.Done()
			d.serviceReady(rd, service, cond, states)
			return nil
		}
		if time.Now().After(deadline) {
			d.out.Done()
			if len(states) == 0 {
				return fmt.Errorf("%w: service %s has no container", ErrUnhealthy, service)
			}
			for _, st := range states {
				if ok, _, why := ready(st, cond); !ok {
					return d.unhealthy(ctx, st, "not ready after the wait timeout ("+why+")")
				}
			}
		}
		msg := "Waiting for " + strings.Join(waiting, ", ")
		if purpose != "" {
			msg += ", needed by " + purpose
		}
		d.out.LiveTimed(msg, time.Since(start))
		select {
		case <-ctx.Done():
			d.out.Done()
			return ctx.Err()
		case <-rd.wake:
		case <-time.After(delay):
		}
		if time.Since(start) > 30*time.Second {
			delay = 500 * time.Millisecond
		} else if delay < 100*time.Millisecond {
			delay += 10 * time.Millisecond
		}
	}
}

// serviceReady announces a service's containers that became healthy or
// completed and records when the service became ready. A service waited for
// only as started is not recorded when it has a healthcheck: its readiness
// is its health, which a later wait sees.
func (d *Deployer) serviceReady(rd *readiness, service, cond string, states []containerState) {
	state, ids := "running", make([]string, 0, len(states))
	for _, st := range states {
		ids = append(ids, st.ID)
		switch {
		case st.Probe != nil && cond == types.ServiceConditionStarted:
			return
		case completed(st):
			if !d.announced[st.ID] {
				d.announced[st.ID] = true
				d.out.Event("Container %s completed (exited 0)", st.Name)
			}
			state = "completed"
		case st.Probe != nil:
			if !d.announced[st.ID] {
				d.announced[st.ID] = true
				d.out.Event("Container %s healthy", st.Name)
			}
			state = "healthy"
		}
	}
	rd.service(service, state, ids)
}

// unhealthy builds the ErrUnhealthy error with the container's last 20 log
// lines.
func (d *Deployer) unhealthy(ctx context.Context, st containerState, why string) error {
	e := &UnhealthyError{Container: st.Name, Service: st.Service, Reason: why, Logs: d.lastLogs(ctx, st.ID)}
	if st.LastLog != "" && !strings.Contains(why, st.LastLog) {
		e.HealthOutput = st.LastLog
	}
	return e
}

// lastLogs are a container's last 20 log lines, or why there are none.
func (d *Deployer) lastLogs(ctx context.Context, id string) string {
	logs, err := d.tailLogs(context.WithoutCancel(ctx), id, 20)
	if err != nil {
		logs = "(logs unavailable: " + err.Error() + ")"
	}
	if strings.TrimSpace(logs) == "" {
		logs = "(no output)"
	}
	return logs
}

// UnhealthyError says which container failed its health gate and why.
type UnhealthyError struct {
	Container string
	Service   string
	Reason    string
	// Logs are the container's last 20 log lines.
	Logs string
	// HealthOutput is the last output of its healthcheck, when the reason
	// does not already quote it.
	HealthOutput string
}

func (e *UnhealthyError) Error() string {
	health := ""
	if e.HealthOutput != "" {
		health = "\nlast healthcheck output: " + e.HealthOutput
	}
	return fmt.Sprintf("%v: container %s (service %s) %s%s\nlast 20 log lines of %s:\n%s", ErrUnhealthy, e.Container, e.Service, e.Reason, health, e.Container, strings.TrimRight(e.Logs, "\n"))
}

// Unwrap makes errors.Is(err, ErrUnhealthy) true.
func (e *UnhealthyError) Unwrap() error { return ErrUnhealthy }

// refreshImages pulls the present images of services with pull_policy
// always or refresh (a no-op pull when the registry's image is the one
// present), after preflight passed and before anything is created; a
// failed pull refuses as preflight does.
func (d *Deployer) refreshImages(ctx context.Context, p *types.Project) error {
	pulled := map[string]bool{}
	var problems []Problem
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build != nil || (s.PullPolicy != types.PullPolicyAlways && s.PullPolicy != types.PullPolicyRefresh) {
			continue
		}
		ref := ImageRef(p.Name, s)
		if pulled[ref] {
			continue
		}
		pulled[ref] = true
		if err := d.pull(ctx, ref); err != nil {
			problems = append(problems, Problem{Rule: "image", Subject: ref,
				Message: fmt.Sprintf("services.%s: pull_policy is %s and the pull failed: %v", name, s.PullPolicy, err)})
		}
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}
