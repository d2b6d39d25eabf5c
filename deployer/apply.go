package deployer

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/internal/version"
)

// The executor: it performs a plan's operations, in order, and nothing
// else. A container it creates is started by the start stage (start.go)
// once its dependencies are ready.

// applier is one application of a plan.
type applier struct {
	d  *Deployer
	pl *Plan
	o  UpOptions
	// done are the operations performed, in order, each with its Result.
	done []Op
	// ids are image ids looked up after the image operations ran.
	ids map[string]string
	// proxies: service -> its rollout proxy's container; fresh: the proxy
	// was created, recreated or started by this up.
	proxies map[string]string
	fresh   map[string]bool
	// starts are the containers each service's operations left to start.
	starts map[string][]pendingStart
	// problems are failed pulls: they refuse as preflight does.
	problems []Problem
}

func (d *Deployer) newApplier(pl *Plan, o UpOptions) *applier {
	return &applier{d: d, pl: pl, o: o, done: []Op{}, ids: map[string]string{}, proxies: map[string]string{},
		fresh: map[string]bool{}, starts: map[string][]pendingStart{}}
}

// nameRelease has the rollout proxies name the release this up is about
// to record.
func (a *applier) nameRelease(ctx context.Context, command string) {
	if a.pl.proxyImage == "" || command == "" {
		return
	}
	p := a.pl.p
	next, rev := 1, gitRevision(p.WorkingDir)
	if rels, err := a.d.Releases(ctx, p.Name); err == nil && len(rels) > 0 {
		next = rels[0].Number + 1
	}
	for name, ro := range a.pl.rollouts {
		ro.Release, ro.Revision, ro.Project = next, rev, p.Name
		a.pl.rollouts[name] = ro
	}
}

// apply performs every operation of the plan in order. Failed pulls are
// collected and refuse (ErrPreflight) before the first operation that is
// not a pull.
func (a *applier) apply(ctx context.Context) error {
	for k, v := range a.pl.proxyIDs {
		a.proxies[k] = v
	}
	for i := range a.pl.Ops {
		op := a.pl.Ops[i]
		if op.Kind != OpPull && len(a.problems) > 0 {
			return &PreflightError{Problems: a.problems}
		}
		result, err := a.do(ctx, op)
		if err != nil {
			return err
		}
		op.Result = result
		a.done = append(a.done, op)
	}
	if len(a.problems) > 0 {
		return &PreflightError{Problems: a.problems}
	}
	return nil
}

// do performs one operation; the result is the container action taken for
// container operations (the Else of a condition that did not hold).
func (a *applier) do(ctx context.Context, op Op) (Action, error) {
	d, p := a.d, a.pl.p
	switch op.Kind {
	case OpSecretAdopt:
		if err := storeSecret(op.Target, op.x.stored, op.x.value); err != nil {
			return "", err
		}
		d.out.Event("Secret %s: took the value %s holds (kept in %s, mode 0600)", op.Target, op.x.from, op.x.stored)
		if op.x.engine {
			if err := d.writeState(ctx, p.Name, map[string][]byte{op.Target: op.x.value}); err != nil {
				return "", err
			}
		}
		if err := confirm(filepath.Dir(op.x.stored), []string{op.Target}); err != nil {
			return "", err
		}
	case OpSecretStore:
		if err := d.writeState(ctx, p.Name, map[string][]byte{op.Target: op.x.value}); err != nil {
			return "", err
		}
		if err := confirm(filepath.Dir(op.x.stored), []string{op.Target}); err != nil {
			return "", err
		}
	case OpSecretGenerate:
		v, err := generateSecret(op.x.stored)
		if err != nil {
			return "", err
		}
		if err := d.writeState(ctx, p.Name, map[string][]byte{op.Target: v}); err != nil {
			return "", err
		}
		if err := confirm(filepath.Dir(op.x.stored), []string{op.Target}); err != nil {
			return "", err
		}
		a.pl.values[valueKey(kindSecret, op.Target)] = v
	case OpPull:
		if err := d.pull(ctx, op.Target); err != nil {
			s := p.Services[op.Service]
			msg := fmt.Sprintf("services.%s: image is not present and the pull failed: %v", op.Service, err)
			if pullsAlways(s) {
				msg = fmt.Sprintf("services.%s: pull_policy is %s and the pull failed: %v", op.Service, s.PullPolicy, err)
			}
			a.problems = append(a.problems, Problem{Rule: "image", Subject: op.Target, Message: msg})
		}
		delete(a.ids, op.Target)
	case OpBuild:
		if _, err := d.buildService(ctx, p, p.Services[op.Service], BuildOptions{Getenv: a.o.Getenv}); err != nil {
			return "", err
		}
		delete(a.ids, op.Target)
	case OpProxyImage:
		if err := d.buildProxyImage(ctx, op.x.ref, op.Target); err != nil {
			return "", err
		}
	case OpNetworkRecreate:
		if err := d.recreateNetwork(ctx, p, op); err != nil {
			return "", err
		}
	case OpNetworkCreate:
		nc := p.Networks[op.x.netKey]
		if _, err := d.engine.NetworkCreate(ctx, nc.Name, networkCreateOptions(p, op.x.netKey, nc)); err != nil {
			return "", fmt.Errorf("create network %s: %w", nc.Name, err)
		}
		d.out.Event("Network %s created", nc.Name)
	case OpVolumeCreate:
		if err := d.createVolume(ctx, a.pl, op.x.netKey); err != nil {
			return "", err
		}
	case OpRemove:
		if !op.x.ofStack {
			return ActionRemove, d.stopAndRemove(ctx, op.x.c, 0)
		}
		if err := d.removeContainer(ctx, op.x.c.ID, deliveryKey(op.x.c), p.Services[op.Service]); err != nil {
			return "", err
		}
		d.out.Event("Container %s removed (%s)", op.Target, op.Reason)
		return ActionRemove, nil
	case OpProxyCreate, OpProxyRecreate, OpProxyStart:
		return "", a.proxy(ctx, op)
	default:
		return a.container(ctx, op)
	}
	return "", nil
}

