package remote

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// runCacheMaxAge bounds how old a cached list or inspect may be when it is
// used again. A remote up asks the same questions in its remote preflight,
// in the preflight before anything is sent and again in the deploy's own
// preflight, within a second when nothing is sent; after minutes of
// building or sending images the host is asked anew.
const runCacheMaxAge = 5 * time.Second

// runCache is the remote engine as one remote up sees it. The questions a
// remote up asks several times (every preflight asks them, and remote up
// runs three: its own, one before anything is sent, and the deploy's),
// whose answers change only when something changes the host, are sent over
// the SSH connection once: the engine's ping and version for the whole run;
// an image's inspect, a network list and the list of running containers
// (the ports they publish) for runCacheMaxAge, and only until the run
// changes images, networks or containers through this engine. Everything
// else, the project's container lists and inspects that the health wait
// polls among them, goes to the engine every time.
//
// It embeds Engine: a method added to the interface later passes through
// uncached and invalidates nothing, and TestRunCacheDecidesEveryMethod
// fails until it is put in one of the lists there.
type runCache struct {
	Engine
	now func() time.Time

	mu       sync.Mutex
	ping     *dockertypes.Ping
	version  *dockertypes.Version
	images   map[string]cachedImage
	networks map[string]cached[[]network.Summary]
	running  *cached[[]container.Summary]
}

type cached[T any] struct {
	v  T
	at time.Time
}

type cachedImage struct {
	cached[image.InspectResponse]
	// missing: the engine answered not found.
	missing error
}

func newRunCache(e Engine) *runCache {
	return &runCache{Engine: e, now: time.Now, images: map[string]cachedImage{}, networks: map[string]cached[[]network.Summary]{}}
}

func (c *runCache) fresh(at time.Time) bool { return c.now().Sub(at) < runCacheMaxAge }

func (c *runCache) Ping(ctx context.Context) (dockertypes.Ping, error) {
	c.mu.Lock()
	p, v := c.ping, c.version
	c.mu.Unlock()
	if p != nil {
		return *p, nil
	}
	// The version already read says what a ping would: the engine is
	// there, and its API (the deploy's preflight pings after the remote
	// preflight read the version).
	if v != nil {
		return dockertypes.Ping{APIVersion: v.APIVersion, OSType: v.Os}, nil
	}
	got, err := c.Engine.Ping(ctx)
	if err == nil {
		c.mu.Lock()
		c.ping = &got
		c.mu.Unlock()
	}
	return got, err
}

func (c *runCache) ServerVersion(ctx context.Context) (dockertypes.Version, error) {
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	if v != nil {
		return *v, nil
	}
	got, err := c.Engine.ServerVersion(ctx)
	if err == nil {
		c.mu.Lock()
		c.version = &got
		c.mu.Unlock()
	}
	return got, err
}

func (c *runCache) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	if len(opts) > 0 {
		return c.Engine.ImageInspect(ctx, ref, opts...)
	}
	c.mu.Lock()
	ci, ok := c.images[ref]
	c.mu.Unlock()
	if ok && c.fresh(ci.at) {
		return ci.v, ci.missing
	}
	at := c.now()
	got, err := c.Engine.ImageInspect(ctx, ref)
	if err == nil || cerrdefs.IsNotFound(err) {
		c.mu.Lock()
		c.images[ref] = cachedImage{cached: cached[image.InspectResponse]{v: got, at: at}, missing: err}
		c.mu.Unlock()
	}
	return got, err
}

func (c *runCache) NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error) {
	key, err := filters.ToJSON(opts.Filters)
	if err != nil {
		return c.Engine.NetworkList(ctx, opts)
	}
	c.mu.Lock()
	cn, ok := c.networks[key]
	c.mu.Unlock()
	if ok && c.fresh(cn.at) {
		return slices.Clone(cn.v), nil
	}
	at := c.now()
	got, err := c.Engine.NetworkList(ctx, opts)
	if err == nil {
		c.mu.Lock()
		c.networks[key] = cached[[]network.Summary]{v: slices.Clone(got), at: at}
		c.mu.Unlock()
	}
	return got, err
}

