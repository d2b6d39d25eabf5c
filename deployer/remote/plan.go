package remote

import (
	"context"
	"fmt"
	"github.com/compose-spec/compose-go/v2/types"
	"sort"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
)

// Operations remote up performs before the host's engine plan: images are
// built on this machine and moved to the host.
const (
	// OpLocalBuild builds a service's image on this machine.
	OpLocalBuild deployer.OpKind = "local-build"
	// OpImageSend makes the host run this machine's image: pulled there by
	// its registry digest when it came from a registry, else streamed over
	// the connection (--via ssh), or pushed and pulled by digest (--via
	// registry).
	OpImageSend deployer.OpKind = "image-send"
)

// planMoves is the one rule of which images remote up builds here and
// moves to the host, in service order: an image with a build section is
// built when NeedsBuild says so, and moved unless the host has the same
// image (--via registry: always pushed, the push record skips a repeat);
// another image present here is moved when the host has another one (one
// absent here is the host's to pull, in the engine plan). It only reads.
func planMoves(ctx context.Context, localImages, host ImageEngine, st *deployer.Stack, buildWhy func(types.ServiceConfig) (string, error), via string) ([]deployer.Op, map[string]string, error) {
	p := st.Project
	names := p.ServiceNames()
	sort.Strings(names)
	moves := []deployer.Op{}
	known := map[string]string{} // ref -> the image id the host will have
	seen := map[string]bool{}
	for _, name := range names {
		s := p.Services[name]
		ref := deployer.ImageRef(p.Name, s)
		if seen[ref] {
			continue
		}
		seen[ref] = true
		li, err := localImages.ImageInspect(ctx, ref)
		missing := cerrdefs.IsNotFound(err)
		if err != nil && !missing {
			return nil, nil, fmt.Errorf("inspect local image %s: %w", ref, err)
		}
		if s.Build == nil && missing {
			continue
		}
		send := deployer.Op{Kind: OpImageSend, Service: name, Target: ref}
		why := ""
		if s.Build != nil {
			if why, err = buildWhy(s); err != nil {
				return nil, nil, err
			}
		}
		if why != "" {
			moves = append(moves, deployer.Op{Kind: OpLocalBuild, Service: name, Target: ref, Reason: why})
			send.Reason = "built on this machine, then moved to the host"
			moves = append(moves, send)
			continue
		}
		known[ref] = li.ID
		ri, err := host.ImageInspect(ctx, ref)
		switch {
		case err != nil && !cerrdefs.IsNotFound(err):
			return nil, nil, fmt.Errorf("inspect remote image %s: %w", ref, err)
		case s.Build != nil && via == ViaRegistry:
			send.Reason = "pushed to the registry, pulled by the host by digest"
		case err != nil:
			send.Reason = "not on the host"
		case ri.ID != li.ID:
			send.Reason = "the host has another image under this name"
		default:
			continue
		}
		moves = append(moves, send)
	}
	return moves, known, nil
}

// buildReason is why remote up builds a service on this machine before
// sending it ("" when it does not): the local engine's one build rule,
// which also rebuilds an image whose build context changed.
func buildReason(ctx context.Context, local *deployer.Deployer, st *deployer.Stack, rebuild bool) func(types.ServiceConfig) (string, error) {
	return func(s types.ServiceConfig) (string, error) {
		return local.LocalBuildReason(ctx, st.Project, s, rebuild)
	}
}

// knownImages is the host's engine as the dry run sees it after the moves:
// an image moved there inspects as this machine's; one built here first
// is present with an id no container runs, and the plan's steps for it
// are conditions (UpOptions.Pending): which image the build makes cannot
// be known yet.
type knownImages struct {
	Engine
	ids map[string]string
}

const pendingID = "sha256:built-on-this-machine-by-remote-up"

func (k knownImages) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	if id, ok := k.ids[ref]; ok {
		return image.InspectResponse{ID: id}, nil
	}
	return k.Engine.ImageInspect(ctx, ref, opts...)
}

// Plan is remote up --dry-run: the checks of remote up that need no image
// on the host, then the plan it applies: the images it builds here and
// moves, then the host engine's plan (deployer.Plan) computed as it will
// be once they are moved. Nothing is built, sent or changed.
func (d *Deployer) Plan(ctx context.Context, st *deployer.Stack, o UpOptions) (*deployer.Plan, *Findings, error) {
	if d.conn.Endpoint.Scheme == "ssh" && o.Preflight.SSHPort == 0 {
		o.Preflight.SSHPort = d.conn.Endpoint.Port
	}
	host := o.LocalEngine
	if host == "" {
		host = DefaultLocalEngine
	}
	local, err := deployer.NewLocalClient(host)
	if err != nil {
		return nil, nil, err
	}
	defer local.Close()
	return d.plan(ctx, deployer.New(deployer.WithCallTimeout(local, d.callTimeout, ""), d.out), local, st, o)
}

func (d *Deployer) plan(ctx context.Context, local *deployer.Deployer, localImages ImageEngine, st *deployer.Stack, o UpOptions) (*deployer.Plan, *Findings, error) {
	if err := d.targetConfigDir(st.Project.Name, &o.Deploy.ConfigDir); err != nil {
		return nil, nil, err
	}
	cache := newRunCache(d.engine)
	f, err := Preflight(ctx, cache, st, o.Preflight)
	if err != nil {
		return nil, f, err
	}
	if err := f.Err(); err != nil {
		return nil, f, err
	}
	via := o.Via
	if via == "" {
		via = ViaSSH
	}
	moves, known, err := planMoves(ctx, localImages, cache, st, buildReason(ctx, local, st, o.Rebuild), via)
	if err != nil {
		return nil, f, err
	}
	uo := o.Deploy
	uo.Remote, uo.Build, uo.Pending = true, false, map[string]string{}
	for _, mv := range moves {
		if mv.Kind == OpLocalBuild {
			known[mv.Target] = pendingID
			uo.Pending[mv.Target] = "the build here changes the image"
		}
	}
	pl, err := d.d.WithEngine(knownImages{Engine: cache, ids: known}).Plan(ctx, st, uo)
	if pl != nil {
		pl.Ops = append(moves, pl.Ops...)
	}
	return pl, f, err
}

// builtRefs are the images of the services with a build section, in
// service order.
func builtRefs(st *deployer.Stack) []string {
	var out []string
	for _, name := range sortedServices(st) {
		if s := st.Project.Services[name]; s.Build != nil {
			out = append(out, deployer.ImageRef(st.Project.Name, s))
		}
	}
	return uniq(out)
}

// imageRefs are the images of the services without one, in service order.
func imageRefs(st *deployer.Stack) []string {
	var out []string
	for _, name := range sortedServices(st) {
		if s := st.Project.Services[name]; s.Build == nil {
			out = append(out, deployer.ImageRef(st.Project.Name, s))
		}
	}
	return uniq(out)
}

func sortedServices(st *deployer.Stack) []string {
	names := st.Project.ServiceNames()
	sort.Strings(names)
	return names
}
