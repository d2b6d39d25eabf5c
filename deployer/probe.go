package deployer

import (
	"context"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

// Readiness probing. The engine runs a healthcheck only every `interval`
// (engine 20.10 has no start_interval), so a database that answers after one
// second is reported healthy after two or more, and every service that waits
// for it pays the difference. While up waits for a container to become
// healthy it therefore also runs the container's own healthcheck test itself,
// through the Engine API (an exec, so it works on a remote engine over the one
// connection), as the engine would: the same command, the same user and
// working directory, no privilege. The first passing probe makes the
// container ready; the engine's own status still decides when a container is
// unhealthy and is what `status` reports.

const (
	// probeFirstDelay and probeMaxDelay bound the pause between two probes of
	// one container: short at first, backing off to the maximum.
	probeFirstDelay = 100 * time.Millisecond
	probeMaxDelay   = 250 * time.Millisecond
	// defaultHealthTimeout is the engine's timeout for a healthcheck that
	// sets none.
	defaultHealthTimeout = 30 * time.Second
)

// Who saw a service ready first (Readiness.By).
const (
	// ReadyByEngine: the engine's status (healthy, running, exited 0).
	ReadyByEngine = "engine"
	// ReadyByProbe: invdeploy's own run of the service's healthcheck.
	ReadyByProbe = "probe"
)

// Readiness is when one service became ready during an up, and who saw it
// first.
type Readiness struct {
	Service string `json:"service"`
	// State is healthy (its healthcheck passes), running (it has no
	// healthcheck) or completed (it exited 0 and has no healthcheck).
	State string `json:"state"`
	// By is ReadyByEngine or ReadyByProbe; for a service with several
	// containers, who saw the last of them ready.
	By string `json:"by"`
	// At is when its last container was seen ready.
	At time.Time `json:"at"`
	// AfterSeconds is At measured from the start of up.
	AfterSeconds float64 `json:"after_seconds"`
}

// healthProbe is a container's healthcheck as the engine would exec it.
type healthProbe struct {
	cmd     []string
	user    string
	workDir string
	timeout time.Duration
}

// probeOf returns the healthcheck of a container's config (the compose
// file's, or the image's, which the engine merged in at create) as the engine
// would run it; ok is false when the container has none.
func probeOf(cfg *container.Config) (hp healthProbe, ok bool) {
	if cfg == nil || cfg.Healthcheck == nil || len(cfg.Healthcheck.Test) < 2 {
		return healthProbe{}, false
	}
	test := cfg.Healthcheck.Test
	switch test[0] {
	case "CMD":
		hp.cmd = append(hp.cmd, test[1:]...)
	case "CMD-SHELL":
		// As the engine does: the container's shell, default /bin/sh -c.
		shell := []string(cfg.Shell)
		if len(shell) == 0 {
			shell = []string{"/bin/sh", "-c"}
		}
		hp.cmd = append(append(hp.cmd, shell...), test[1:]...)
	default: // NONE, or a form the engine does not run either
		return healthProbe{}, false
	}
	hp.user, hp.workDir = cfg.User, cfg.WorkingDir
	hp.timeout = cfg.Healthcheck.Timeout
	if hp.timeout <= 0 {
		hp.timeout = defaultHealthTimeout
	}
	return hp, true
}

// readiness is one up's record of when each container was first seen ready
// and by whom, and the owner of its probe loops.
type readiness struct {
	engine Engine
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// wake tells a waiting loop that a probe passed.
	wake chan struct{}

	mu       sync.Mutex
	probing  map[string]bool
	first    map[string]seen
	services map[string]Readiness
}

type seen struct {
	at time.Time
	by string
}

func newReadiness(ctx context.Context, engine Engine, start time.Time) *readiness {
	ctx, cancel := context.WithCancel(ctx)
	return &readiness{
		engine: engine, start: start, ctx: ctx, cancel: cancel,
		wake:    make(chan struct{}, 1),
		probing: map[string]bool{}, first: map[string]seen{}, services: map[string]Readiness{},
	}
}

// stop ends every probe loop and waits for them, so no exec is started after
// up returns.
func (r *readiness) stop() {
	r.cancel()
	r.wg.Wait()
}

// probe starts the probe loop of a container unless one runs or ran.
func (r *readiness) probe(id string, hp healthProbe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.probing[id] {
		return
	}
	if _, done := r.first[id]; done {
		return
	}
	r.probing[id] = true
	r.wg.Add(1)
	go r.loop(id, hp)
}

// passed reports whether a probe of the container passed.
func (r *readiness) passed(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first[id].by == ReadyByProbe
}

// see records that by saw the container ready, unless someone did before.
func (r *readiness) see(id, by string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.first[id]; !ok {
		r.first[id] = seen{at: time.Now(), by: by}
	}
}

func (r *readiness) ready(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.first[id]
	return ok
}

// service records a service ready, once, from its containers' first-seen
// records.
func (r *readiness) service(name, state string, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, done := r.services[name]; done {
		return
	}
	rd := Readiness{Service: name, State: state, By: ReadyByEngine, At: time.Now()}
	var last time.Time
	for _, id := range ids {
		if s, ok := r.first[id]; ok && s.at.After(last) {
			last, rd.By = s.at, s.by
		}
	}
	if !last.IsZero() {
		rd.At = last
	}
	rd.AfterSeconds = rd.At.Sub(r.start).Seconds()
	r.services[name] = rd
}

// results are the recorded services, in the order they became ready.
func (r *readiness) results() []Readiness {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Readiness, 0, len(r.services))
	for _, rd := range r.services {
		out = append(out, rd)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].Service < out[j].Service
	})
	return out
}

