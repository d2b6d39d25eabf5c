package deployer

import (
	"context"
	"fmt"
	"io"
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

// lazyLock is an Engine that takes the deploy lock before the first call
// that changes anything, so an up that finds nothing to change never writes
// to the engine (a no-op up costs one lock read, not a create and a
// remove). A held lock was refused before (lockFree); one taken meanwhile
// refuses at the first change, before it happens.
type lazyLock struct {
	Engine
	take func() error

	mu   sync.Mutex
	done bool
	err  error
}

func (l *lazyLock) acquire() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.done, l.err = true, l.take()
	}
	return l.err
}

func (l *lazyLock) ImagePull(ctx context.Context, ref string, o image.PullOptions) (io.ReadCloser, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	return l.Engine.ImagePull(ctx, ref, o)
}

func (l *lazyLock) ImageBuild(ctx context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	if err := l.acquire(); err != nil {
		return build.ImageBuildResponse{}, err
	}
	return l.Engine.ImageBuild(ctx, r, o)
}

func (l *lazyLock) ImageTag(ctx context.Context, src, dst string) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.ImageTag(ctx, src, dst)
}

func (l *lazyLock) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	if err := l.acquire(); err != nil {
		return container.CreateResponse{}, err
	}
	return l.Engine.ContainerCreate(ctx, cfg, host, net, p, name)
}

func (l *lazyLock) ContainerStart(ctx context.Context, id string, o container.StartOptions) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.ContainerStart(ctx, id, o)
}

func (l *lazyLock) ContainerStop(ctx context.Context, id string, o container.StopOptions) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.ContainerStop(ctx, id, o)
}

func (l *lazyLock) ContainerRemove(ctx context.Context, id string, o container.RemoveOptions) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.ContainerRemove(ctx, id, o)
}

func (l *lazyLock) ContainerRename(ctx context.Context, id, name string) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.ContainerRename(ctx, id, name)
}

func (l *lazyLock) CopyToContainer(ctx context.Context, id, dst string, r io.Reader, o container.CopyToContainerOptions) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.CopyToContainer(ctx, id, dst, r, o)
}

func (l *lazyLock) NetworkCreate(ctx context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	if err := l.acquire(); err != nil {
		return network.CreateResponse{}, err
	}
	return l.Engine.NetworkCreate(ctx, name, o)
}

func (l *lazyLock) NetworkConnect(ctx context.Context, n, id string, cfg *network.EndpointSettings) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.NetworkConnect(ctx, n, id, cfg)
}

func (l *lazyLock) NetworkRemove(ctx context.Context, n string) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.NetworkRemove(ctx, n)
}

func (l *lazyLock) VolumeCreate(ctx context.Context, o volume.CreateOptions) (volume.Volume, error) {
	if err := l.acquire(); err != nil {
		return volume.Volume{}, err
	}
	return l.Engine.VolumeCreate(ctx, o)
}

func (l *lazyLock) VolumeRemove(ctx context.Context, id string, force bool) error {
	if err := l.acquire(); err != nil {
		return err
	}
	return l.Engine.VolumeRemove(ctx, id, force)
}
