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
)

// Release history lives on the engine, so `releases` and `rollback` work from
// any machine: every successful up records release N as one never-started
// container per service, named invdeploy-release-<project>-<N>-<service>,
// made from that service's image (by id) and labelled with the release. A
// container that uses an image protects it from `docker image prune -a`, so
// the images of the last KeepReleases releases stay on the host for a
// rollback without a build or a registry. The records hold no secret and run
// nothing.

// KeepReleases is how many releases (and their images) are kept per project.
const KeepReleases = 5

const (
	labelReleaseProject = "io.invdeploy.release.project"
	labelReleaseNumber  = "io.invdeploy.release.number"
	labelReleaseInfo    = "io.invdeploy.release.info"
)

// Release is one recorded successful up.
type Release struct {
	Number   int                       `json:"number"`
	Project  string                    `json:"project"`
	Revision string                    `json:"revision,omitempty"`
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
func (d *Deployer) recordRelease(ctx context.Context, p *types.Project, imageIDs map[string]string, command string) (*Release, error) {
	rels, err := d.Releases(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	h := currentHolder(command, time.Now())
	r := &Release{Number: 1, Project: p.Name, Revision: gitRevision(p.WorkingDir), User: h.User, Machine: h.Machine,
		Command: command, Created: time.Now().UTC(), Services: map[string]ReleaseService{}}
	if len(rels) > 0 {
		r.Number = rels[0].Number + 1
	}
	names := make([]string, 0, len(imageIDs))
	for name, id := range imageIDs {
		s := p.Services[name]
		hash, err := ConfigHash(s)
		if err != nil {
			return nil, err
		}
		r.Services[name] = ReleaseService{Image: ImageRef(p.Name, s), ImageID: id, ConfigHash: hash}
		names = append(names, name)
	}
	sort.Strings(names)
	if len(rels) > 0 && sameServices(rels[0].Services, r.Services) {
		return &rels[0], nil // an up that changed nothing is no new release
	}
	info, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		_, err := d.engine.ContainerCreate(ctx, &container.Config{
			Image:      r.Services[name].ImageID,
			Entrypoint: []string{"/invdeploy-release-record-never-runs"},
			Cmd:        nil,
			Labels: map[string]string{
				LabelManagedBy:      "invdeploy",
				labelReleaseProject: p.Name,
				labelReleaseNumber:  strconv.Itoa(r.Number),
				labelReleaseInfo:    string(info),
			},
		}, &container.HostConfig{NetworkMode: "none"}, nil, nil, releaseName(p.Name, r.Number, name))
		if err != nil {
			return nil, fmt.Errorf("record release %d of %s: %w", r.Number, p.Name, err)
		}
	}
	if len(rels) >= KeepReleases {
		for _, old := range rels[KeepReleases-1:] {
			if err := d.forgetRelease(ctx, old.Number, p.Name); err != nil {
				return r, err
			}
		}
	}
	return r, nil
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

func (d *Deployer) forgetRelease(ctx context.Context, n int, project string) error {
	cs, err := d.releaseContainers(ctx, project, n)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("forget release %d of %s: %w", n, project, err)
		}
	}
	return nil
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
	cs, err := d.releaseContainers(ctx, project, 0)
	if err != nil {
		return nil, err
	}
	byNumber := map[int]*Release{}
	for _, c := range cs {
		var r Release
		if err := json.Unmarshal([]byte(c.Labels[labelReleaseInfo]), &r); err != nil || r.Number == 0 {
			continue // not ours, or damaged: ignore rather than fail the listing
		}
		if byNumber[r.Number] == nil {
			byNumber[r.Number] = &r
		}
	}
	out := make([]Release, 0, len(byNumber))
	for _, r := range byNumber {
		out = append(out, *r)
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
			return nil, nil, fmt.Errorf("release %d of %s: %w (kept: %s)", o.To, st.Project.Name, ErrNotFound, releaseNumbers(rels))
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
	res, err := d.Up(ctx, st, uo)
	return target, res, err
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
