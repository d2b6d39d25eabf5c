package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
)

// Release history lives on the engine, so `releases` and `rollback` work from
// any machine: every successful up that changed something records release N
// as a small labelled volume, invdeploy-release-<project>-<N> (the release is
// in its labels; it holds no data and no secret). While the stack is deployed,
// one never-started container per service of each kept release,
// invdeploy-release-<project>-<N>-<service>, made from that service's image by
// id, protects the image from `docker image prune -a`, so a rollback needs no
// build and no registry. down removes those containers (a stack that is down
// leaves no container behind, as with compose) and keeps the history; down
// --volumes removes the history too.

// KeepReleases is how many releases (and their images) are kept per project.
const KeepReleases = 5

const (
	labelReleaseProject = "io.invdeploy.release.project"
	labelReleaseNumber  = "io.invdeploy.release.number"
	labelReleaseInfo    = "io.invdeploy.release.info"
)

// Release is one recorded successful up.
type Release struct {
	Number   int    `json:"number"`
	Project  string `json:"project"`
	Revision string `json:"revision,omitempty"`
	// Dirty says the release ran images built from a tree with uncommitted
	// changes (remote up --allow-dirty, a local up of edited files): what
	// ran is not something its commit names. Releases recorded before the
	// field say so by their revision's -dirty suffix (see FromDirtyTree).
	Dirty    bool                      `json:"dirty"`
	User     string                    `json:"user"`
	Machine  string                    `json:"machine"`
	Command  string                    `json:"command"`
	Created  time.Time                 `json:"created"`
	Services map[string]ReleaseService `json:"services"`
}

// ReleaseService is one service's part of a release.
type ReleaseService struct {
	// Image is the reference the stack named (e.g. invoicing-api:1a2b3c).
	Image string `json:"image"`
	// ImageID is the exact image that ran (sha256:...).
	ImageID string `json:"image_id"`
	// ConfigHash is the service's config hash label.
	ConfigHash string `json:"config_hash"`
}

func releaseName(project string, n int, service string) string {
	return fmt.Sprintf("invdeploy-release-%s-%d-%s", project, n, service)
}

// recordRelease records what is running now as the project's next release
// and forgets the ones beyond KeepReleases. When nothing differs from the
// newest release (same image and config per service) it is returned as is.
// A rollback (from set) runs from's images again, so it keeps from's
// revision.
func (d *Deployer) recordRelease(ctx context.Context, p *types.Project, imageIDs map[string]string, command string, from *Release) (*Release, error) {
	rels, err := d.Releases(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	h := currentHolder(command, time.Now())
	r := &Release{Number: 1, Project: p.Name, User: h.User, Machine: h.Machine,
		Command: command, Created: time.Now().UTC(), Services: map[string]ReleaseService{}}
	if from != nil {
		r.Revision, r.Dirty = from.Revision, from.FromDirtyTree()
	} else {
		r.Revision, r.Dirty = treeRevision(p)
	}
	if len(rels) > 0 {
		r.Number = rels[0].Number + 1
	}
	for name, id := range imageIDs {
		s := p.Services[name]
		hash, err := ConfigHash(s)
		if err != nil {
			return nil, err
		}
		r.Services[name] = ReleaseService{Image: ImageRef(p.Name, s), ImageID: id, ConfigHash: hash}
	}
	if len(rels) > 0 && sameServices(rels[0].Services, r.Services) {
		// An up that changed nothing is no new release; after a down the
		// kept releases' images need their protection again.
		return &rels[0], d.protectReleases(ctx, p.Name, rels)
	}
	info, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if _, err := d.engine.VolumeCreate(ctx, volume.CreateOptions{
		Name: releaseVolume(p.Name, r.Number),
		Labels: map[string]string{
			LabelManagedBy:      "invdeploy",
			labelReleaseProject: p.Name,
			labelReleaseNumber:  strconv.Itoa(r.Number),
			labelReleaseInfo:    string(info),
		},
	}); err != nil {
		return nil, fmt.Errorf("record release %d of %s: %w", r.Number, p.Name, err)
	}
	if len(rels) >= KeepReleases {
		for _, old := range rels[KeepReleases-1:] {
			if err := d.forgetRelease(ctx, old.Number, p.Name, true); err != nil {
				return r, err
			}
		}
		rels = rels[:KeepReleases-1]
	}
	return r, d.protectReleases(ctx, p.Name, append([]Release{*r}, rels...))
}

// protectReleases makes sure every kept release has its record containers,
// which keep its images from prune. One list call when all are there (a
// no-op up); an image already gone is skipped (its rollback will say so).
func (d *Deployer) protectReleases(ctx context.Context, project string, rels []Release) error {
	cs, err := d.releaseContainers(ctx, project, 0)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, c := range cs {
		have[containerName(c)] = true
	}
	for _, r := range rels {
		names := make([]string, 0, len(r.Services))
		for name := range r.Services {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			cname := releaseName(project, r.Number, name)
			if have[cname] {
				continue
			}
			_, err := d.engine.ContainerCreate(ctx, &container.Config{
				Image:      r.Services[name].ImageID,
				Entrypoint: []string{"/invdeploy-release-record-never-runs"},
				Labels: map[string]string{
					LabelManagedBy:      "invdeploy",
					labelReleaseProject: project,
					labelReleaseNumber:  strconv.Itoa(r.Number),
				},
			}, &container.HostConfig{NetworkMode: "none"}, nil, nil, cname)
			if cerrdefs.IsConflict(err) || cerrdefs.IsNotFound(err) {
				continue // created meanwhile, or the image is gone
			}
			if err != nil {
				return fmt.Errorf("protect the images of release %d of %s: %w", r.Number, project, err)
			}
		}
	}
	return nil
}

func sameServices(a, b map[string]ReleaseService) bool {
	if len(a) != len(b) {
		return false
	}
	for name, sa := range a {
		if sb, ok := b[name]; !ok || sa.ImageID != sb.ImageID || sa.ConfigHash != sb.ConfigHash {
			return false
		}
	}
	return true
}

func (d *Deployer) forgetRelease(ctx context.Context, n int, project string, history bool) error {
	cs, err := d.releaseContainers(ctx, project, n)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("forget release %d of %s: %w", n, project, err)
		}
	}
	if !history {
		return nil
	}
	if err := d.engine.VolumeRemove(ctx, releaseVolume(project, n), false); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("forget release %d of %s: %w", n, project, err)
	}
	return nil
}

