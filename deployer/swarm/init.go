// Package swarm deploys a compose stack to a Docker Swarm through the Engine
// API: Init turns plain Docker hosts (each reached over its own SSH
// connection, see deployer/remote) into a swarm, Up/Down/Status run the
// stack as swarm services.
//
// The engines here (Docker 20.10, a kernel without IPVS or ESP) have no
// working ingress routing mesh, VIP load balancing or encrypted overlay, and
// Swarm does not say so: published ports are host-mode and services use DNS
// round robin (endpoint_mode dnsrr) unless the compose file asks otherwise.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// NodeEngine is what Init needs of each host's engine; *client.Client
// implements it.
type NodeEngine interface {
	Info(ctx context.Context) (system.Info, error)
	SwarmInit(ctx context.Context, req swarm.InitRequest) (string, error)
	SwarmJoin(ctx context.Context, req swarm.JoinRequest) error
	SwarmInspect(ctx context.Context) (swarm.Swarm, error)
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
}

var _ NodeEngine = (*client.Client)(nil)

// Host is one machine given to Init.
type Host struct {
	// Name is what the user called it (the redacted ssh:// URL).
	Name string
	// Addr is the address the node advertises to the swarm and the others
	// reach it at: the host's address from its URL.
	Addr string
	// Manager says it joins as a manager (--manager), else as a worker.
	Manager bool
	// Engine is the host's engine over its SSH connection.
	Engine NodeEngine
}

// Swarm ports (Docker's "open protocols and ports between the hosts").
const (
	PortManagement = 2377 // tcp, managers: cluster management (raft, joins)
	PortGossip     = 7946 // tcp+udp, every node: node discovery
	PortVXLAN      = 4789 // udp, every node: overlay traffic
)

// InitOptions control Init.
type InitOptions struct {
	// ClusterCIDR is the source allowed to reach the swarm ports (2377,
	// 7946, 4789): the hosts' private subnet. Empty: each host's /32.
	ClusterCIDR string
	// AppPorts are the ports the stack publishes, open to AllowFrom.
	AppPorts []int
	// AllowFrom is who may reach AppPorts (default 0.0.0.0/0).
	AllowFrom string
	// JoinTimeout bounds waiting for joined nodes to be ready.
	JoinTimeout time.Duration
}

// SecurityRule is one EC2 security-group ingress rule the swarm needs.
type SecurityRule struct {
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
	Source   string `json:"source"`
	Purpose  string `json:"purpose"`
}

// AWSCommand is the rule as an aws CLI command (the group id left for the user).
func (r SecurityRule) AWSCommand() string {
	return fmt.Sprintf("aws ec2 authorize-security-group-ingress --group-id <sg-id> --protocol %s --port %d --cidr %s", r.Protocol, r.Port, r.Source)
}

// NodeResult says what Init did with one host.
type NodeResult struct {
	Host   string `json:"host"`
	Addr   string `json:"addr"`
	NodeID string `json:"node_id"`
	Role   string `json:"role"`
	// Action is "initialised" (the first manager of a new swarm), "joined",
	// or "already a member".
	Action string `json:"action"`
}

// InitReport is the outcome of Init.
type InitReport struct {
	ClusterID string         `json:"cluster_id"`
	Nodes     []NodeResult   `json:"nodes"`
	Rules     []SecurityRule `json:"security_group_rules"`
	Warnings  []string       `json:"warnings,omitempty"`
}

// Changed reports whether Init initialised or joined anything.
func (r *InitReport) Changed() bool {
	for _, n := range r.Nodes {
		if n.Action != ActionMember {
			return true
		}
	}
	return false
}

// Actions of NodeResult.
const (
	ActionInitialised = "initialised"
	ActionJoined      = "joined"
	ActionMember      = "already a member"
)

