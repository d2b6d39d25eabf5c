package backup

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/invdeploy/invdeploy/deployer"
)

// listOnly is an engine that answers ContainerList and nothing else: a
// call to any other method panics (the embedded interface is nil).
type listOnly struct {
	deployer.Engine
	cs []container.Summary
}

func (l listOnly) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return l.cs, nil
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