// unprotectReleases removes every record container of project (down): the
// history stays, its images may then be pruned.
func (d *Deployer) unprotectReleases(ctx context.Context, project string) error {
	return d.forgetRelease(ctx, 0, project, false)
}

// removeReleases removes project's whole release history (down --volumes).
func (d *Deployer) removeReleases(ctx context.Context, project string) (int, error) {
	rels, err := d.Releases(ctx, project)
	if err != nil {
		return 0, err
	}
	if err := d.unprotectReleases(ctx, project); err != nil {
		return 0, err
	}
	for _, r := range rels {
		if err := d.engine.VolumeRemove(ctx, releaseVolume(project, r.Number), false); err != nil && !cerrdefs.IsNotFound(err) {
			return 0, fmt.Errorf("remove release %d of %s: %w", r.Number, project, err)
		}
	}
	return len(rels), nil
}

func releaseVolume(project string, n int) string {
	return fmt.Sprintf("invdeploy-release-%s-%d", project, n)
}

func (d *Deployer) releaseContainers(ctx context.Context, project string, n int) ([]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", labelReleaseProject+"="+project))
	if n > 0 {
		f.Add("label", labelReleaseNumber+"="+strconv.Itoa(n))
	}
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", project, err)
	}
	return cs, nil
}

// Releases returns the project's recorded releases, newest first.
func (d *Deployer) Releases(ctx context.Context, project string) ([]Release, error) {
	vs, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelReleaseProject+"="+project))})
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", project, err)
	}
	out := make([]Release, 0, len(vs.Volumes))
	for _, v := range vs.Volumes {
		var r Release
		if err := json.Unmarshal([]byte(v.Labels[labelReleaseInfo]), &r); err != nil || r.Number == 0 || r.Project != project {
			continue // not ours, or damaged: ignore rather than fail the listing
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number > out[j].Number })
	return out, nil
}

// RollbackOptions control Rollback.
type RollbackOptions struct {
	// To is the release to return to; 0 means the one before the newest.
	To int
	// Up is how the release is deployed (wait timeout, lock).
	Up UpOptions
}