// CheckInit refuses (deployer.PreflightError) what Init must not do, before
// anything is contacted: no manager, an even number of managers, a cluster
// source that would open 2377 to the world, an app port that is a swarm port.
func CheckInit(hosts []Host, o InitOptions) error {
	var probs []deployer.Problem
	managers := 0
	for _, h := range hosts {
		if h.Manager {
			managers++
		}
	}
	switch {
	case managers == 0:
		probs = append(probs, deployer.Problem{Rule: "managers", Subject: "--manager",
			Message: "a swarm needs at least one manager: give --manager ssh://user@host"})
	case managers%2 == 0:
		probs = append(probs, deployer.Problem{Rule: "managers", Subject: strconv.Itoa(managers) + " managers",
			Message: "give an odd number of managers (1, 3 or 5): raft needs a majority, and an even number tolerates no more failures than one fewer"})
	}
	if o.ClusterCIDR != "" {
		_, n, err := net.ParseCIDR(o.ClusterCIDR)
		if err != nil {
			probs = append(probs, deployer.Problem{Rule: "cidr", Subject: "--cluster-cidr", Message: fmt.Sprintf("%q is not a CIDR like 10.0.1.0/24", o.ClusterCIDR)})
		} else if ones, _ := n.Mask.Size(); ones == 0 {
			probs = append(probs, deployer.Problem{Rule: "cidr", Subject: "--cluster-cidr " + o.ClusterCIDR,
				Message: "this would open the swarm's management port 2377 (root on every node) and its gossip and overlay ports to the whole internet; give the hosts' private subnet, e.g. the VPC's 10.0.0.0/16"})
		}
	}
	if o.AllowFrom != "" {
		if _, _, err := net.ParseCIDR(o.AllowFrom); err != nil {
			probs = append(probs, deployer.Problem{Rule: "cidr", Subject: "--allow-from", Message: fmt.Sprintf("%q is not a CIDR like 203.0.113.0/24", o.AllowFrom)})
		}
	}
	for _, p := range o.AppPorts {
		if p == PortManagement || p == PortGossip || p == PortVXLAN {
			probs = append(probs, deployer.Problem{Rule: "port", Subject: strconv.Itoa(p),
				Message: "is a swarm port: it is opened to the cluster only, never to --allow-from"})
		} else if p < 1 || p > 65535 {
			probs = append(probs, deployer.Problem{Rule: "port", Subject: strconv.Itoa(p), Message: "is not a port number"})
		}
	}
	seen := map[string]string{}
	for _, h := range hosts {
		if other, ok := seen[h.Addr]; ok {
			probs = append(probs, deployer.Problem{Rule: "host", Subject: h.Name, Message: "has the same address as " + other + ": give each host once"})
		}
		seen[h.Addr] = h.Name
	}
	if len(probs) > 0 {
		return &deployer.PreflightError{Problems: probs}
	}
	return nil
}

// Rules are the security-group ingress rules for hosts and o.
func Rules(hosts []Host, o InitOptions) []SecurityRule {
	var sources []string
	if o.ClusterCIDR != "" {
		sources = []string{o.ClusterCIDR}
	} else {
		for _, h := range hosts {
			sources = append(sources, hostCIDR(h.Addr))
		}
		sort.Strings(sources)
	}
	var rules []SecurityRule
	for _, src := range sources {
		rules = append(rules,
			SecurityRule{"tcp", PortManagement, src, "swarm management (managers only; never the world)"},
			SecurityRule{"tcp", PortGossip, src, "swarm node discovery"},
			SecurityRule{"udp", PortGossip, src, "swarm node discovery"},
			SecurityRule{"udp", PortVXLAN, src, "overlay network traffic (VXLAN)"},
		)
	}
	from := o.AllowFrom
	if from == "" {
		from = "0.0.0.0/0"
	}
	ports := append([]int(nil), o.AppPorts...)
	sort.Ints(ports)
	for _, p := range ports {
		rules = append(rules, SecurityRule{"tcp", p, from, "published app port (host mode, on every node that runs a task)"})
	}
	return rules
}

func hostCIDR(addr string) string {
	if ip := net.ParseIP(addr); ip != nil && ip.To4() == nil {
		return addr + "/128"
	}
	return addr + "/32"
}

// nodeState is one host's view of its swarm membership.
type nodeState struct {
	info system.Info
}

func (s nodeState) active() bool { return s.info.Swarm.LocalNodeState == swarm.LocalNodeStateActive }

// ErrOtherSwarm is wrapped when a host already belongs to another swarm.
var ErrOtherSwarm = errors.New("already in another swarm")

