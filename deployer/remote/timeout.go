package remote

import (
	"context"
	"time"

	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
)

// WithCallTimeout is deployer.WithCallTimeout for the remote engine: its
// quick calls (ping, version, inspect, list, tag) are bounded by d and fail
// with a *deployer.CallTimeoutError naming host; the rest (pull, load, save,
// create, logs) keep the caller's context. d <= 0 returns e unchanged.
func WithCallTimeout(e Engine, d time.Duration, host string) Engine {
	if d <= 0 {
		return e
	}
	return &boundedEngine{Engine: e, quick: deployer.WithCallTimeout(e, d, host)}
}

// boundedEngine sends the quick calls through the deployer's bounded
// decorator and everything else to the engine itself.
type boundedEngine struct {
	Engine
	quick deployer.Engine
}

// Bound runs fn under the quick calls' bound (see deployer.QuickBounder).
func (b *boundedEngine) Bound(ctx context.Context, call string, fn func(context.Context) error) error {
	return b.quick.(deployer.QuickBounder).Bound(ctx, call, fn)
}

func (b *boundedEngine) Ping(ctx context.Context) (dockertypes.Ping, error) {
	return b.quick.Ping(ctx)
}

func (b *boundedEngine) ServerVersion(ctx context.Context) (dockertypes.Version, error) {
	return b.quick.ServerVersion(ctx)
}

func (b *boundedEngine) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	return b.quick.ImageInspect(ctx, ref, opts...)
}

func (b *boundedEngine) ImageTag(ctx context.Context, source, target string) error {
	return b.quick.ImageTag(ctx, source, target)
}

func (b *boundedEngine) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	return b.quick.ContainerList(ctx, opts)
}

func (b *boundedEngine) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	return b.quick.ContainerInspect(ctx, id)
}

func (b *boundedEngine) NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error) {
	return b.quick.NetworkList(ctx, opts)
}

func (b *boundedEngine) VolumeList(ctx context.Context, opts volume.ListOptions) (volume.ListResponse, error) {
	return b.quick.VolumeList(ctx, opts)
}
