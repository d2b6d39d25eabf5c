package deployer

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Deployer runs the verbs of invdeploy against one engine.
type Deployer struct {
	engine Engine
	out    *Progress
	// announced remembers containers already reported healthy.
	announced map[string]bool
	// delivered is this machine's record of delivered values (see
	// deliveryRecord); nil outside Up and Plan.
	delivered *deliveryRecord
	// digests memoises build context digests (see contextDigest).
	digests map[string]string
}

// New returns a Deployer over engine that reports progress to out (nil: none).
func New(engine Engine, out *Progress) *Deployer {
	if out == nil {
		out = Discard()
	}
	return &Deployer{engine: noAnonymousVolumes{engine}, out: out, announced: map[string]bool{}}
}

// WithEngine returns a Deployer that reports as d does and talks to e, a
// decorator of d's engine (remote up's run cache).
func (d *Deployer) WithEngine(e Engine) *Deployer {
	return &Deployer{engine: noAnonymousVolumes{e}, out: d.out, announced: d.announced, delivered: d.delivered}
}

// noAnonymousVolumes is the engine every Deployer talks to: each container
// it removes goes with its anonymous volumes, whatever the caller asked
// (`docker rm -v`; named volumes are never removed this way). Helper
// containers made from an image that declares a VOLUME (the loader on
// postgres) and replaced containers would otherwise leave one dangling
// volume each on the engine.
type noAnonymousVolumes struct{ Engine }

// Bound keeps the wrapped engine's call bound (see QuickBounder).
func (e noAnonymousVolumes) Bound(ctx context.Context, call string, fn func(context.Context) error) error {
	return boundBy(e.Engine, ctx, call, fn)
}

// ContainerRemove removes the container and its anonymous volumes.
func (e noAnonymousVolumes) ContainerRemove(ctx context.Context, id string, o container.RemoveOptions) error {
	o.RemoveVolumes = true
	return e.Engine.ContainerRemove(ctx, id, o)
}

// projectContainers lists the containers of a project (all states), sorted by
// service then number; with services, only theirs (no rollout proxy).
func (d *Deployer) projectContainers(ctx context.Context, project string, services ...string) ([]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", LabelProject+"="+project))
	if len(services) == 1 {
		f.Add("label", LabelService+"="+services[0])
	}
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", project, err)
	}
	if len(services) > 0 {
		// A service's containers, not the proxy that invdeploy adds.
		kept := cs[:0]
		for _, c := range cs {
			if c.Labels[LabelRole] == "" {
				kept = append(kept, c)
			}
		}
		cs = kept
	}
	if len(services) > 1 {
		want := map[string]bool{}
		for _, s := range services {
			want[s] = true
		}
		kept := cs[:0]
		for _, c := range cs {
			if want[c.Labels[LabelService]] {
				kept = append(kept, c)
			}
		}
		cs = kept
	}
	sort.Slice(cs, func(i, j int) bool {
		si, sj := cs[i].Labels[LabelService], cs[j].Labels[LabelService]
		if si != sj {
			return si < sj
		}
		ni, _ := strconv.Atoi(cs[i].Labels[LabelContainerNumber])
		nj, _ := strconv.Atoi(cs[j].Labels[LabelContainerNumber])
		return ni < nj
	})
	return cs, nil
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		n := c.Names[0]
		if len(n) > 0 && n[0] == '/' {
			n = n[1:]
		}
		return n
	}
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}