// Init makes hosts one swarm, idempotently: when no manager is in a swarm
// yet, the first manager initialises one; every host not yet a member joins
// it with the join token of its role, read from a manager and sent only in
// the join request (never printed or returned). Hosts already members are
// left alone. It then waits until every node is ready.
func Init(ctx context.Context, hosts []Host, o InitOptions, rep remote.Reporter) (*InitReport, error) {
	if err := CheckInit(hosts, o); err != nil {
		return nil, err
	}
	if rep == nil {
		rep = nopReporter{}
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = 60 * time.Second
	}
	report := &InitReport{Rules: Rules(hosts, o)}
	states := make([]nodeState, len(hosts))
	for i, h := range hosts {
		info, err := h.Engine.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("swarm init: %s: engine info: %w", h.Name, err)
		}
		states[i] = nodeState{info: info}
		switch info.Swarm.LocalNodeState {
		case swarm.LocalNodeStateLocked:
			return nil, fmt.Errorf("swarm init: %s: its swarm is locked (autolock); unlock it on that host first", h.Name)
		case swarm.LocalNodeStatePending:
			return nil, fmt.Errorf("swarm init: %s: a join is still pending; run again in a few seconds", h.Name)
		}
	}

	// The swarm to join: the one any given manager (with control) is in.
	lead := -1
	for i, h := range hosts {
		if h.Manager && states[i].active() && states[i].info.Swarm.ControlAvailable {
			lead = i
			break
		}
	}
	if lead < 0 {
		for i, h := range hosts {
			if states[i].active() {
				return nil, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "swarm", Subject: h.Name,
					Message: "is in a swarm whose managers are not among the given --manager hosts: give one of its managers, or make it leave that swarm first"}}}
			}
		}
		i := firstManager(hosts)
		h := hosts[i]
		rep.Event("Initialising a new swarm on %s (advertising %s)", h.Name, h.Addr)
		id, err := h.Engine.SwarmInit(ctx, swarm.InitRequest{
			ListenAddr:    "0.0.0.0:" + strconv.Itoa(PortManagement),
			AdvertiseAddr: net.JoinHostPort(h.Addr, strconv.Itoa(PortManagement)),
		})
		if err != nil {
			return nil, fmt.Errorf("swarm init on %s: %w", h.Name, err)
		}
		info, err := h.Engine.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("swarm init: %s: engine info: %w", h.Name, err)
		}
		states[i] = nodeState{info: info}
		report.Nodes = append(report.Nodes, NodeResult{Host: h.Name, Addr: h.Addr, NodeID: id, Role: "manager", Action: ActionInitialised})
		lead = i
	}
	leader := hosts[lead]
	sw, err := leader.Engine.SwarmInspect(ctx)
	if err != nil {
		return nil, fmt.Errorf("swarm init: inspect the swarm on %s: %w", leader.Name, err)
	}
	report.ClusterID = sw.ID
	var remotes []string
	for _, m := range states[lead].info.Swarm.RemoteManagers {
		remotes = append(remotes, m.Addr)
	}
	if len(remotes) == 0 {
		remotes = []string{net.JoinHostPort(leader.Addr, strconv.Itoa(PortManagement))}
	}

	for i, h := range hosts {
		if i == lead && len(report.Nodes) > 0 {
			continue // just initialised
		}
		st := states[i]
		role := "worker"
		if h.Manager {
			role = "manager"
		}
		if st.active() {
			if st.info.Swarm.Cluster != nil && st.info.Swarm.Cluster.ID != sw.ID {
				return report, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "swarm", Subject: h.Name,
					Message: fmt.Sprintf("%s (cluster %s, not %s): make it leave that swarm first", ErrOtherSwarm, shortID(st.info.Swarm.Cluster.ID), shortID(sw.ID))}}}
			}
			if st.info.Swarm.Cluster == nil && !st.info.Swarm.ControlAvailable {
				// A worker does not see the cluster: check it through the leader below.
				if err := memberOf(ctx, leader.Engine, st.info.Swarm.NodeID); err != nil {
					return report, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "swarm", Subject: h.Name, Message: err.Error()}}}
				}
			}
			actual := "worker"
			if st.info.Swarm.ControlAvailable {
				actual = "manager"
			}
			if actual != role {
				report.Warnings = append(report.Warnings, fmt.Sprintf("%s is already a %s, given as a %s: invdeploy does not promote or demote nodes", h.Name, actual, role))
			}
			report.Nodes = append(report.Nodes, NodeResult{Host: h.Name, Addr: h.Addr, NodeID: st.info.Swarm.NodeID, Role: actual, Action: ActionMember})
			continue
		}
		token := sw.JoinTokens.Worker
		if h.Manager {
			token = sw.JoinTokens.Manager
		}
		rep.Event("Joining %s to the swarm as a %s", h.Name, role)
		err := h.Engine.SwarmJoin(ctx, swarm.JoinRequest{
			ListenAddr:    "0.0.0.0:" + strconv.Itoa(PortManagement),
			AdvertiseAddr: net.JoinHostPort(h.Addr, strconv.Itoa(PortManagement)),
			RemoteAddrs:   remotes,
			JoinToken:     token,
		})
		if err != nil {
			return report, fmt.Errorf("swarm join of %s (as %s, through %v): %w", h.Name, role, remotes, scrub(err, sw.JoinTokens))
		}
		info, err := h.Engine.Info(ctx)
		if err != nil {
			return report, fmt.Errorf("swarm init: %s: engine info: %w", h.Name, err)
		}
		report.Nodes = append(report.Nodes, NodeResult{Host: h.Name, Addr: h.Addr, NodeID: info.Swarm.NodeID, Role: role, Action: ActionJoined})
	}
	sort.SliceStable(report.Nodes, func(i, j int) bool {
		return hostIndex(hosts, report.Nodes[i].Host) < hostIndex(hosts, report.Nodes[j].Host)
	})
	if err := waitReady(ctx, leader.Engine, report, o.JoinTimeout); err != nil {
		return report, err
	}
	if n, err := managerCount(ctx, leader.Engine); err == nil && n%2 == 0 {
		report.Warnings = append(report.Warnings, fmt.Sprintf("the swarm has %d managers: an even number tolerates no more failures than %d; add or remove one", n, n-1))
	}
	return report, nil
}

