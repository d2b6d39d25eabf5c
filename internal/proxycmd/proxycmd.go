// Package proxycmd is the command line of invdeploy's rollout proxy, the
// reverse proxy that owns a service's published port during zero-downtime
// rollouts (see internal/rollproxy). Two binaries run it: invdeploy-proxy,
// and invdeploy itself when started under that name (the proxy image made
// from a go-installed invdeploy, which has no invdeploy-proxy beside it).
//
//	invdeploy-proxy run    [--listen :8000] [--metrics :9180] [--admin SOCKET] [--state FILE] [--target host:port [--target-delay D]] [RELEASE FLAGS] [LIMIT FLAGS]
//	invdeploy-proxy deploy --target host:port [--health-path /readyz] [--health-timeout 60s] [--drain-timeout 30s] [RELEASE FLAGS]
//	invdeploy-proxy target
//	invdeploy-proxy healthcheck
//	invdeploy-proxy edge run|route|routes|certificates|healthcheck   (the HTTPS edge, see internal/edge)
//
// RELEASE FLAGS, all optional, name what the target runs for the
// invdeploy_release_info{project,release,revision,service} series on
// /metrics, which marks releases on the dashboards' time axis:
//
//	--project NAME --release N --revision REV --service NAME
//
// LIMIT FLAGS bound what clients can hold (see internal/httpguard); each
// has an environment variable, used when the flag is not given:
//
//	--max-conns 1024          INVDEPLOY_PROXY_MAX_CONNS
//	--read-header-timeout 10s INVDEPLOY_PROXY_READ_HEADER_TIMEOUT
//	--read-timeout 30s        INVDEPLOY_PROXY_READ_TIMEOUT
//	--idle-timeout 60s        INVDEPLOY_PROXY_IDLE_TIMEOUT
//	--write-timeout 30s       INVDEPLOY_PROXY_WRITE_TIMEOUT
//	--upstream-timeout 30s    INVDEPLOY_PROXY_UPSTREAM_TIMEOUT
//
// The state file keeps the current target across restarts of the proxy
// (a restarted proxy serves it at once).
//
// invdeploy runs `deploy` by exec inside the proxy's container, so the admin
// socket needs no published port and works the same on a remote engine.
package proxycmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/invdeploy/invdeploy/internal/edge"
	"github.com/invdeploy/invdeploy/internal/httpguard"
	"github.com/invdeploy/invdeploy/internal/rollproxy"
)

const (
	defaultAdmin = "/run/invdeploy-proxy/admin.sock"
	defaultState = "/var/lib/invdeploy-proxy/state.json"
	envPrefix    = "INVDEPLOY_PROXY_"
)