// container performs a container operation. One under a condition (If)
// that does not hold, because the pull or build brought the image the
// container runs, gets its Else instead.
func (a *applier) container(ctx context.Context, op Op) (Action, error) {
	d, p := a.d, a.pl.p
	s := p.Services[op.Service]
	ro := a.pl.rollouts[op.Service]
	hash := a.pl.hashes[op.Service]
	c := op.x.c
	kind := op.Kind
	if op.If != "" {
		id, err := a.imageID(ctx, ImageRef(p.Name, s))
		if err != nil {
			return "", err
		}
		if id == c.ImageID {
			kind = map[Action]OpKind{ActionKeep: "", ActionStart: OpStart, ActionRename: OpRename}[op.Else]
			if kind == "" {
				d.out.Event("Container %s unchanged (%s: no)", op.Target, op.If)
				a.relearn(op.Service, c)
				return ActionKeep, nil
			}
		}
	}
	switch kind {
	case OpRename:
		// Failing to is not fatal: the next up tries again.
		if err := d.engine.ContainerRename(ctx, c.ID, ContainerName(p.Name, s, op.x.n)); err == nil {
			d.out.Event("Container %s renamed %s", op.Target, ContainerName(p.Name, s, op.x.n))
		}
		a.relearn(op.Service, c)
		return ActionRename, nil
	case OpStart:
		ps := pendingStart{id: c.ID, name: op.Target, verb: "started (" + op.Reason + ")"}
		if op.If != "" {
			ps.verb = "started"
		}
		if ro.Proxy {
			ps.proxy = &proxyWork{ro: ro, alias: c.Labels[LabelBackend], service: s}
		}
		a.starts[op.Service] = append(a.starts[op.Service], ps)
		return ActionStart, nil
	case OpRoll:
		d.out.Event("Rolling %s (%s): a new container starts beside it", op.Target, op.Reason)
		id, name, alias, err := d.create(ctx, p, s, op.x.n, hash, a.pl.values, ro, op.x.name)
		if err != nil {
			return "", err
		}
		a.starts[op.Service] = append(a.starts[op.Service], pendingStart{id: id, name: name, verb: "rolled (" + op.Reason + ")",
			proxy: &proxyWork{ro: ro, alias: alias, oldID: c.ID, oldName: op.Target, oldKey: deliveryKey(c),
				canonical: ContainerName(p.Name, s, op.x.n), service: s}})
		return ActionRoll, nil
	}
	verb := "created and started"
	if kind == OpRecreate {
		d.out.Event("Recreating %s in place (%s): it stops before its successor starts", op.Target, op.Reason)
		if err := d.removeContainer(ctx, c.ID, deliveryKey(c), s); err != nil {
			return "", err
		}
		verb = "recreated (" + op.Reason + ")"
	}
	id, name, alias, err := d.create(ctx, p, s, op.x.n, hash, a.pl.values, ro, "")
	if err != nil {
		return "", err
	}
	ps := pendingStart{id: id, name: name, verb: verb}
	if ro.Proxy {
		ps.proxy = &proxyWork{ro: ro, alias: alias, service: s}
	}
	a.starts[op.Service] = append(a.starts[op.Service], ps)
	if kind == OpRecreate {
		return ActionRecreate, nil
	}
	return ActionCreate, nil
}

