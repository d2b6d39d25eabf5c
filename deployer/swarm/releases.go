package swarm

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/invdeploy/invdeploy/deployer"
)

// The release record of a swarm lives in the swarm (its raft store, on
// every manager): one swarm config per release, <project>_release_<n>,
// holding the release as JSON (images by ID, spec hashes; never a secret).
// Any machine that reaches a manager reads the same history.
const (
	labelRelease       = "io.invdeploy.release.project"
	labelReleaseNumber = "io.invdeploy.release.number"
)

func releaseConfigName(project string, n int) string {
	return project + "_release_" + strconv.Itoa(n)
}

// Releases are the project's recorded releases on the swarm, newest first.
func Releases(ctx context.Context, mgr ManagerEngine, project string) ([]deployer.Release, error) {
	cfgs, err := mgr.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", labelRelease+"="+project))})
	if err != nil {
		return nil, fmt.Errorf("list the releases of %s: %w", project, err)
	}
	var out []deployer.Release
	for _, c := range cfgs {
		var r deployer.Release
		if err := json.Unmarshal(c.Spec.Data, &r); err != nil {
			continue // not ours to read; never fatal
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number > out[j].Number })
	return out, nil
}

// recordRelease records what the plan deployed as the project's next
// release (nothing when the newest release ran the same), keeping
// deployer.KeepReleases.
func recordRelease(ctx context.Context, mgr ManagerEngine, st *deployer.Stack, pl *Plan, command string) (*deployer.Release, error) {
	p := st.Project
	rels, err := Releases(ctx, mgr, p.Name)
	if err != nil {
		return nil, err
	}
	n := 1
	if len(rels) > 0 {
		n = rels[0].Number + 1
	}
	r := deployer.NewRelease(p, n, command)
	specs := map[string]string{}
	for _, op := range pl.Ops {
		if op.Kind == OpServiceCreate || op.Kind == OpServiceUpdate {
			specs[op.Target] = op.x.spec.Labels[deployer.LabelConfigHash]
		}
	}
	for _, step := range pl.order {
		hash, ok := specs[step.name]
		if !ok { // kept: the running spec's hash
			svc, _, err := mgr.ServiceInspectWithRaw(ctx, step.name, swarm.ServiceInspectOptions{})
			if err != nil {
				return nil, fmt.Errorf("inspect service %s: %w", step.name, err)
			}
			hash = svc.Spec.Labels[deployer.LabelConfigHash]
		}
		r.Services[step.service] = deployer.ReleaseService{Image: step.image, ImageID: step.imageID, ConfigHash: hash}
	}
	if len(rels) > 0 && deployer.SameServices(rels[0], r) {
		return &rels[0], nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if _, err := mgr.ConfigCreate(ctx, swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: releaseConfigName(p.Name, n), Labels: map[string]string{
			deployer.LabelProject: p.Name, deployer.LabelManagedBy: "invdeploy",
			labelRelease: p.Name, labelReleaseNumber: strconv.Itoa(n)}},
		Data: data,
	}); err != nil {
		return nil, fmt.Errorf("record release %d of %s: %w", n, p.Name, err)
	}
	for _, old := range rels {
		if old.Number > n-deployer.KeepReleases {
			continue
		}
		if err := mgr.ConfigRemove(ctx, releaseConfigName(p.Name, old.Number)); err != nil && !isNotFound(err) {
			return &r, fmt.Errorf("forget release %d of %s: %w", old.Number, p.Name, err)
		}
	}
	return &r, nil
}
