package swarm

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/deployer"
)

// DownReport is what Down removed.
type DownReport struct {
	Services []string `json:"services"`
	Networks []string `json:"networks"`
	Secrets  []string `json:"secrets"`
	// Volumes are the removed volumes, as node:name.
	Volumes []string `json:"volumes,omitempty"`
	// KeptVolumes explains where the data stays.
	KeptVolumes string `json:"kept_volumes,omitempty"`
}

// VolumeEngine is what removing a node's volumes needs; *client.Client
// implements it.
type VolumeEngine interface {
	VolumeList(ctx context.Context, options volume.ListOptions) (volume.ListResponse, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
}

// DownOptions control Down.
type DownOptions struct {
	// Timeout bounds waiting for the services' tasks to go (2m).
	Timeout time.Duration
	// Volumes removes the project's volumes on every node too (the data),
	// and the node labels that pinned its stateful services.
	Volumes bool
	// DialNode returns the engine of the node at addr (Volumes only).
	DialNode func(ctx context.Context, addr string) (VolumeEngine, error)
}

// Down removes the project's services, then its overlay networks and swarm
// secrets. Volumes stay on their nodes unless o.Volumes (and stateful
// services' node labels stay, so the next up runs them where their data is).
func Down(ctx context.Context, mgr ManagerEngine, project string, o DownOptions) (*DownReport, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	rep := &DownReport{}
	services, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for _, s := range services {
		if err := mgr.ServiceRemove(ctx, s.ID); err != nil {
			return rep, fmt.Errorf("remove service %s: %w", s.Spec.Name, err)
		}
		rep.Services = append(rep.Services, s.Spec.Name)
	}
	sort.Strings(rep.Services)
	nets, err := mgr.NetworkList(ctx, network.ListOptions{Filters: projectFilter(project)})
	if err != nil {
		return rep, fmt.Errorf("list networks: %w", err)
	}
	deadline := time.Now().Add(timeout)
	// A network is removable once the removed services' tasks are gone.
	for _, n := range nets {
		if err := removeRetrying(ctx, deadline, func(ctx context.Context) error { return mgr.NetworkRemove(ctx, n.ID) }); err != nil {
			return rep, fmt.Errorf("remove network %s: %w", n.Name, err)
		}
		rep.Networks = append(rep.Networks, n.Name)
	}
	// Wait until the swarm no longer lists them, so an up right after
	// creates them again (a wait that runs out is not an error).
	_ = poll(ctx, max(time.Until(deadline), 0), 200*time.Millisecond, func(ctx context.Context) error {
		left, err := mgr.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("scope", "swarm"), filters.Arg("label", deployer.LabelProject+"="+project))})
		if err != nil || len(left) == 0 {
			return nil
		}
		return errPending
	})
	secrets, err := mgr.SecretList(ctx, swarm.SecretListOptions{Filters: projectFilter(project)})
	if err != nil {
		return rep, fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range secrets {
		if err := removeRetrying(ctx, deadline, func(ctx context.Context) error { return mgr.SecretRemove(ctx, s.ID) }); err != nil {
			return rep, fmt.Errorf("remove secret %s: %w", s.Spec.Name, err)
		}
		rep.Secrets = append(rep.Secrets, s.Spec.Name)
	}
	if o.Volumes {
		// The release history goes with the data, as down --volumes locally.
		rels, err := Releases(ctx, mgr, project)
		if err != nil {
			return rep, err
		}
		for _, r := range rels {
			if err := mgr.ConfigRemove(ctx, releaseConfigName(project, r.Number)); err != nil && !isNotFound(err) {
				return rep, fmt.Errorf("remove release %d of %s: %w", r.Number, project, err)
			}
		}
	}
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err == nil && o.Volumes {
		return rep, removeVolumes(ctx, mgr, nodes, project, o.DialNode, rep, deadline)
	}
	if err == nil {
		var pinned []string
		for _, n := range nodes {
			for k := range n.Spec.Labels {
				if svc, ok := strings.CutPrefix(k, LabelPinPrefix+project+"."); ok {
					pinned = append(pinned, svc+" on "+n.Description.Hostname)
				}
			}
		}
		if len(pinned) > 0 {
			sort.Strings(pinned)
			rep.KeptVolumes = "volumes kept on their nodes (" + strings.Join(pinned, ", ") + "): the next swarm up runs those services there again"
		}
	}
	return rep, nil
}

// ServiceStatus is one service in Status.
type ServiceStatus struct {
	Service  string       `json:"service"`
	Name     string       `json:"name"`
	Image    string       `json:"image"`
	Mode     string       `json:"mode"`
	Running  int          `json:"running"`
	Desired  int          `json:"desired"`
	Update   string       `json:"update_state,omitempty"`
	Ports    []string     `json:"ports,omitempty"`
	Tasks    []TaskStatus `json:"tasks"`
	PinnedTo string       `json:"pinned_to,omitempty"`
	// Note says what losing the pinned node means.
	Note string `json:"note,omitempty"`
}

