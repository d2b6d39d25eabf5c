package deployer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// DefaultCallTimeout bounds each engine call that should answer at once
// (ping, version, inspect, list, tag). An engine that accepts connections
// (or completes TLS) but never answers would otherwise hang a command forever.
const DefaultCallTimeout = 30 * time.Second

// CallTimeoutError is returned when the engine did not answer a quick call
// in time.
type CallTimeoutError struct {
	// Host names the engine as the user gave it (passwords redacted).
	Host string
	// Call is what was asked, e.g. "list containers".
	Call string
	// After is the bound that passed.
	After time.Duration
	// Err is the client's error.
	Err error
}

func (e *CallTimeoutError) Error() string {
	return fmt.Sprintf("engine %s did not answer %s within %s: it accepts connections but does not respond; check the engine on that host (systemctl status docker; docker info) or allow longer with --engine-timeout", e.Host, e.Call, e.After)
}

// Unwrap returns the client's error (a context deadline).
func (e *CallTimeoutError) Unwrap() error { return e.Err }

// WithCallTimeout returns e with every quick call bounded by d; host names
// the engine in the error ("" means e.DaemonHost()). Calls that may rightly
// take long (build, pull, logs, stop, copy, create) keep the caller's
// context alone. d <= 0 returns e unchanged.
func WithCallTimeout(e Engine, d time.Duration, host string) Engine {
	if d <= 0 {
		return e
	}
	if host == "" {
		host = e.DaemonHost()
	}
	return &timeoutEngine{Engine: e, d: d, host: host}
}

// timeoutEngine is the decorator of WithCallTimeout: it overrides the quick
// calls of the Engine it embeds.
type timeoutEngine struct {
	Engine
	d    time.Duration
	host string
}

// bounded runs fn under t's bound and turns a deadline hit by the bound (not
// by the caller's own context) into a *CallTimeoutError.
func bounded[T any](ctx context.Context, t *timeoutEngine, call string, fn func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	v, err := fn(cctx)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return v, &CallTimeoutError{Host: t.host, Call: call, After: t.d, Err: err}
	}
	return v, err
}

// QuickBounder is implemented by engines that bound quick calls
// (WithCallTimeout): Bound runs fn, one call that should answer at once but
// that the decorator cannot recognise by its method (the create of the
// deploy lock, as against a service container's create, which may copy a
// volume), under the same bound and error.
type QuickBounder interface {
	Bound(ctx context.Context, call string, fn func(context.Context) error) error
}

// Bound runs fn under t's bound (see QuickBounder).
func (t *timeoutEngine) Bound(ctx context.Context, call string, fn func(context.Context) error) error {
	_, err := bounded(ctx, t, call, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

// quick runs fn, one engine call that should answer at once, under the
// engine's call bound when it has one (see QuickBounder).
func (d *Deployer) quick(ctx context.Context, call string, fn func(context.Context) error) error {
	return boundBy(d.engine, ctx, call, fn)
}

// boundBy runs fn under e's call bound when e has one; decorators of an
// engine forward their Bound to it, so the bound survives wrapping.
func boundBy(e Engine, ctx context.Context, call string, fn func(context.Context) error) error {
	if b, ok := e.(QuickBounder); ok {
		return b.Bound(ctx, call, fn)
	}
	return fn(ctx)
}

func (t *timeoutEngine) Ping(ctx context.Context) (types.Ping, error) {
	return bounded(ctx, t, "ping", t.Engine.Ping)
}

func (t *timeoutEngine) ServerVersion(ctx context.Context) (types.Version, error) {
	return bounded(ctx, t, "version", t.Engine.ServerVersion)
}

func (t *timeoutEngine) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	return bounded(ctx, t, "inspect image "+ref, func(ctx context.Context) (image.InspectResponse, error) {
		return t.Engine.ImageInspect(ctx, ref, opts...)
	})
}

func (t *timeoutEngine) ImageTag(ctx context.Context, source, target string) error {
	_, err := bounded(ctx, t, "tag "+target, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, t.Engine.ImageTag(ctx, source, target)
	})
	return err
}

func (t *timeoutEngine) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	return bounded(ctx, t, "list containers", func(ctx context.Context) ([]container.Summary, error) {
		return t.Engine.ContainerList(ctx, opts)
	})
}

func (t *timeoutEngine) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	return bounded(ctx, t, "inspect container "+id, func(ctx context.Context) (container.InspectResponse, error) {
		return t.Engine.ContainerInspect(ctx, id)
	})
}

func (t *timeoutEngine) NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error) {
	return bounded(ctx, t, "list networks", func(ctx context.Context) ([]network.Summary, error) {
		return t.Engine.NetworkList(ctx, opts)
	})
}

func (t *timeoutEngine) VolumeList(ctx context.Context, opts volume.ListOptions) (volume.ListResponse, error) {
	return bounded(ctx, t, "list volumes", func(ctx context.Context) (volume.ListResponse, error) {
		return t.Engine.VolumeList(ctx, opts)
	})
}
