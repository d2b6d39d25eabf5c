package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

// Engine is what a remote deploy needs of the remote engine; *client.Client
// implements it.
type Engine interface {
	deployer.Engine
	ImageEngine
	PreflightEngine
}

var _ Engine = (*client.Client)(nil)

// Ways images reach the remote engine.
const (
	ViaSSH      = "ssh"
	ViaRegistry = "registry"
)

// RegistryRoute is how --via registry pushes and pulls.
type RegistryRoute struct {
	// Repository is where the app image is pushed, e.g. 127.0.0.1:5000/invoicing-api.
	Repository string
	// Tags are pushed (the git revision, latest).
	Tags []string
	// Credentials are used by the local push; without PullCredentials they
	// are also sent, in the pull request only, to the remote engine.
	Credentials registry.Credentials
	// PullCredentials, when set, are the login sent to the remote engine
	// for its pull instead of Credentials (a read-only token): the push
	// login then never reaches the host.
	PullCredentials *registry.Credentials
	// PullRepository is the same repository as the remote engine reaches
	// it, when that differs (a registry the local engine knows by another
	// address); "" means Repository.
	PullRepository string
	// RecordDir is where the pushed digest is recorded ("" : not recorded).
	RecordDir string
}

// UpOptions control a remote deploy.
type UpOptions struct {
	// Via is ViaSSH (default) or ViaRegistry.
	Via string
	// Registry is required with ViaRegistry.
	Registry *RegistryRoute
	// Preflight are the remote-only checks' inputs.
	Preflight PreflightOptions
	// ProbeCommand runs the port probe in the app image; nil: the default.
	ProbeCommand []string
	// Deploy are the options of the remote deployer.Up; Remote is forced on
	// and Build off (images are built locally and moved).
	Deploy deployer.UpOptions
	// Rebuild rebuilds images with a build section locally even when present.
	Rebuild bool
	// LocalEngine is the engine on this machine images are built in and
	// sent from (a unix:// socket); "" means DefaultLocalEngine.
	LocalEngine string
}

// UpReport is what a remote deploy did.
type UpReport struct {
	Findings *Findings
	// Moves are the image operations performed before the host's plan
	// (OpLocalBuild, OpImageSend; see planMoves), in order.
	Moves    []deployer.Op
	Transfer TransferResult
	// PulledOnHost are images the host pulled from its own registry.
	PulledOnHost []string
	Pushed       *registry.Result
	Up           *deployer.UpResult
}

// up is Up with the local engine open: local builds, localImages are
// saved and pushed from.
func (d *Deployer) up(ctx context.Context, local *deployer.Deployer, localImages ImageEngine, st *deployer.Stack, o UpOptions) (*UpReport, error) {
	remote, eng, rep := d.d, d.engine, d.out
	res := &UpReport{}
	if err := d.targetConfigDir(st.Project.Name, &o.Deploy.ConfigDir); err != nil {
		return res, err
	}
	// The remote preflight, the checks before anything is sent and the
	// deploy's own preflight ask the host the same questions: over SSH
	// each is sent once (see runCache).
	cache := newRunCache(eng)
	eng, remote = cache, remote.WithEngine(cache)
	via := o.Via
	if via == "" {
		via = ViaSSH
	}
	if via != ViaSSH && via != ViaRegistry {
		return res, fmt.Errorf("--via %q: want ssh or registry", via)
	}
	if via == ViaRegistry && (o.Registry == nil || o.Registry.Repository == "") {
		return res, errors.New("--via registry needs a registry (--registry)")
	}

	f, err := Preflight(ctx, eng, st, o.Preflight)
	res.Findings = f
	if err != nil {
		return res, err
	}
	rep.Event("Remote engine: %s", f.Engine)
	if err := f.Err(); err != nil {
		return res, err
	}
	// Every rule that needs no image (engine version, secrets, files, weak
	// literal passwords, ports held by containers) refuses here, before a
	// build or a single byte of image reaches the host.
	if _, err := remote.Check(ctx, st, deployer.CheckOptions{Remote: true, ConfigDir: o.Deploy.ConfigDir, SkipImages: true}); err != nil {
		return res, err
	}

	moves, _, err := planMoves(ctx, localImages, eng, st, buildReason(ctx, local, st, o.Rebuild), via)
	if err != nil {
		return res, err
	}
	var built []string
	var others []deployer.Op
	for _, mv := range moves {
		switch mv.Kind {
		case OpLocalBuild:
			rep.Event("Building %s locally (%s)", mv.Target, mv.Reason)
			if _, err := local.Build(ctx, st, deployer.BuildOptions{Services: []string{mv.Service}}); err != nil {
				return res, err
			}
		case OpImageSend:
			if st.Project.Services[mv.Service].Build != nil {
				built = append(built, mv.Target)
			} else {
				others = append(others, mv)
			}
		}
		res.Moves = append(res.Moves, mv)
	}
	var send []string
	for _, mv := range others {
		ref := mv.Target
		li, err := localImages.ImageInspect(ctx, ref)
		if err != nil {
			return res, fmt.Errorf("inspect local image %s: %w", ref, err)
		}
		// What was tested here is what runs there. When the local image
		// came from a registry (it has a digest for this repository), the
		// host pulls exactly that digest, which beats uploading hundreds of
		// megabytes from a laptop; otherwise, or when that fails, the local
		// copy is streamed over the SSH connection.
		if digest := repoDigest(li.RepoDigests, ref); digest != "" && st.Project.Services[mv.Service].PullPolicy != types.PullPolicyNever {
			perr := PullOnRemote(ctx, eng, digest, registry.Credentials{}, []string{ref}, rep)
			if perr == nil {
				if got, ierr := eng.ImageInspect(ctx, ref); ierr == nil && got.ID == li.ID {
					res.PulledOnHost = append(res.PulledOnHost, ref)
					continue
				}
				perr = errors.New("it pulled another image")
			}
			rep.Event("The host cannot pull %s (%s); sending the local copy", digest, firstLine(perr.Error(), 160))
		}
		send = append(send, ref)
	}
	if via == ViaSSH {
		send = append(send, built...)
	} else {
		for _, ref := range uniq(built) {
			pushed, err := pushAndPull(ctx, localImages, eng, ref, o.Registry, rep)
			if err != nil {
				return res, err
			}
			res.Pushed = pushed
		}
	}
	// The built images the host has already: no move, but the summary
	// counts them.
	var onHost []string
	for _, ref := range builtRefs(st) {
		if via == ViaSSH && !slices.Contains(built, ref) {
			onHost = append(onHost, ref)
		}
	}
	if len(send) > 0 {
		res.Transfer, err = TransferSSH(ctx, localImages, eng, send, rep)
		if err != nil {
			return res, err
		}
	}
	res.Transfer.Present = append(res.Transfer.Present, onHost...)
	if len(send)+len(onHost) > 0 {
		rep.Event("%s", res.Transfer.Summary())
	}

	// The probe runs from the app image (its own probe-ports subcommand);
	// a stack that builds nothing is probed from any of its images the host
	// now has, by asking the engine to bind each port.
	probeImage := ""
	if app := builtRefs(st); len(app) > 0 {
		probeImage = app[0]
	} else {
		for _, ref := range uniq(imageRefs(st)) {
			if _, err := eng.ImageInspect(ctx, ref); err == nil {
				probeImage = ref
				break
			}
		}
	}
	if probeImage != "" {
		if err := f.Probe(ctx, eng, probeImage, o.ProbeCommand); err != nil {
			return res, err
		}
		if err := f.Err(); err != nil {
			return res, err
		}
	} else if len(f.ToProbe) > 0 {
		rep.Event("note: ports %v not probed for host processes (no image of this stack carries the probe)", f.ToProbe)
	}

	uo := o.Deploy
	uo.Remote, uo.Build = true, false
	up, err := remote.Up(ctx, st, uo)
	res.Up = up
	return res, err
}

