package backup

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
)

// listOnly is an engine that answers ContainerList and nothing else: a
// call to any other method panics (the embedded interface is nil).
type listOnly struct {
	deployer.Engine
	cs     []container.Summary
	images map[string]string
}

// ContainerList answers with the containers that carry every label the
// filter names.
func (l listOnly) ContainerList(_ context.Context, o container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, c := range l.cs {
		ok := true
		for _, kv := range o.Filters.Get("label") {
			k, v, _ := strings.Cut(kv, "=")
			ok = ok && c.Labels[k] == v
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// ImageInspect knows the images of l.images (reference -> ID).
func (l listOnly) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if id, ok := l.images[ref]; ok {
		return image.InspectResponse{ID: id}, nil
	}
	return image.InspectResponse{}, errors.New("no such image")
}

// A restore of a database that runs as a Swarm task is refused before any
// other engine call: the switch would race the orchestrator.
func TestRestoreRefusesSwarmTask(t *testing.T) {
	pg := &Postgres{Project: "shop", Service: "db"}
	b := &Backups{Engine: listOnly{cs: []container.Summary{{ID: "t1", State: "running",
		Labels: map[string]string{deployer.LabelProject: "shop", deployer.LabelService: "db", labelSwarmTask: "abc"}}}}}
	_, err := b.Restore(context.Background(), nil, pg, RestoreOptions{Target: Target{Latest: true}})
	var pe *deployer.PreflightError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "Swarm service") {
		t.Fatalf("restore of a Swarm task: %v, want a preflight refusal naming Swarm", err)
	}
	plain := &Backups{Engine: listOnly{cs: []container.Summary{{ID: "c1", State: "running",
		Labels: map[string]string{deployer.LabelProject: "shop", deployer.LabelService: "db"}}}}}
	if err := plain.RefuseSwarm(context.Background(), pg); err != nil {
		t.Fatalf("a plain container: %v", err)
	}
}

// A restore keeps the image a service runs when its image reference now
// names another (a build since the deploy): it deploys no new code. A
// service named as it runs, and one with no running container, are left
// as they are.
func TestRestoreKeepsRunningImages(t *testing.T) {
	labels := func(svc string) map[string]string {
		return map[string]string{deployer.LabelProject: "shop", deployer.LabelService: svc}
	}
	b := &Backups{Out: deployer.Discard(), Engine: listOnly{
		cs: []container.Summary{
			{ID: "a", State: "running", ImageID: "sha256:0123456789abcdef-deployed", Labels: labels("api")},
			{ID: "d", State: "running", ImageID: "sha256:pg", Labels: labels("db")},
		},
		images: map[string]string{"shop-api:next": "sha256:built-since", "postgres:15": "sha256:pg"},
	}}
	svc := func(name, img string) types.ServiceConfig {
		s := types.ServiceConfig{Name: name}
		s.Image = img
		return s
	}
	api := svc("api", "shop-api:next")
	api.Build = &types.BuildConfig{Context: "."}
	st := &deployer.Stack{Project: &types.Project{Name: "shop", Services: types.Services{
		"api": api, "db": svc("db", "postgres:15"), "edge": svc("edge", "caddy:2"),
	}}}
	if err := b.keepRunningImages(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	api = st.Project.Services["api"]
	if api.Image != "sha256:0123456789abcdef-deployed" || api.Build != nil || api.PullPolicy != types.PullPolicyNever {
		t.Fatalf("api: image %q build %v pull %q, want the running image, no build, never pulled", api.Image, api.Build, api.PullPolicy)
	}
	if db := st.Project.Services["db"]; db.Image != "postgres:15" {
		t.Fatalf("db runs what postgres:15 names, yet became %q", db.Image)
	}
	if e := st.Project.Services["edge"]; e.Image != "caddy:2" {
		t.Fatalf("edge has no container, yet became %q", e.Image)
	}
}
