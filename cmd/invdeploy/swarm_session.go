package main

import (
	"context"

	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer/remote"
)

// session is one swarm node's connection: the remote deployer's connection
// and engine client, which deployer/swarm drives.
type session struct {
	d      *remote.Deployer
	client *client.Client
	conn   struct{ Endpoint remote.Endpoint }
}

// connect opens the connection to the --host node.
func (o *remoteOptions) connect(ctx context.Context, g *globalOptions) (*session, error) {
	d, err := o.open(ctx, g)
	if err != nil {
		return nil, err
	}
	if err := d.Ping(ctx); err != nil { // bounded by --engine-timeout
		closeRemote(g, d)
		return nil, err
	}
	s := &session{d: d, client: d.Client()}
	s.conn.Endpoint = d.Endpoint()
	return s, nil
}

// close ends the connection and reports its traffic.
func (s *session) close(g *globalOptions) { closeRemote(g, s.d) }
