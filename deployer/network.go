package deployer

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/invdeploy/invdeploy/internal/version"
)

// An existing network is planned like a container: it is kept when it
// matches its compose definition (driver, internal, attachable, IPAM,
// driver_opts, labels), and recreated when it differs, as docker compose
// does. Recreating a network means removing the containers attached to it,
// so it is only done when every attached container belongs to this project
// (they are removed first, and up creates them again on the new network;
// volumes stay). A network that another project's container uses, or one
// that invdeploy did not create for this project, is never touched: preflight
// refuses and says what to do.

// networkCreateOptions is how invdeploy creates networks.KEY of p.
func networkCreateOptions(p *types.Project, key string, nc types.NetworkConfig) network.CreateOptions {
	labels := map[string]string{LabelProject: p.Name, LabelNetwork: key, LabelManagedBy: "invdeploy", LabelVersion: version.Version}
	for k, v := range nc.Labels {
		labels[k] = v
	}
	o := network.CreateOptions{Driver: nc.Driver, Options: nc.DriverOpts, Internal: nc.Internal, Attachable: nc.Attachable, Labels: labels}
	if nc.Ipam.Driver != "" || len(nc.Ipam.Config) > 0 {
		o.IPAM = &network.IPAM{Driver: nc.Ipam.Driver, Options: nc.Ipam.Options}
		for _, pool := range nc.Ipam.Config {
			if pool == nil {
				continue
			}
			o.IPAM.Config = append(o.IPAM.Config, network.IPAMConfig{Subnet: pool.Subnet, IPRange: pool.IPRange, Gateway: pool.Gateway, AuxAddress: pool.AuxiliaryAddresses})
		}
	}
	return o
}

// ownLabels are the labels invdeploy itself puts on a network; they are not
// part of the compose definition.
var ownLabels = map[string]bool{LabelProject: true, LabelNetwork: true, LabelManagedBy: true, LabelVersion: true}

