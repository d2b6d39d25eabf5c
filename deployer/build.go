package deployer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"

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
	// Getenv reads VERSION and GOPROXY for build args; nil means os.Getenv.
	Getenv func(string) string
}

// Build builds the images of the stack's services that have a build section
// through the Engine API (the classic builder: no session needed), tagging
// each <name>:<git-sha> and <name>:latest besides the image the service names.
// It returns the tags it applied.
func (d *Deployer) Build(ctx context.Context, st *Stack, o BuildOptions) ([]string, error) {
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

// imageTags are the tags a built image gets: the service's image, and
// <repo>:<git-sha> and <repo>:latest, then extra.
func imageTags(ref, sha string, extra []string) []string {
	repo := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo = ref[:i]
	}
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
	add(repo + ":latest")
	for _, t := range extra {
		if !strings.Contains(t[strings.LastIndex(t, "/")+1:], ":") {
			t = repo + ":" + t // --tag v1 means <repo>:v1
		}
		add(t)
	}
	return tags
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

func readDockerfile(dir, name string) (dockerfileInfo, error) {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, name)
	}
	f, err := os.Open(path)
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
	sha := gitRevision(dir)
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

	pr, err := openBuildContext(p, s)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	defer pr.Close()

	d.out.Event("Building %s (%s) from %s", s.Name, ref, dir)
	resp, err := d.engine.ImageBuild(ctx, pr, build.ImageBuildOptions{
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
	})
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	defer resp.Body.Close()
	if err := d.showStream(resp.Body, "build "+s.Name); err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	d.out.Event("Built %s: %s", s.Name, strings.Join(tags, ", "))
	return tags, nil
}

// jsonMessage is one line of the engine's build or pull progress stream.
type jsonMessage struct {
	Stream   string `json:"stream"`
	Status   string `json:"status"`
	Progress string `json:"progress"`
	ID       string `json:"id"`
	Error    string `json:"error"`
	Detail   struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// showStream renders a build or pull stream: each build step as an event,
// pull status as a live line; it returns the stream's error, with the last
// lines of output for context.
func (d *Deployer) showStream(r io.Reader, what string) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	var tail []string
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("read %s progress: %w", what, err)
		}
		if m.Error != "" || m.Detail.Message != "" {
			msg := m.Detail.Message
			if msg == "" {
				msg = m.Error
			}
			if len(tail) > 0 {
				return fmt.Errorf("%s\n%s", msg, strings.Join(tail, "\n"))
			}
			return fmt.Errorf("%s", msg)
		}
		if m.Stream != "" {
			for _, line := range strings.Split(strings.TrimRight(m.Stream, "\n"), "\n") {
				line = strings.TrimRight(line, "\r")
				if line == "" {
					continue
				}
				tail = append(tail, line)
				if len(tail) > 10 {
					tail = tail[1:]
				}
				if strings.HasPrefix(line, "Step ") {
					d.out.Event("  %s", line)
				} else {
					d.out.Live("  " + line)
				}
			}
		}
		if m.Status != "" {
			line := m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			if m.Progress != "" {
				line += " " + m.Progress
			}
			d.out.Live("  " + line)
		}
	}
	d.out.Done()
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
	if err := d.showStream(rc, "pull "+ref); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}