// pushAndPull pushes ref to the registry (unless the last recorded push
// already holds this image) and has the remote engine pull it by digest,
// tagged back as ref.
func pushAndPull(ctx context.Context, localImages ImageEngine, eng Engine, ref string, r *RegistryRoute, rep Reporter) (*registry.Result, error) {
	li, err := localImages.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("inspect local image %s: %w", ref, err)
	}
	if ri, err := eng.ImageInspect(ctx, ref); err == nil && ri.ID == li.ID {
		rep.Event("%s is already on the remote engine", ref)
		return nil, nil
	}
	var pushed registry.Result
	if rec, ok, err := registry.LoadRecord(r.RecordDir); err == nil && ok && rec.ImageID == li.ID && rec.Repository == r.Repository {
		rep.Event("Using the recorded push %s", rec.Reference)
		pushed = rec.Result
	} else {
		pe, ok := localImages.(registry.Engine)
		if !ok {
			return nil, errors.New("the local engine client cannot push")
		}
		pushed, err = registry.Push(ctx, pe, registry.PushOptions{Source: ref, Repository: r.Repository, Tags: r.Tags, Credentials: r.Credentials, Progress: rep})
		if err != nil {
			return nil, err
		}
		rep.Event("Pushed %s", pushed.Reference())
		if r.RecordDir != "" {
			if err := registry.SaveRecord(r.RecordDir, pushed, time.Now()); err != nil {
				return nil, err
			}
		}
	}
	pullRepo := r.PullRepository
	if pullRepo == "" {
		pullRepo = pushed.Repository
	}
	if err := PullOnRemote(ctx, eng, pullRepo+"@"+pushed.Digest, r.pullLogin(), []string{ref}, rep); err != nil {
		return nil, err
	}
	return &pushed, nil
}

// pullLogin is the login the remote engine pulls with: PullCredentials when
// given, else the push login.
func (r *RegistryRoute) pullLogin() registry.Credentials {
	if r.PullCredentials != nil {
		return *r.PullCredentials
	}
	return r.Credentials
}

// firstLine is the first line of s, cut to at most n bytes.
func firstLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// repoDigest is the pullable repo@sha256:... among an image's RepoDigests
// for ref's repository, or "" when the image did not come from there.
func repoDigest(digests []string, ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	for _, d := range digests {
		dn, err := reference.ParseNormalizedNamed(d)
		if err != nil {
			continue
		}
		if c, ok := dn.(reference.Canonical); ok && dn.Name() == named.Name() {
			return reference.FamiliarString(c)
		}
	}
	return ""
}