// Main runs the proxy's command line with args (without the program name)
// until SIGINT or SIGTERM and returns the exit code: 2 for a usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, args, os.Getenv, stdout, stderr)
	stop()
	if err != nil {
		fmt.Fprintln(stderr, "invdeploy-proxy:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ error }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		args = []string{"run"}
	}
	switch args[0] {
	case "run":
		return serve(ctx, args[1:], getenv, stderr)
	case "deploy":
		return deploy(ctx, args[1:], stdout, stderr)
	case "edge":
		// The per-engine HTTPS edge runs from the same image.
		err := edge.Command(ctx, args[1:], getenv, stdout, stderr)
		var ue edge.UsageError
		if errors.As(err, &ue) {
			return usageError{err}
		}
		return err
	case "healthcheck":
		// The container's HEALTHCHECK: the proxy answers on its admin socket.
		fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
		fs.SetOutput(stderr)
		admin := fs.String("admin", defaultAdmin, "admin socket")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err}
		}
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := rollproxy.NewAdminClient(*admin).Target(hctx)
		return err
	case "target":
		fs := flag.NewFlagSet("target", flag.ContinueOnError)
		fs.SetOutput(stderr)
		admin := fs.String("admin", defaultAdmin, "admin socket")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err}
		}
		t, err := rollproxy.NewAdminClient(*admin).Target(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, t)
		return nil
	default:
		return usageError{fmt.Errorf("unknown command %q (run, deploy, target, healthcheck, edge)", args[0])}
	}
}

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":8000", "address clients connect to")
	metricsAddr := fs.String("metrics", ":9180", "address of /metrics (Prometheus); empty disables")
	admin := fs.String("admin", defaultAdmin, "admin socket (unix)")
	target := fs.String("target", "", "first backend host:port (optional; else the first deploy sets it)")
	healthPath := fs.String("health-path", "/", "health path of the first backend")
	targetDelay := fs.Duration("target-delay", 0, "use --target only when no deploy has come within this time (invdeploy names the backend itself; --target is the fallback after a restart of the proxy)")
	statePath := fs.String("state", defaultState, "file that keeps the current target across restarts (empty: not kept)")
	var rel rollproxy.Release
	releaseFlags(fs, &rel, "the first backend")
	limits := httpguard.Defaults()
	if err := limits.FromEnv(envPrefix, getenv); err != nil {
		return usageError{err}
	}
	limits.Bind(fs, envPrefix)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := rel.Validate(); err != nil {
		return usageError{err}
	}
	if err := limits.Validate(); err != nil {
		return usageError{err}
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := rollproxy.New(reg)
	p.SetUpstreamTimeout(limits.UpstreamTimeout)
	restored := false
	if *statePath != "" {
		st, err := p.KeepState(*statePath, func(err error) { log.Error("state not kept", "err", err) })
		switch {
		case err != nil:
			// A state that cannot be read is not fatal: the deploy that
			// follows names the backend (and writes a good state).
			log.Error("state not restored", "err", err)
		case st.Target != "":
			restored = true
			log.Info("serving the kept target", "target", st.Target, "release", st.Number)
		}
	}

	_ = os.Remove(*admin)
	if err := os.MkdirAll(filepath.Dir(*admin), 0o700); err != nil {
		return fmt.Errorf("admin socket directory: %w", err)
	}
	al, err := net.Listen("unix", *admin)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	front, capped := limits.Server(p, ln)
	registerConnMetrics(reg, capped)
	servers := []*http.Server{
		front,
		{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second},
	}
	listeners := []net.Listener{capped, al}
	if *metricsAddr != "" {
		ml, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", *metricsAddr, err)
		}
		// Scrapes come from the stack network: a few connections do.
		ml2 := limits
		ml2.MaxConns = 64
		ms, mcapped := ml2.Server(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ml)
		servers = append(servers, ms)
		listeners = append(listeners, mcapped)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	log.Info("proxy listening", "listen", ln.Addr().String(), "metrics", *metricsAddr, "admin", *admin,
		"max_conns", limits.MaxConns, "read_timeout", limits.ReadTimeout.String(), "idle_timeout", limits.IdleTimeout.String(),
		"write_timeout", limits.WriteTimeout.String(), "upstream_timeout", limits.UpstreamTimeout.String())
	// A kept target serves at once; --target is only the fallback of a
	// proxy that kept none.
	if *target != "" && !restored {
		go func() {
			if *targetDelay > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(*targetDelay):
				}
				if p.Deployed() {
					return // a deploy named the backend meanwhile
				}
			}
			res, err := p.Deploy(ctx, *target, rollproxy.DeployOptions{HealthPath: *healthPath, Release: rel})
			if err != nil {
				log.Error("first backend", "target", *target, "err", err)
				return
			}
			log.Info("serving", "target", res.Target)
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	// SIGTERM: finish what is in flight, then exit.
	shut, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shut)
	}
	return nil
}

func deploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", defaultAdmin, "admin socket")
	var req rollproxy.DeployRequest
	fs.StringVar(&req.Target, "target", "", "new backend host:port (required)")
	fs.StringVar(&req.HealthPath, "health-path", "/", "path that must answer 2xx before the switch")
	fs.StringVar(&req.HealthTimeout, "health-timeout", "60s", "how long the new backend may take to turn healthy")
	fs.StringVar(&req.HealthInterval, "health-interval", "200ms", "pause between health requests")
	fs.StringVar(&req.DrainTimeout, "drain-timeout", "30s", "how long in-flight requests on the old backend may take")
	var rel rollproxy.Release
	releaseFlags(fs, &rel, "the new backend")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if req.Target == "" {
		return usageError{errors.New("deploy: --target host:port is required")}
	}
	req.Project, req.Release, req.Revision, req.Service = rel.Project, rel.Number, rel.Revision, rel.Service
	if _, err := req.Options(); err != nil {
		return usageError{err}
	}
	res, err := rollproxy.NewAdminClient(*admin).Deploy(ctx, req)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// registerConnMetrics exports the client connection cap's counts.
func registerConnMetrics(reg prometheus.Registerer, l *httpguard.Listener) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "invdeploy_proxy_connections", Help: "Client connections open."},
			func() float64 { return float64(l.Stats().Open) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "invdeploy_proxy_connections_refused_total", Help: "Client connections answered 503 because the proxy had as many as it takes (--max-conns)."},
			func() float64 { return float64(l.Stats().Refused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "invdeploy_proxy_connections_evicted_total", Help: "Idle client connections closed to make room for new ones."},
			func() float64 { return float64(l.Stats().Evicted) }),
	)
}

// releaseFlags binds the optional flags that name what a backend runs.
func releaseFlags(fs *flag.FlagSet, r *rollproxy.Release, what string) {
	fs.StringVar(&r.Project, "project", "", "compose project of "+what+" (invdeploy_release_info; optional)")
	fs.StringVar(&r.Number, "release", "", "invdeploy release number "+what+" runs (optional)")
	fs.StringVar(&r.Revision, "revision", "", "git revision "+what+" was built from (optional)")
	fs.StringVar(&r.Service, "service", "", "compose service "+what+" is (optional)")
}
