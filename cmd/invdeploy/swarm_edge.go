package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/internal/httpguard"
	"github.com/invdeploy/invdeploy/internal/swarmedge"
)

// edgeEnvPrefix prefixes the environment variables of the edge's limits
// (INVDEPLOY_EDGE_MAX_CONNS, ...).
const edgeEnvPrefix = "INVDEPLOY_EDGE_"

// newSwarmEdgeCommand is what the edge service runs on every node (in the
// image swarm up builds from this executable); users do not run it.
func newSwarmEdgeCommand(g *globalOptions) *cobra.Command {
	var routes []string
	var probe string
	// Limits: defaults, then INVDEPLOY_EDGE_* from the environment, then
	// the flags (bound below with the environment's values as defaults).
	limits := httpguard.Defaults()
	envErr := limits.FromEnv(edgeEnvPrefix, os.Getenv)
	cmd := &cobra.Command{
		Use:    "edge --route LISTEN=HOST:PORT ...",
		Short:  "The HTTP edge swarm up runs on every node (internal)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if probe != "" {
				// The edge's healthcheck: its listener accepts.
				c, err := net.DialTimeout("tcp", probe, 2*time.Second)
				if err != nil {
					return err
				}
				return c.Close()
			}
			if len(routes) == 0 {
				return usagef("edge needs --route :8000=tasks.api:8000")
			}
			if envErr != nil {
				return usageError{envErr}
			}
			if err := limits.Validate(); err != nil {
				return usageError{err}
			}
			log := slog.New(slog.NewJSONHandler(g.stderr, nil))
			errc := make(chan error, len(routes))
			var servers []*http.Server
			for _, rt := range routes {
				listen, upstream, ok := strings.Cut(rt, "=")
				if !ok {
					return usagef("--route %q: want LISTEN=HOST:PORT", rt)
				}
				e, err := swarmedge.New(upstream, net.DefaultResolver.LookupHost, swarmedge.Options{UpstreamTimeout: limits.UpstreamTimeout}, log.With("upstream", upstream))
				if err != nil {
					return usageError{err}
				}
				e.Refresh(ctx) // backends known before the first request
				go e.Run(ctx)
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return err
				}
				srv, capped := limits.Server(e, ln)
				servers = append(servers, srv)
				log.Info("edge listening", "listen", ln.Addr().String(), "upstream", upstream, "max_conns", limits.MaxConns,
					"read_timeout", limits.ReadTimeout.String(), "idle_timeout", limits.IdleTimeout.String(), "upstream_timeout", limits.UpstreamTimeout.String())
				go func() { errc <- srv.Serve(capped) }()
			}
			select {
			case err := <-errc:
				return fmt.Errorf("edge: %w", err)
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			for _, s := range servers {
				if err := s.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&probe, "probe", "", "healthcheck: exit 0 when ADDR accepts a TCP connection")
	cmd.Flags().StringArrayVar(&routes, "route", nil, "LISTEN=HOST:PORT: serve LISTEN, balancing over HOST's addresses (repeatable)")
	limits.Bind(cmd.Flags(), edgeEnvPrefix)
	return cmd
}