// networkDiff lists how the existing network have differs from networks.KEY
// of the compose file, in words ("driver bridge, want macvlan"); none means
// it can be kept.
func networkDiff(nc types.NetworkConfig, have network.Summary) []string {
	var diffs []string
	wantDriver := nc.Driver
	if wantDriver == "" {
		wantDriver = "bridge"
	}
	if have.Driver != wantDriver {
		diffs = append(diffs, fmt.Sprintf("driver is %s, compose wants %s", have.Driver, wantDriver))
	}
	if have.Internal != nc.Internal {
		diffs = append(diffs, fmt.Sprintf("internal is %t, compose wants %t", have.Internal, nc.Internal))
	}
	if have.Attachable != nc.Attachable {
		diffs = append(diffs, fmt.Sprintf("attachable is %t, compose wants %t", have.Attachable, nc.Attachable))
	}
	if nc.Ipam.Driver != "" && nc.Ipam.Driver != have.IPAM.Driver {
		diffs = append(diffs, fmt.Sprintf("ipam driver is %s, compose wants %s", have.IPAM.Driver, nc.Ipam.Driver))
	}
	// Subnets are compared only when compose names them: otherwise the
	// engine picks one.
	var want, got []string
	for _, pool := range nc.Ipam.Config {
		if pool != nil && pool.Subnet != "" {
			want = append(want, pool.Subnet)
		}
	}
	if len(want) > 0 {
		for _, c := range have.IPAM.Config {
			got = append(got, c.Subnet)
		}
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(want, ",") != strings.Join(got, ",") {
			diffs = append(diffs, fmt.Sprintf("subnets are [%s], compose wants [%s]", strings.Join(got, " "), strings.Join(want, " ")))
		}
	}
	for _, k := range sortedKeys(nc.DriverOpts) {
		if have.Options[k] != nc.DriverOpts[k] {
			diffs = append(diffs, fmt.Sprintf("driver option %s is %q, compose wants %q", k, have.Options[k], nc.DriverOpts[k]))
		}
	}
	for _, k := range sortedKeys(nc.Labels) {
		if v, ok := have.Labels[k]; !ok || v != nc.Labels[k] {
			diffs = append(diffs, fmt.Sprintf("label %s is %q, compose wants %q", k, v, nc.Labels[k]))
		}
	}
	for _, k := range sortedKeys(have.Labels) {
		if _, ok := nc.Labels[k]; !ok && !ownLabels[k] && !strings.HasPrefix(k, "com.docker.") {
			diffs = append(diffs, fmt.Sprintf("label %s is set, compose has none", k))
		}
	}
	return diffs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// existingNetwork returns the network named name, if any.
func (d *Deployer) existingNetwork(ctx context.Context, name string) (network.Summary, bool, error) {
	list, err := d.engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return network.Summary{}, false, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range list {
		if n.Name == name { // the name filter matches substrings
			return n, true, nil
		}
	}
	return network.Summary{}, false, nil
}

// networkUsers are the containers (any state) attached to network name,
// split into this project's and the others.
func (d *Deployer) networkUsers(ctx context.Context, name, project string) (ours, others []container.Summary, err error) {
	cs, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", name))})
	if err != nil {
		return nil, nil, fmt.Errorf("list containers on network %s: %w", name, err)
	}
	for _, c := range cs {
		if c.Labels[LabelProject] == project {
			ours = append(ours, c)
		} else {
			others = append(others, c)
		}
	}
	return ours, others, nil
}

// changedNetworks are the stack's networks that exist and differ from their
// compose definition: key -> the existing network and the differences.
// External networks are the user's and are taken as they are.
func (d *Deployer) changedNetworks(ctx context.Context, p *types.Project) (map[string]network.Summary, map[string][]string, error) {
	have, diffs := map[string]network.Summary{}, map[string][]string{}
	for _, key := range usedNetworks(p) {
		nc := p.Networks[key]
		if nc.External {
			continue
		}
		n, ok, err := d.existingNetwork(ctx, nc.Name)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		if ds := networkDiff(nc, n); len(ds) > 0 {
			have[key], diffs[key] = n, ds
		}
	}
	return have, diffs, nil
}

// usedNetworks are the keys of the networks some service joins, sorted.
func usedNetworks(p *types.Project) []string {
	used := map[string]bool{}
	for _, s := range p.Services {
		if s.NetworkMode == "" {
			for k := range s.Networks {
				used[k] = true
			}
		}
	}
	return sortedKeys(used)
}

// checkNetworks is the preflight rule: a changed network that up could not
// recreate (not created by invdeploy for this project, or used by another
// project's containers) refuses, naming the differences and the fix.
func (d *Deployer) checkNetworks(ctx context.Context, p *types.Project, add func(rule, subject, format string, args ...any)) error {
	have, diffs, err := d.changedNetworks(ctx, p)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(have) {
		n := have[key]
		what := strings.Join(diffs[key], "; ")
		if n.Labels[LabelProject] != p.Name || n.Labels[LabelNetwork] != key {
			add("network", n.Name, "exists but was not created by invdeploy for networks.%s of project %s, and differs from it (%s); remove it (docker network rm %s) or give networks.%s another name", key, p.Name, what, n.Name, key)
			continue
		}
		_, others, err := d.networkUsers(ctx, n.Name, p.Name)
		if err != nil {
			return err
		}
		if len(others) > 0 {
			names := make([]string, 0, len(others))
			for _, c := range others {
				names = append(names, containerName(c))
			}
			add("network", n.Name, "differs from networks.%s (%s) and must be recreated, but containers of other projects use it: %s; disconnect them (docker network disconnect %s CONTAINER) and run up again", key, what, strings.Join(names, ", "), n.Name)
		}
	}
	return nil
}

// recreateNetwork performs OpNetworkRecreate: it removes this project's
// containers attached to the network (dependents first), the network, and
// creates it anew from its compose definition; the plan's container
// operations then create the containers again. Preflight has refused the
// cases this must not touch.
func (d *Deployer) recreateNetwork(ctx context.Context, p *types.Project, op Op) error {
	n := op.x.net
	d.out.Event("Network %s differs from networks.%s (%s): recreating it", n.Name, op.x.netKey, op.Reason)
	for _, wave := range stopWaves(op.x.remove) {
		for _, c := range wave {
			if err := d.stopAndRemove(ctx, c, 0); err != nil {
				return err
			}
		}
	}
	if err := d.removeNetwork(ctx, n.ID); err != nil {
		return fmt.Errorf("remove network %s to recreate it: %w", n.Name, err)
	}
	d.out.Event("Network %s removed", n.Name)
	nc := p.Networks[op.x.netKey]
	if _, err := d.engine.NetworkCreate(ctx, nc.Name, networkCreateOptions(p, op.x.netKey, nc)); err != nil {
		return fmt.Errorf("create network %s: %w", nc.Name, err)
	}
	d.out.Event("Network %s created", nc.Name)
	return nil
}

// joinDiffs is a network's differences in one phrase.
func joinDiffs(diffs []string) string { return strings.Join(diffs, "; ") }
