package swarm

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

type fakeTaskNodes struct {
	tasks []swarm.Task
	nodes map[string]swarm.Node
	asked string
}

func (f *fakeTaskNodes) TaskList(_ context.Context, o swarm.TaskListOptions) ([]swarm.Task, error) {
	f.asked = strings.Join(o.Filters.Get("service"), ",")
	return f.tasks, nil
}

func (f *fakeTaskNodes) NodeInspectWithRaw(_ context.Context, id string) (swarm.Node, []byte, error) {
	return f.nodes[id], nil, nil
}

// TaskNode names the node of the running task, skipping one still starting.
func TestTaskNode(t *testing.T) {
	f := &fakeTaskNodes{
		tasks: []swarm.Task{
			{NodeID: "n1", Status: swarm.TaskStatus{State: swarm.TaskStatePreparing}},
			{NodeID: "n2", Status: swarm.TaskStatus{State: swarm.TaskStateRunning}},
		},
		nodes: map[string]swarm.Node{"n1": {Status: swarm.NodeStatus{Addr: "10.0.1.11"}}, "n2": {Status: swarm.NodeStatus{Addr: "10.0.1.12"}}},
	}
	addr, err := TaskNode(context.Background(), f, "shop", "db")
	if err != nil || addr != "10.0.1.12" || f.asked != "shop_db" {
		t.Fatalf("TaskNode: %q %v (asked for %q), want 10.0.1.12 for shop_db", addr, err, f.asked)
	}
	f.tasks = f.tasks[:1]
	if _, err := TaskNode(context.Background(), f, "shop", "db"); err == nil || !strings.Contains(err.Error(), "swarm up") {
		t.Fatalf("no running task: %v", err)
	}
}
