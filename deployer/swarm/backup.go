package swarm

import (
	"context"
	"fmt"
	"github.com/invdeploy/invdeploy/deployer"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// TaskNodeEngine is what TaskNode asks of a manager.
type TaskNodeEngine interface {
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	NodeInspectWithRaw(ctx context.Context, nodeID string) (swarm.Node, []byte, error)
}

var _ TaskNodeEngine = (*client.Client)(nil)

// TaskNode is the address of the node that runs the running task of
// project's service (a stateful one runs one, pinned to its volume's
// node): the engine to reach its container on, as backup does.
func TaskNode(ctx context.Context, mgr TaskNodeEngine, project, service string) (string, error) {
	name := ServiceName(project, service)
	tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", name), filters.Arg("desired-state", "running"))})
	if err != nil {
		return "", fmt.Errorf("list the tasks of %s: %w", name, err)
	}
	for _, t := range tasks {
		if t.Status.State != swarm.TaskStateRunning || t.NodeID == "" {
			continue
		}
		n, _, err := mgr.NodeInspectWithRaw(ctx, t.NodeID)
		if err != nil {
			return "", fmt.Errorf("inspect the node of %s: %w", name, err)
		}
		if n.Status.Addr == "" {
			return "", fmt.Errorf("node %s of %s reports no address", t.NodeID, name)
		}
		return n.Status.Addr, nil
	}
	return "", fmt.Errorf("service %s of project %s has no running task on the swarm: run invdeploy swarm up first", service, project)
}

// TaskEngine is the engine of the node that runs service's task of
// project (opened with the manager's login on first use) and that node's
// address: a backup runs in the task's container there.
func (c *Cluster) TaskEngine(ctx context.Context, project, service string) (deployer.Engine, string, error) {
	addr, err := TaskNode(ctx, c.client(), project, service)
	if err != nil {
		return nil, "", err
	}
	eng, err := c.node(ctx, addr)
	if err != nil {
		return nil, "", err
	}
	return eng, addr, nil
}