// ContainerList answers the list of running containers (no options: what
// the preflights read published ports from) from the cache; any other list
// (a project's containers, whose health the wait follows) goes to the engine.
func (c *runCache) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	if opts.All || opts.Size || opts.Latest || opts.Since != "" || opts.Before != "" || opts.Limit != 0 || opts.Filters.Len() > 0 {
		return c.Engine.ContainerList(ctx, opts)
	}
	c.mu.Lock()
	r := c.running
	c.mu.Unlock()
	if r != nil && c.fresh(r.at) {
		return slices.Clone(r.v), nil
	}
	at := c.now()
	got, err := c.Engine.ContainerList(ctx, opts)
	if err == nil {
		c.mu.Lock()
		c.running = &cached[[]container.Summary]{v: slices.Clone(got), at: at}
		c.mu.Unlock()
	}
	return got, err
}

func (c *runCache) forgetImages() {
	c.mu.Lock()
	clear(c.images)
	c.mu.Unlock()
}

func (c *runCache) forgetNetworks() {
	c.mu.Lock()
	clear(c.networks)
	c.mu.Unlock()
}

func (c *runCache) forgetContainers() {
	c.mu.Lock()
	c.running = nil
	c.mu.Unlock()
}

// forgetImagesAfter forgets the cached images now and when rc, the stream of
// an operation that adds images while it is read, is closed.
func (c *runCache) forgetImagesAfter(rc io.ReadCloser) io.ReadCloser {
	c.forgetImages()
	if rc == nil {
		return nil
	}
	return &closeHook{ReadCloser: rc, hook: c.forgetImages}
}

type closeHook struct {
	io.ReadCloser
	hook func()
}

func (h *closeHook) Close() error {
	err := h.ReadCloser.Close()
	h.hook()
	return err
}

func (c *runCache) ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error) {
	rc, err := c.Engine.ImagePull(ctx, ref, opts)
	return c.forgetImagesAfter(rc), err
}

func (c *runCache) ImageBuild(ctx context.Context, buildContext io.Reader, opts build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	resp, err := c.Engine.ImageBuild(ctx, buildContext, opts)
	resp.Body = c.forgetImagesAfter(resp.Body)
	return resp, err
}

func (c *runCache) ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error) {
	resp, err := c.Engine.ImageLoad(ctx, input, opts...)
	resp.Body = c.forgetImagesAfter(resp.Body)
	return resp, err
}

func (c *runCache) ImageTag(ctx context.Context, source, target string) error {
	defer c.forgetImages()
	return c.Engine.ImageTag(ctx, source, target)
}

func (c *runCache) NetworkCreate(ctx context.Context, name string, opts network.CreateOptions) (network.CreateResponse, error) {
	defer c.forgetNetworks()
	return c.Engine.NetworkCreate(ctx, name, opts)
}

func (c *runCache) NetworkConnect(ctx context.Context, networkID, containerID string, cfg *network.EndpointSettings) error {
	defer c.forgetNetworks()
	return c.Engine.NetworkConnect(ctx, networkID, containerID, cfg)
}

func (c *runCache) NetworkRemove(ctx context.Context, networkID string) error {
	defer c.forgetNetworks()
	return c.Engine.NetworkRemove(ctx, networkID)
}

func (c *runCache) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error) {
	defer c.forgetContainers()
	return c.Engine.ContainerCreate(ctx, cfg, host, net, platform, name)
}

func (c *runCache) ContainerStart(ctx context.Context, id string, opts container.StartOptions) error {
	defer c.forgetContainers()
	return c.Engine.ContainerStart(ctx, id, opts)
}

func (c *runCache) ContainerStop(ctx context.Context, id string, opts container.StopOptions) error {
	defer c.forgetContainers()
	return c.Engine.ContainerStop(ctx, id, opts)
}

func (c *runCache) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	defer c.forgetContainers()
	return c.Engine.ContainerRemove(ctx, id, opts)
}

// ContainerRename (a rolled container taking its service's name) changes
// the names a cached list holds.
func (c *runCache) ContainerRename(ctx context.Context, id, name string) error {
	defer c.forgetContainers()
	return c.Engine.ContainerRename(ctx, id, name)
}
