package main

import (
	"context"

	"github.com/invdeploy/invdeploy/deployer/remote"
	"github.com/invdeploy/invdeploy/deployer/swarm"
)

// opener opens one swarm node's connection with the remote flags, given
// its URL; closing reports its traffic.
func (o *remoteOptions) opener(g *globalOptions) (swarm.Opener, func(*remote.Deployer)) {
	open := func(ctx context.Context, url string) (*remote.Deployer, error) {
		gh := *g
		gh.Host = url
		return o.open(ctx, &gh)
	}
	return open, func(d *remote.Deployer) { closeRemote(g, d) }
}

// cluster opens the swarm whose manager is --host.
func (o *remoteOptions) cluster(ctx context.Context, g *globalOptions) (*swarm.Cluster, error) {
	d, err := o.open(ctx, g)
	if err != nil {
		return nil, err
	}
	open, closer := o.opener(g)
	return swarm.NewCluster(ctx, d, open, closer, g.progress())
}