// Rollback redeploys the images of an earlier release, without building:
// each service of st that the release recorded runs that release's exact
// image again (services the release did not have are deployed as st says).
// The redeploy is an ordinary Up, so it is checked, locked and recorded as a
// new release like any other.
func (d *Deployer) Rollback(ctx context.Context, st *Stack, o RollbackOptions) (*Release, *UpResult, error) {
	rels, err := d.Releases(ctx, st.Project.Name)
	if err != nil {
		return nil, nil, err
	}
	var target *Release
	switch {
	case o.To > 0:
		for i := range rels {
			if rels[i].Number == o.To {
				target = &rels[i]
			}
		}
		if target == nil {
			// A number that names no release is a wrong argument (exit 2),
			// not a failure of the engine.
			return nil, nil, Invalidf("release %d of %s: %w (kept: %s)", o.To, st.Project.Name, ErrNotFound, releaseNumbers(rels))
		}
	case len(rels) < 2:
		return nil, nil, fmt.Errorf("no earlier release of %s to roll back to (kept: %s): %w", st.Project.Name, releaseNumbers(rels), ErrNotFound)
	default:
		target = &rels[1]
	}
	for name, rs := range target.Services {
		s, ok := st.Project.Services[name]
		if !ok {
			continue
		}
		if _, err := d.engine.ImageInspect(ctx, rs.ImageID); err != nil {
			return target, nil, fmt.Errorf("image %s of release %d (services.%s) is gone from the engine: %w", rs.ImageID, target.Number, name, err)
		}
		if cur, err := d.imageID(ctx, ImageRef(st.Project.Name, s)); err == nil && cur == rs.ImageID {
			// The same image as now (the database, usually): the service
			// stays exactly as it runs, not recreated for a new image name.
			continue
		}
		// A service that rolls keeps rolling once it runs an image id.
		if ro, err := rolloutOf(s, true); err == nil && ro.Proxy {
			ext := map[string]any{"rollout": "proxy"}
			if m, ok := s.Extensions[ExtService].(map[string]any); ok {
				for k, v := range m {
					ext[k] = v
				}
				ext["rollout"] = "proxy"
			}
			s.Extensions = cloneExtensions(s.Extensions)
			s.Extensions[ExtService] = ext
		}
		s.Image = rs.ImageID
		s.Build = nil
		s.PullPolicy = types.PullPolicyNever
		st.Project.Services[name] = s
	}
	d.out.Event("Rolling back %s to release %d (%s, by %s@%s)", st.Project.Name, target.Number, target.Created.Format(time.RFC3339), target.User, target.Machine)
	uo := o.Up
	uo.Build = false
	if uo.RecordCommand == "" {
		uo.RecordCommand = "rollback to " + strconv.Itoa(target.Number)
	}
	uo.recordFrom = target
	res, err := d.Up(ctx, st, uo)
	return target, res, err
}

// FromDirtyTree reports whether r ran images built from a tree with
// uncommitted changes.
func (r Release) FromDirtyTree() bool {
	return r.Dirty || strings.Contains(r.Revision, "-dirty")
}

// treeRevision is the revision a release records (the working directory's
// commit, <commit>-dirty-<hash> with uncommitted changes, see gitTreeTag)
// and whether what it deploys was built from uncommitted changes: in the
// working directory's checkout, or in a build context outside it.
func treeRevision(p *types.Project) (string, bool) {
	rev := gitTreeTag(p.WorkingDir)
	if strings.Contains(rev, "-dirty") {
		return rev, true
	}
	for _, name := range p.ServicesWithBuild() {
		s := p.Services[name]
		if isRemoteContext(s) {
			continue
		}
		dir := buildContextDir(p, s)
		if _, inside := within(realPath(p.WorkingDir), realPath(dir)); !inside && gitDirty(dir) {
			return rev, true
		}
	}
	return rev, false
}

func releaseNumbers(rels []Release) string {
	if len(rels) == 0 {
		return "none"
	}
	nums := make([]string, len(rels))
	for i, r := range rels {
		nums[i] = strconv.Itoa(r.Number)
	}
	return strings.Join(nums, ", ")
}

func cloneExtensions(e types.Extensions) types.Extensions {
	out := types.Extensions{}
	for k, v := range e {
		out[k] = v
	}
	return out
}

// recordUp records a successful up that changed something as the
// project's next release (the images its services run now, after the
// plan's pulls and builds); failing to is a warning, the stack stands.
func (d *Deployer) recordUp(ctx context.Context, p *types.Project, a *applier, command string, from *Release) *Release {
	ids, err := a.imageIDs(ctx)
	var rel *Release
	if err == nil {
		rel, err = d.recordRelease(ctx, p, ids, command, from)
	}
	if err != nil {
		d.out.Event("warning: the stack is up but its release was not recorded: %v", err)
	}
	return rel
}

// NewRelease is release n of p recorded by this user on this machine now,
// with no services yet: for targets that keep their releases themselves
// (Swarm).
func NewRelease(p *types.Project, n int, command string) Release {
	h := currentHolder(command, time.Now())
	rev, dirty := treeRevision(p)
	return Release{Number: n, Project: p.Name, Revision: rev, Dirty: dirty, User: h.User, Machine: h.Machine,
		Command: command, Created: time.Now().UTC(), Services: map[string]ReleaseService{}}
}

// SameServices says whether two releases ran the same images and configs.
func SameServices(a, b Release) bool { return sameServices(a.Services, b.Services) }