// TaskStatus is one running or failed task.
type TaskStatus struct {
	Slot  int    `json:"slot,omitempty"`
	Node  string `json:"node"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// Status lists the project's services with their tasks (current ones, and
// the last failure of each slot), and for a pinned service the node that
// holds its data.
func Status(ctx context.Context, mgr ManagerEngine, project string) ([]ServiceStatus, error) {
	services, err := mgr.ServiceList(ctx, swarm.ServiceListOptions{Filters: projectFilter(project)})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	hostname := map[string]string{}
	for _, n := range nodes {
		hostname[n.ID] = n.Description.Hostname
	}
	var out []ServiceStatus
	for _, s := range services {
		st := ServiceStatus{Service: s.Spec.Labels[deployer.LabelService], Name: s.Spec.Name, Image: s.Spec.Labels[LabelImageRef]}
		if r := s.Spec.Mode.Replicated; r != nil {
			st.Mode, st.Desired = "replicated", int(*r.Replicas)
		} else {
			st.Mode = "global"
		}
		if s.UpdateStatus != nil {
			st.Update = string(s.UpdateStatus.State)
		}
		if s.Endpoint.Spec.Ports != nil {
			for _, p := range s.Endpoint.Spec.Ports {
				st.Ports = append(st.Ports, fmt.Sprintf("%d->%d/%s (%s)", p.PublishedPort, p.TargetPort, p.Protocol, p.PublishMode))
			}
		}
		tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.ID))})
		if err != nil {
			return nil, fmt.Errorf("list tasks of %s: %w", s.Spec.Name, err)
		}
		sort.Slice(tasks, func(i, j int) bool {
			if tasks[i].Slot != tasks[j].Slot {
				return tasks[i].Slot < tasks[j].Slot
			}
			return tasks[i].Status.Timestamp.After(tasks[j].Status.Timestamp)
		})
		for _, t := range tasks {
			if t.DesiredState == swarm.TaskStateRunning {
				if t.Status.State == swarm.TaskStateRunning {
					st.Running++
				}
				st.Tasks = append(st.Tasks, TaskStatus{Slot: t.Slot, Node: hostname[t.NodeID], State: string(t.Status.State), Error: t.Status.Err})
			}
		}
		if st.Mode == "global" {
			st.Desired = len(st.Tasks)
		}
		key := PinLabel(project, st.Service)
		for _, n := range nodes {
			if n.Spec.Labels[key] == "true" {
				st.PinnedTo = n.Description.Hostname
				st.Note = fmt.Sprintf("its data is in a volume on %s only: if %s is lost, so is the data since the last backup, and %s does not run until that node is back (or the label %s=true is put on another node that has a restored copy)",
					st.PinnedTo, st.PinnedTo, st.Service, key)
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// removeVolumes removes the project's volumes on every node (waiting for
// the removed services' containers to let go of them) and the pin labels.
func removeVolumes(ctx context.Context, mgr ManagerEngine, nodes []swarm.Node, project string, dial func(context.Context, string) (VolumeEngine, error), rep *DownReport, deadline time.Time) error {
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady {
			return fmt.Errorf("down --volumes: node %s is %s: its volumes cannot be removed now; run again when it is back", n.Description.Hostname, n.Status.State)
		}
		eng, err := dial(ctx, n.Status.Addr)
		if err != nil {
			return err
		}
		vols, err := eng.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", deployer.LabelProject+"="+project))})
		if err != nil {
			return fmt.Errorf("list volumes on %s: %w", n.Description.Hostname, err)
		}
		for _, v := range vols.Volumes {
			if err := removeRetrying(ctx, deadline, func(ctx context.Context) error { return eng.VolumeRemove(ctx, v.Name, false) }); err != nil {
				return fmt.Errorf("remove volume %s on %s: %w", v.Name, n.Description.Hostname, err)
			}
			rep.Volumes = append(rep.Volumes, n.Description.Hostname+":"+v.Name)
		}
		prefix := LabelPinPrefix + project + "."
		labels := map[string]string{}
		changed := false
		for k, v := range n.Spec.Labels {
			if strings.HasPrefix(k, prefix) {
				changed = true
				continue
			}
			labels[k] = v
		}
		if changed {
			spec := n.Spec
			spec.Labels = labels
			if err := mgr.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
				return fmt.Errorf("remove the pin labels of %s: %w", n.Description.Hostname, err)
			}
		}
	}
	sort.Strings(rep.Volumes)
	return nil
}
