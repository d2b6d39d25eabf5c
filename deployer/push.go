package deployer

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"

	"github.com/invdeploy/invdeploy/deployer/registry"
)

// AppImage is the stack's own application image, the one push and remote
// deploys move: the image of its one service with a build section (or of
// the service named).
type AppImage struct {
	// Service builds the image.
	Service string
	// Ref is the image the service runs, e.g. invoicing-api:latest.
	Ref string
	// Name is the last component of its repository, e.g. invoicing-api.
	Name string
	// Revision is the tag build gives it from its build context's checkout:
	// the commit, or <commit>-dirty-<hash> (gitTreeTag); "" outside git.
	Revision string
}

// AppImage finds the stack's application image: that of service, or of the
// one service with a build section when service is "". A stack with none
// or several (and no service named) is an invalid request (ErrInvalid).
func (st *Stack) AppImage(service string) (AppImage, error) {
	p := st.Project
	names := p.ServicesWithBuild()
	sort.Strings(names)
	if service != "" {
		s, err := p.GetService(service)
		if err != nil {
			return AppImage{}, Invalidf("--service %s: %v", service, err)
		}
		if s.Build == nil {
			return AppImage{}, Invalidf("--service %s has no build section: nothing of ours to push", service)
		}
		names = []string{service}
	}
	if len(names) != 1 {
		return AppImage{}, Invalidf("the stack has %d services with a build section (%s): choose one with --service", len(names), strings.Join(names, ", "))
	}
	s := p.Services[names[0]]
	ref := ImageRef(p.Name, s)
	repo := repositoryOf(ref)
	name := repo[strings.LastIndex(repo, "/")+1:]
	return AppImage{Service: s.Name, Ref: ref, Name: name, Revision: gitTreeTag(buildContextDir(p, s))}, nil
}

// repositoryOf is ref without its tag or digest, spelled as given (no
// docker.io/library/ added), e.g. 127.0.0.1:5000/team/app for
// 127.0.0.1:5000/team/app:v1.
func repositoryOf(ref string) string {
	if r, err := reference.Parse(ref); err == nil {
		if named, ok := r.(reference.Named); ok {
			return named.Name()
		}
	}
	// Not a valid reference (the engine will say why): cut a tag after the
	// last path component and a digest.
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// PushTags are the tags push gives: the version tag (tag, else the git
// revision) and latest.
func PushTags(tag, revision string) []string {
	v := tag
	if v == "" {
		v = revision
	}
	if v == "" || v == "latest" {
		return []string{"latest"}
	}
	return []string{v, "latest"}
}

// PushOptions control Push.
type PushOptions struct {
	// Service whose image is pushed; "" means the one with a build section.
	Service string
	// Registry is HOST[:PORT][/NAMESPACE] or a Docker Hub name; "" means
	// Docker Hub under the login's user name.
	Registry string
	// Tag is the version tag pushed besides latest; "" means the git
	// revision of the build context.
	Tag string
	// Credentials log in to the registry.
	Credentials registry.Credentials
	// Rebuild builds the image even when the revision's image is present.
	Rebuild bool
	// RecordDir is where the pushed digest is recorded for remote up --via
	// registry; "" means ConfigDir of the project.
	RecordDir string
}

// PushResult is what Push did.
type PushResult struct {
	registry.Result
	// RecordErr is why the digest was not recorded (nil: it was); the push
	// itself succeeded.
	RecordErr error
}

// Push pushes the stack's application image to a registry as
// <registry>/<name>:<tag or git revision> and :latest, building it first
// when the revision's image is missing here (or o.Rebuild), and records the
// pushed digest. Options that cannot be run (no app image, a bad
// registry) wrap ErrInvalid.
func (d *Deployer) Push(ctx context.Context, st *Stack, o PushOptions) (*PushResult, error) {
	app, err := st.AppImage(o.Service)
	if err != nil {
		return nil, err
	}
	repo, err := registry.Repository(o.Registry, o.Credentials.Username, app.Name)
	if err != nil {
		return nil, &InvalidError{Err: err}
	}
	source, err := d.ensureBuilt(ctx, st, app, o.Rebuild)
	if err != nil {
		return nil, err
	}
	res, err := registry.Push(ctx, d.engine, registry.PushOptions{
		Source: source, Repository: repo, Tags: PushTags(o.Tag, app.Revision), Credentials: o.Credentials, Progress: d.out,
	})
	if err != nil {
		return nil, err
	}
	out := &PushResult{Result: res}
	dir := o.RecordDir
	if dir == "" {
		dir, out.RecordErr = ConfigDir(st.Project.Name)
	}
	if out.RecordErr == nil {
		out.RecordErr = registry.SaveRecord(dir, res, time.Now())
	}
	return out, nil
}

// ensureBuilt builds the app image when the revision's tag (or, outside
// git, the service's image) is missing locally, and returns the local
// image to push.
func (d *Deployer) ensureBuilt(ctx context.Context, st *Stack, app AppImage, rebuild bool) (string, error) {
	source := app.Ref
	if app.Revision != "" {
		source = repositoryOf(app.Ref) + ":" + app.Revision
	}
	_, err := d.engine.ImageInspect(ctx, source)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect local image %s: %w", source, err)
	}
	if err == nil && !rebuild {
		return source, nil
	}
	if _, err := d.Build(ctx, st, BuildOptions{Services: []string{app.Service}}); err != nil {
		return "", err
	}
	if _, err := d.engine.ImageInspect(ctx, source); err != nil {
		return app.Ref, nil // built without the revision tag: push what the service runs
	}
	return source, nil
}