// loop probes one container until a probe passes, the engine saw it ready
// first, the container is gone, or up ends. Probes never overlap: after one
// that outlived its timeout (and counted as a failure) the next starts only
// once that exec has ended, as the engine's own would not run twice at once.
func (r *readiness) loop(id string, hp healthProbe) {
	defer r.wg.Done()
	delay := probeFirstDelay
	for !r.ready(id) {
		ok, hung, gone := r.runProbe(id, hp)
		if ok {
			r.see(id, ReadyByProbe)
			select {
			case r.wake <- struct{}{}:
			default:
			}
			return
		}
		if gone || (hung != "" && !r.waitExec(hung, delay)) || !sleep(r.ctx, delay) {
			return
		}
		delay = min(delay*5/4, probeMaxDelay)
	}
}

// runProbe runs the healthcheck once, bounded by its timeout. hung is the
// exec that may still be running when the probe failed; gone means the
// container no longer exists.
func (r *readiness) runProbe(id string, hp healthProbe) (ok bool, hung string, gone bool) {
	ctx, cancel := context.WithTimeout(r.ctx, hp.timeout)
	defer cancel()
	ex, err := r.engine.ContainerExecCreate(ctx, id, container.ExecOptions{
		User: hp.user, WorkingDir: hp.workDir, Cmd: hp.cmd, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return false, "", errdefs.IsNotFound(err)
	}
	hj, err := r.engine.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return false, ex.ID, false // it may have started
	}
	// The output is not needed (the engine keeps its own in the health
	// log); the stream ends when the command does.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, hj.Reader)
		close(done)
	}()
	select {
	case <-done:
		hj.Close()
	case <-ctx.Done():
		hj.Close()
		<-done
		return false, ex.ID, false
	}
	for {
		ins, err := r.engine.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return false, ex.ID, false
		}
		if !ins.Running {
			return ins.ExitCode == 0, "", false
		}
		if !sleep(ctx, 5*time.Millisecond) {
			return false, ex.ID, false
		}
	}
}

// waitExec waits until an exec has ended (or is gone); false when up ended
// first.
func (r *readiness) waitExec(execID string, every time.Duration) bool {
	for {
		ins, err := r.engine.ContainerExecInspect(r.ctx, execID)
		if err != nil && r.ctx.Err() != nil {
			return false
		}
		if err != nil || !ins.Running {
			return true
		}
		if !sleep(r.ctx, every) {
			return false
		}
	}
}

// sleep pauses for d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