func firstManager(hosts []Host) int {
	for i, h := range hosts {
		if h.Manager {
			return i
		}
	}
	return 0
}

func hostIndex(hosts []Host, name string) int {
	for i, h := range hosts {
		if h.Name == name {
			return i
		}
	}
	return len(hosts)
}

func memberOf(ctx context.Context, eng NodeEngine, nodeID string) error {
	nodes, err := eng.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return fmt.Errorf("list the swarm's nodes: %w", err)
	}
	for _, n := range nodes {
		if n.ID == nodeID {
			return nil
		}
	}
	return fmt.Errorf("%s (node %s is not a node of this swarm): make it leave that swarm first", ErrOtherSwarm, shortID(nodeID))
}

func managerCount(ctx context.Context, eng NodeEngine) (int, error) {
	nodes, err := eng.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, nd := range nodes {
		if nd.Spec.Role == swarm.NodeRoleManager {
			n++
		}
	}
	return n, nil
}

// waitReady waits until every node of report is ready in the leader's list.
func waitReady(ctx context.Context, eng NodeEngine, report *InitReport, timeout time.Duration) error {
	var waiting []string
	err := poll(ctx, timeout, 200*time.Millisecond, func(ctx context.Context) error {
		nodes, err := eng.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			return fmt.Errorf("swarm init: list nodes: %w", err)
		}
		ready := map[string]bool{}
		for _, n := range nodes {
			ready[n.ID] = n.Status.State == swarm.NodeStateReady
		}
		waiting = nil
		for _, r := range report.Nodes {
			if !ready[r.NodeID] {
				waiting = append(waiting, r.Host)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		return errPending
	})
	if errors.Is(err, errPending) {
		return fmt.Errorf("swarm init: nodes not ready after %s: %v (check that the hosts reach each other on 2377/tcp, 7946/tcp+udp and 4789/udp)", timeout, waiting)
	}
	return err
}

// scrub keeps a join token out of an error message, in case an engine
// echoes the request.
func scrub(err error, t swarm.JoinTokens) error {
	msg := err.Error()
	clean := redactAll(msg, t.Worker, t.Manager)
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

// redactAll replaces every non-empty secret in s.
func redactAll(s string, secrets ...string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

type nopReporter struct{}

func (nopReporter) Event(string, ...any) {}
func (nopReporter) Live(string)          {}
func (nopReporter) Done()                {}
