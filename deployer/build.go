package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"

	"github.com/invdeploy/invdeploy/deployer/internal/enginestream"
	"github.com/invdeploy/invdeploy/internal/version"
)

// BuildOptions control Build.
type BuildOptions struct {
	// Services to build; empty means every service with a build section.
	Services []string
	// Tags are extra tags for every built image (--tag).
	Tags []string
	// NoCache builds without the engine's layer cache.
	NoCache bool
	// Getenv reads VERSION and GOPROXY for build args, and DOCKER_BUILDKIT
	// (0 for the classic builder, 1 to require BuildKit); nil means os.Getenv.
	Getenv func(string) string
}

// Build builds the images of the stack's services that have a build section
// through the Engine API, with the engine's BuildKit where it has one (the
// context uploaded as a tar: no session needed) and the classic builder
// otherwise or when DOCKER_BUILDKIT=0, tagging
// each <name>:<commit> (<commit>-dirty-<hash> for uncommitted changes)
// besides the image the service names.
// It returns the tags it applied.
func (d *Deployer) Build(ctx context.Context, st *Stack, o BuildOptions) ([]string, error) {
	if len(st.Project.ServicesWithBuild()) == 0 {
		return nil, fmt.Errorf("nothing to build: no service of %s has a build section", st.Source)
	}
	names := o.Services
	if len(names) == 0 {
		names = st.Project.ServicesWithBuild()
		sort.Strings(names)
	}
	var all []string
	for _, name := range names {
		s, err := st.Project.GetService(name)
		if err != nil {
			return all, fmt.Errorf("build: %w", err)
		}
		if s.Build == nil {
			return all, fmt.Errorf("build: service %s has no build section", name)
		}
		tags, err := d.buildService(ctx, st.Project, s, o)
		all = append(all, tags...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// imageTags are the tags a built image gets: the service's image, the
// tree's tag <repo>:<commit> (or <commit>-dirty-<hash>, see gitTreeTag),
// then extra. No :latest unless the file or --tag names it.
func imageTags(ref, sha string, extra []string) []string {
	repo := repositoryOf(ref)
	tags := []string{ref}
	add := func(t string) {
		for _, x := range tags {
			if x == t {
				return
			}
		}
		tags = append(tags, t)
	}
	if sha != "" {
		add(repo + ":" + sha)
	}
	for _, t := range extra {
		if !isTagged(t) {
			t = repo + ":" + t // --tag v1 means <repo>:v1
		}
		add(t)
	}
	return tags
}

// isTagged reports whether a --tag value is a whole NAME:TAG reference
// rather than a TAG for the service's repository.
func isTagged(t string) bool {
	r, err := reference.Parse(t)
	if err != nil {
		// Not a reference: the engine will say why; a colon in its last
		// component still means NAME:TAG.
		return strings.Contains(t[strings.LastIndex(t, "/")+1:], ":")
	}
	_, ok := r.(reference.Tagged)
	return ok
}

func buildContextDir(p *types.Project, s types.ServiceConfig) string {
	dir := s.Build.Context
	if dir == "" {
		dir = "."
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(p.WorkingDir, dir)
	}
	return dir
}

func dockerfileName(s types.ServiceConfig) string {
	if s.Build.Dockerfile != "" {
		return s.Build.Dockerfile
	}
	return "Dockerfile"
}

func dockerfilePath(dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

func readDockerfile(dir, name string) (dockerfileInfo, error) {
	f, err := os.Open(dockerfilePath(dir, name))
	if err != nil {
		return dockerfileInfo{}, err
	}
	defer f.Close()
	return parseDockerfile(f)
}

func (d *Deployer) buildService(ctx context.Context, p *types.Project, s types.ServiceConfig, o BuildOptions) ([]string, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	dir := buildContextDir(p, s)
	df := dockerfileName(s)
	info, err := readDockerfile(dir, df)
	if err != nil {
		return nil, fmt.Errorf("build %s: read Dockerfile: %w", s.Name, err)
	}
	sha := gitTreeTag(dir)
	ref := ImageRef(p.Name, s)
	tags := imageTags(ref, sha, append(append([]string{}, s.Build.Tags...), o.Tags...))

	args := map[string]*string{}
	defaults := map[string]string{"VERSION": getenv("VERSION"), "REVISION": sha, "GOPROXY": getenv("GOPROXY")}
	if defaults["VERSION"] == "" {
		defaults["VERSION"] = version.Version
	}
	for k, v := range defaults {
		if info.Args[k] && v != "" {
			v := v
			args[k] = &v
		}
	}
	for k, v := range s.Build.Args {
		if v != nil {
			args[k] = v
		}
	}
	d.safeBuildArgs(s.Name, args)
	// Only the stack's own build labels: a project label would make the
	// image differ between projects that share it.
	labels := map[string]string{}
	for k, v := range s.Build.Labels {
		labels[k] = v
	}
	if !isRemoteContext(s) {
		// What the context sent, so the next up sees an edit (buildWhy).
		digest, err := d.contextDigest(p, s)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", s.Name, err)
		}
		labels[LabelBuildContext] = digest
	}

	if err := checkBuildContext(p, s); err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	opts := build.ImageBuildOptions{
		Tags:        tags,
		Dockerfile:  df,
		BuildArgs:   args,
		Target:      s.Build.Target,
		Labels:      labels,
		NoCache:     o.NoCache || s.Build.NoCache,
		PullParent:  s.Build.Pull,
		Remove:      true,
		ForceRemove: true,
		ShmSize:     int64(s.Build.ShmSize),
		ExtraHosts:  s.Build.ExtraHosts.AsList(":"),
		NetworkMode: s.Build.Network,
		CacheFrom:   s.Build.CacheFrom,
		Version:     build.BuilderV1,
	}
	kit, required, err := d.useBuildKit(ctx, getenv("DOCKER_BUILDKIT"))
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	d.out.Event("Building %s (%s) from %s", s.Name, ref, dir)
	if kit {
		err = d.buildKit(ctx, dir, df, opts)
		if err != nil && !required && errBuildKitMissing(err) {
			d.out.Event("  the engine has no BuildKit (%v): building with the classic builder", err)
			kit = false
		}
	}
	if !kit {
		err = d.buildClassic(ctx, dir, df, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	d.out.Event("Built %s: %s", s.Name, strings.Join(tags, ", "))
	return tags, nil
}

// useBuildKit decides the builder from DOCKER_BUILDKIT (env) and the
// engine: "0"/"false" is the classic builder, "1"/"true" requires BuildKit,
// unset means BuildKit when the engine runs Linux containers (its BuildKit
// answers POST /build?version=2 from API 1.39, Docker 18.09, on). required
// says a failure must not fall back.
func (d *Deployer) useBuildKit(ctx context.Context, env string) (kit, required bool, err error) {
	switch strings.ToLower(strings.TrimSpace(env)) {
	case "0", "false":
		return false, false, nil
	case "1", "true":
		return true, true, nil
	case "":
	default:
		return false, false, fmt.Errorf("DOCKER_BUILDKIT=%q: set 1 (BuildKit), 0 (classic builder) or leave it unset", env)
	}
	ping, err := d.engine.Ping(ctx)
	if err != nil {
		return false, false, fmt.Errorf("ask the engine which builders it has: %w", err)
	}
	return ping.OSType == "linux", false, nil
}

// errBuildKitMissing reports whether the engine refused a BuildKit build
// because it has no BuildKit (as opposed to the build failing).
func errBuildKitMissing(err error) bool {
	var bk *buildKitRefused
	return errors.As(err, &bk)
}

// buildKitRefused is the engine's refusal of POST /build?version=2.
type buildKitRefused struct{ err error }

func (e *buildKitRefused) Error() string { return e.err.Error() }
func (e *buildKitRefused) Unwrap() error { return e.err }

// buildKit builds through the engine's BuildKit. A Dockerfile with cache
// directives (see withCacheMounts) is sent with its cache mounts added, so
// the Go module and build caches survive between builds while the image
// contents stay those of a classic build.
func (d *Deployer) buildKit(ctx context.Context, dir, df string, opts build.ImageBuildOptions) error {
	content, err := os.ReadFile(dockerfilePath(dir, df))
	if err != nil {
		return fmt.Errorf("read Dockerfile: %w", err)
	}
	content, mounted := withCacheMounts(content)
	if !mounted {
		content = nil
	}
	opts.Version = build.BuilderBuildKit
	// Classic-only options: BuildKit removes intermediate containers itself.
	opts.Remove, opts.ForceRemove = false, false
	return d.runBuild(ctx, opts, func(w io.Writer) error { return writeContextTarAs(w, dir, df, content) }, true)
}

// buildClassic builds with the engine's classic builder.
func (d *Deployer) buildClassic(ctx context.Context, dir, df string, opts build.ImageBuildOptions) error {
	opts.Version = build.BuilderV1
	return d.runBuild(ctx, opts, func(w io.Writer) error { return writeContextTar(w, dir, df) }, false)
}

// runBuild streams the context written by tarContext to the engine and
// shows the build's progress.
func (d *Deployer) runBuild(ctx context.Context, opts build.ImageBuildOptions, tarContext func(io.Writer) error, kit bool) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarContext(pw)) }()
	defer pr.Close()
	resp, err := d.engine.ImageBuild(ctx, pr, opts)
	if err != nil {
		if kit && (cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotImplemented(err)) && strings.Contains(strings.ToLower(err.Error()), "buildkit") {
			return &buildKitRefused{err: err}
		}
		return err
	}
	defer resp.Body.Close()
	return d.showStream(resp.Body)
}

// showStream renders a build or pull stream (see streamView) and returns
// the stream's error with the last lines of output for context.
func (d *Deployer) showStream(r io.Reader) error {
	v := newStreamView(d.out)
	err := enginestream.Decode(r, v.show)
	d.out.Done()
	if err != nil {
		return v.fail(err)
	}
	return nil
}

// imageID returns the ID of a local image, "" when it is not present.
func (d *Deployer) imageID(ctx context.Context, ref string) (string, error) {
	img, err := d.engine.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

// pull pulls ref with progress.
func (d *Deployer) pull(ctx context.Context, ref string) error {
	d.out.Event("Pulling %s", ref)
	rc, err := d.engine.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	if err := d.showStream(rc); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}
