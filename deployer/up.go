package deployer

import (
	"context"
	"time"
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
	// recordFrom is the release a rollback runs again (its revision is
	// recorded); nil for an up.
	recordFrom *Release
	// readState makes the planner read every generated secret from the
	// engine's store, also those this machine's mirror was confirmed to
	// hold (see verifyMirrors).
	readState bool
	// rotating is secret rotate's new value, planned before it exists (see
	// PlanRotate); nil for an up.
	rotating *rotation
	// ProxyBinary is the rollout proxy's executable (see EnsureProxyImage);
	// "" means no proxy: every changed container is recreated in place.
	ProxyBinary string
	// Pending are images a stage before this up makes (remote up builds
	// them here and moves them): ref -> the condition, in words, under
	// which the plan's containers change. Plan only (a dry run).
	Pending map[string]string
	// Edge are the settings of the engine's HTTPS edge (services with
	// x-invdeploy hosts; see edge.go).
	Edge EdgeOptions
}

// UpResult is what Up did.
type UpResult struct {
	// Plan is the plan Up applied.
	Plan *Plan
	// Ops are the operations performed, in order (a failed up stops at
	// the one that failed), each with its Result.
	Ops []Op
	// Steps are what became of each container (the orphans removed, then
	// each service's containers).
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

// Up deploys a stack in four stages: check (preflight: a refusal creates
// nothing, ErrPreflight), plan (the operations, from the compose model and
// the engine's state: see Plan), apply (the executor performs exactly
// those operations, and starts what they created in dependency order once
// each service's dependencies meet their depends_on condition), and wait:
// it returns when every container is running and every healthcheck
// healthy (a container without a healthcheck that exited 0 is completed),
// or with ErrUnhealthy and the failing container's last 20 log lines.
// While it waits for health it also runs each healthcheck itself (see
// probe.go). An unchanged container is left running untouched.
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
	rep, err := d.Check(ctx, st, CheckOptions{Remote: o.Remote, ConfigDir: o.ConfigDir, Build: o.Build, Edge: o.Edge})
	res.Report = rep
	for _, w := range rep.Warnings[len(st.Warnings):] {
		d.out.Event("warning: %s", w)
	}
	if err != nil {
		return res, err
	}
	p := st.Project
	d.loadDeliveryRecord(p.Name, o.ConfigDir)
	defer d.saveDeliveryRecord(ctx, p.Name)
	pl, lock, err := d.lockedPlan(ctx, p, o)
	if lock != nil {
		defer lock.Unlock(context.WithoutCancel(ctx))
		// Every change goes through the fence: a deploy whose lease is
		// broken or taken over stops before its next change (exit 5).
		d, _ = d.fenced(nil, lock)
	}
	res.Plan = pl
	if err != nil {
		return res, err
	}
	for _, w := range pl.Warnings {
		d.out.Event("warning: %s", w)
	}
	if len(pl.Orphans) > 0 {
		d.out.Event("warning: %s", OrphanWarning(pl.Orphans))
	}
	a := d.newApplier(pl, o)
	a.nameRelease(ctx, o.RecordCommand)
	// A service that needs nothing first starts as soon as its operations
	// are done (see startEarly); the rest once applied, in order.
	err = a.apply(ctx, a.startEarly)
	res.Ops, res.Steps = a.done, a.steps()
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(timeout)
	rd := newReadiness(ctx, probing(d.engine), start)
	defer rd.stop()
	if err := a.start(ctx, rd, deadline, res); err != nil {
		return res, err
	}
	if err := d.waitHealthy(ctx, rd, p, pl.order, deadline); err != nil {
		return res, err
	}
	res.Ready = rd.results()
	if o.RecordCommand != "" && res.Changed() { // a no-op up has nothing new to record
		res.Release = d.recordUp(ctx, p, a, o.RecordCommand, o.recordFrom)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