// relearn has a proxy this up (re)created or started told the backend it
// keeps (no release is named: none is recorded for it).
func (a *applier) relearn(service string, c container.Summary) {
	ro := a.pl.rollouts[service]
	if !ro.Proxy || !a.fresh[service] || c.State != "running" {
		return
	}
	ro.Release = 0
	a.starts[service] = append(a.starts[service], pendingStart{id: c.ID, name: containerName(c), verb: "unchanged",
		proxy: &proxyWork{ro: ro, alias: c.Labels[LabelBackend], started: true, service: a.pl.p.Services[service]}})
}

// proxy performs a proxy operation: the service's rollout proxy is
// created, recreated (removed first) or started, and learns the backends
// the service keeps.
func (a *applier) proxy(ctx context.Context, op Op) error {
	p := a.pl.p
	id, err := a.d.ensureProxy(ctx, p, p.Services[op.Service], a.pl.rollouts[op.Service], a.pl.proxyImage, op)
	if err != nil {
		return err
	}
	a.proxies[op.Service], a.fresh[op.Service] = id, true
	for _, c := range op.x.kept {
		a.relearn(op.Service, c)
	}
	return nil
}

// imageID is the id of ref once the plan's pulls and builds ran.
func (a *applier) imageID(ctx context.Context, ref string) (string, error) {
	if id, ok := a.ids[ref]; ok {
		return id, nil
	}
	id, err := a.d.imageID(ctx, ref)
	if err != nil {
		return "", err
	}
	a.ids[ref] = id
	return id, nil
}

// imageIDs are the images the services run now (for the release record).
func (a *applier) imageIDs(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range a.pl.order {
		id, err := a.imageID(ctx, ImageRef(a.pl.p.Name, a.pl.p.Services[name]))
		if err != nil {
			return nil, err
		}
		if id == "" {
			return nil, fmt.Errorf("image %s of services.%s is not present", ImageRef(a.pl.p.Name, a.pl.p.Services[name]), name)
		}
		out[name] = id
	}
	return out, nil
}

// steps is what up did per container: the orphans removed, then each
// service's containers as planned, with the action each operation took
// (a container whose operation was not reached is left out).
func (a *applier) steps() []Step {
	var out []Step
	did := map[string]Action{}
	for _, op := range a.done {
		if op.Result != "" {
			did[op.Service+"/"+op.Target] = op.Result
		}
		if op.Kind == OpRemove && !op.x.ofStack {
			out = append(out, Step{Service: op.Service, Container: op.Target, Action: ActionRemove, Reason: op.Reason})
		}
	}
	for _, sp := range a.pl.Services {
		for _, st := range sp.Containers {
			if st.Action != ActionKeep {
				act, ok := did[st.Service+"/"+st.Container]
				if !ok {
					continue
				}
				if act != st.Action {
					st.Action, st.Reason = act, ""
				}
			}
			st.If, st.Else = "", ""
			out = append(out, st)
		}
	}
	return out
}

// createVolume creates volumes.KEY of the plan's project.
func (d *Deployer) createVolume(ctx context.Context, pl *Plan, key string) error {
	o := volumeCreateOptions(pl.p, key)
	if _, err := d.engine.VolumeCreate(ctx, o); err != nil {
		return fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	d.out.Event("Volume %s created", o.Name)
	return nil
}

// volumeCreateOptions is the engine's request for volumes.KEY of p.
func volumeCreateOptions(p *types.Project, key string) volume.CreateOptions {
	vc := p.Volumes[key]
	labels := map[string]string{LabelProject: p.Name, LabelVolume: key, LabelManagedBy: "invdeploy", LabelVersion: version.Version}
	for k, v := range vc.Labels {
		labels[k] = v
	}
	return volume.CreateOptions{Name: vc.Name, Driver: vc.Driver, DriverOpts: vc.DriverOpts, Labels: labels}
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
	for _, nn := range sortedKeys(spec.Connect) {
		if err := d.engine.NetworkConnect(ctx, nn, created.ID, spec.Connect[nn]); err != nil {
			return cleanup(fmt.Errorf("connect %s to network %s: %w", spec.Name, nn, err))
		}
	}
	return created.ID, spec.Name, alias, nil
}
