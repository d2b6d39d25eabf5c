package deployer

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	cerrdefs "github.com/containerd/errdefs"
)

// lockFree fails with a *LockError when a live deploy holds project's
// lock; a free or stale lock is fine (a stale one is taken over when the
// lock is taken).
func (d *Deployer) lockFree(ctx context.Context, project string) error {
	cur, _, err := d.readLock(ctx, project)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the deploy lock of %s: %w", project, err)
	}
	age := time.Since(cur.Heartbeat)
	if staleReason(cur, age) != "" {
		return nil
	}
	return &LockError{Project: project, Holder: cur, Age: age}
}

// fencedEngine is the Engine a deploy that holds (or will take) the
// project's lock changes the target through: the one place where the lease
// is fenced. Before each call that changes something it takes the lock if
// not yet taken (so an up that finds nothing to change never writes to the
// engine: a no-op up costs one lock read, not a create and a remove), and
// otherwise checks that the lease is still this deploy's (Lock.Fence): a
// deploy whose lock was broken or taken over stops before that change with
// a *LeaseLostError (exit 5). A held lock was refused before (lockFree);
// one taken meanwhile refuses at the first change, before it happens. An
// exec (the rollout proxy's switch, rotate's ALTER ROLE) is fenced once the
// lock is held, and never takes it; health probes, which change nothing
// and run many times a second, go around the fence (see probing).
type fencedEngine struct {
	Engine
	take func() (*Lock, error)

	mu   sync.Mutex
	done bool
	lock *Lock
	err  error
}

// fenced returns a Deployer that changes the engine only through a
// fencedEngine around d's, and that engine: take is called before the
// first change (lazily); held, when not nil, is a lock taken already.
func (d *Deployer) fenced(take func() (*Lock, error), held *Lock) (*Deployer, *fencedEngine) {
	f := &fencedEngine{Engine: d.engine, take: take, lock: held, done: held != nil}
	locked := *d
	locked.engine = f
	return &locked, f
}

// probing is the engine health probes exec through: e itself, or the
// engine a fencedEngine wraps (a probe changes nothing, and a lock check
// per probe would double the calls of a health wait).
func probing(e Engine) Engine {
	if f, ok := e.(*fencedEngine); ok {
		return f.Engine
	}
	return e
}

// Bound keeps the wrapped engine's call bound (see QuickBounder).
func (l *fencedEngine) Bound(ctx context.Context, call string, fn func(context.Context) error) error {
	return boundBy(l.Engine, ctx, call, fn)
}

// held is the lock, once taken.
func (l *fencedEngine) held() *Lock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lock
}

// guard runs before each change: it takes the lock the first time (the
// create that takes it is its own fence), else fences the lease.
func (l *fencedEngine) guard(ctx context.Context, change string) error {
	l.mu.Lock()
	if !l.done {
		l.done = true
		l.lock, l.err = l.take()
		l.mu.Unlock()
		return l.err
	}
	lock, err := l.lock, l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return lock.Fence(ctx, change)
}

func (l *fencedEngine) ContainerExecCreate(ctx context.Context, id string, o container.ExecOptions) (container.ExecCreateResponse, error) {
	if lock := l.held(); lock != nil {
		if err := lock.Fence(ctx, "exec in "+shortID(id)); err != nil {
			return container.ExecCreateResponse{}, err
		}
	}
	return l.Engine.ContainerExecCreate(ctx, id, o)
}

func (l *fencedEngine) ImagePull(ctx context.Context, ref string, o image.PullOptions) (io.ReadCloser, error) {
	if err := l.guard(ctx, "pull "+ref); err != nil {
		return nil, err
	}
	return l.Engine.ImagePull(ctx, ref, o)
}

func (l *fencedEngine) ImageBuild(ctx context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	if err := l.guard(ctx, "build "+strings.Join(o.Tags, ", ")); err != nil {
		return build.ImageBuildResponse{}, err
	}
	return l.Engine.ImageBuild(ctx, r, o)
}

func (l *fencedEngine) ImageTag(ctx context.Context, src, dst string) error {
	if err := l.guard(ctx, "tag "+dst); err != nil {
		return err
	}
	return l.Engine.ImageTag(ctx, src, dst)
}

func (l *fencedEngine) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	if err := l.guard(ctx, "create "+name); err != nil {
		return container.CreateResponse{}, err
	}
	return l.Engine.ContainerCreate(ctx, cfg, host, net, p, name)
}

func (l *fencedEngine) ContainerStart(ctx context.Context, id string, o container.StartOptions) error {
	if err := l.guard(ctx, "start "+shortID(id)); err != nil {
		return err
	}
	return l.Engine.ContainerStart(ctx, id, o)
}

func (l *fencedEngine) ContainerStop(ctx context.Context, id string, o container.StopOptions) error {
	if err := l.guard(ctx, "stop "+shortID(id)); err != nil {
		return err
	}
	return l.Engine.ContainerStop(ctx, id, o)
}

func (l *fencedEngine) ContainerRemove(ctx context.Context, id string, o container.RemoveOptions) error {
	if err := l.guard(ctx, "remove "+shortID(id)); err != nil {
		return err
	}
	return l.Engine.ContainerRemove(ctx, id, o)
}

func (l *fencedEngine) ContainerRename(ctx context.Context, id, name string) error {
	if err := l.guard(ctx, "rename "+shortID(id)+" to "+name); err != nil {
		return err
	}
	return l.Engine.ContainerRename(ctx, id, name)
}

func (l *fencedEngine) CopyToContainer(ctx context.Context, id, dst string, r io.Reader, o container.CopyToContainerOptions) error {
	if err := l.guard(ctx, "copy into "+shortID(id)); err != nil {
		return err
	}
	return l.Engine.CopyToContainer(ctx, id, dst, r, o)
}

func (l *fencedEngine) NetworkCreate(ctx context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	if err := l.guard(ctx, "create network "+name); err != nil {
		return network.CreateResponse{}, err
	}
	return l.Engine.NetworkCreate(ctx, name, o)
}

func (l *fencedEngine) NetworkConnect(ctx context.Context, n, id string, cfg *network.EndpointSettings) error {
	if err := l.guard(ctx, "connect "+shortID(id)+" to network "+n); err != nil {
		return err
	}
	return l.Engine.NetworkConnect(ctx, n, id, cfg)
}

func (l *fencedEngine) NetworkRemove(ctx context.Context, n string) error {
	if err := l.guard(ctx, "remove network "+n); err != nil {
		return err
	}
	return l.Engine.NetworkRemove(ctx, n)
}

func (l *fencedEngine) VolumeCreate(ctx context.Context, o volume.CreateOptions) (volume.Volume, error) {
	if err := l.guard(ctx, "create volume "+o.Name); err != nil {
		return volume.Volume{}, err
	}
	return l.Engine.VolumeCreate(ctx, o)
}

func (l *fencedEngine) VolumeRemove(ctx context.Context, id string, force bool) error {
	if err := l.guard(ctx, "remove volume "+id); err != nil {
		return err
	}
	return l.Engine.VolumeRemove(ctx, id, force)
}

// shortID is a container id as docker ps shows it.
func shortID(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}
