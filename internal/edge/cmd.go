package edge

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// Defaults of the edge's command line (and its container, see
// deployer/edge.go).
const (
	DefaultDataDir = "/var/lib/invdeploy-edge"
	DefaultAdmin   = "/run/invdeploy-edge/admin.sock"
	envPrefix      = "INVDEPLOY_EDGE_"
)

// UsageError is a command line the edge does not take (exit 2).
type UsageError struct{ error }

func (u UsageError) Unwrap() error { return u.error }

// Command runs the edge's command line (the rollout proxy's binary runs it
// as `edge ...`):
//
//	edge run [--http :80] [--https :443] [--data DIR] [--admin SOCKET] [--metrics ADDR]
//	         [--acme-directory URL] [--acme-email E] [--acme-ca FILE] [--acme-challenges http-01,tls-alpn-01]
//	         [--renew-check 10m] [--drain 30s] [LIMIT FLAGS]
//	edge route set --project P --service S --hosts a.example.com[,b...] --upstream 127.0.0.1:PORT [--hsts SECONDS] [--cert FILE --key FILE]
//	edge route rm --project P [--service S]
//	edge routes
//	edge certificates
//	edge healthcheck
func Command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		args = []string{"run"}
	}
	admin := func(fs *flag.FlagSet) *string { return fs.String("admin", DefaultAdmin, "admin socket") }
	switch args[0] {
	case "run":
		return run(ctx, args[1:], getenv, stderr)
	case "healthcheck", "routes", "certificates":
		fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
		fs.SetOutput(stderr)
		sock := admin(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return UsageError{err}
		}
		c := NewAdminClient(*sock)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var v any
		var err error
		switch args[0] {
		case "healthcheck":
			return c.Health(cctx)
		case "routes":
			v, err = c.Routes(cctx)
		default:
			v, err = c.Certificates(cctx)
		}
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(v)
	case "route":
		if len(args) < 2 || (args[1] != "set" && args[1] != "rm") {
			return UsageError{errors.New("route: want set or rm")}
		}
		fs := flag.NewFlagSet("route "+args[1], flag.ContinueOnError)
		fs.SetOutput(stderr)
		sock := admin(fs)
		var r Route
		var hosts string
		fs.StringVar(&r.Project, "project", "", "compose project")
		fs.StringVar(&r.Service, "service", "", "compose service")
		fs.StringVar(&hosts, "hosts", "", "host names, comma-separated (set)")
		fs.StringVar(&r.Upstream, "upstream", "", "host:port of the service's rollout proxy (set)")
		fs.IntVar(&r.HSTS, "hsts", 0, "Strict-Transport-Security max-age in seconds (set; 0: no header)")
		fs.StringVar(&r.CertFile, "cert", "", "own certificate chain, a file in the data directory (set)")
		fs.StringVar(&r.KeyFile, "key", "", "its key, a file in the data directory (set)")
		if err := fs.Parse(args[2:]); err != nil {
			return UsageError{err}
		}
		c := NewAdminClient(*sock)
		var t Table
		var err error
		if args[1] == "rm" {
			if r.Project == "" {
				return UsageError{errors.New("route rm: --project is required")}
			}
			t, err = c.RemoveRoutes(ctx, r.Project, r.Service)
		} else {
			if hosts != "" {
				r.Hosts = strings.Split(hosts, ",")
			}
			if err := r.Validate(); err != nil {
				return UsageError{err}
			}
			t, err = c.SetRoute(ctx, r)
		}
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(t)
	default:
		return UsageError{fmt.Errorf("edge: unknown command %q (run, route, routes, certificates, healthcheck)", args[0])}
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var challenges, metricsAddr string
	var drain time.Duration
	fs.StringVar(&cfg.HTTPAddr, "http", ":80", "plain HTTP listener (redirects, HTTP-01 challenges)")
	fs.StringVar(&cfg.HTTPSAddr, "https", ":443", "HTTPS listener")
	fs.StringVar(&cfg.DataDir, "data", DefaultDataDir, "certificates, ACME account, routes and the hand-off socket")
	fs.StringVar(&cfg.AdminSocket, "admin", DefaultAdmin, "admin socket (unix)")
	fs.StringVar(&metricsAddr, "metrics", "", "address of /metrics (Prometheus); empty disables")
	fs.StringVar(&cfg.ACMEDirectory, "acme-directory", LetsEncrypt, "ACME directory URL")
	fs.StringVar(&cfg.ACMEEmail, "acme-email", "", "ACME account contact (optional)")
	fs.StringVar(&cfg.ACMECAFile, "acme-ca", "", "PEM bundle trusted for the ACME directory's HTTPS (beside the system's)")
	fs.StringVar(&challenges, "acme-challenges", ChallengeHTTP01+","+ChallengeTLSALPN01, "challenge types offered")
	fs.DurationVar(&cfg.RenewCheck, "renew-check", 10*time.Minute, "how often certificates are checked for renewal")
	fs.DurationVar(&drain, "drain", 30*time.Second, "how long requests in flight may take once told to stop")
	cfg.Limits = httpguard.Defaults()
	if err := cfg.Limits.FromEnv(envPrefix, getenv); err != nil {
		return UsageError{err}
	}
	cfg.Limits.Bind(fs, envPrefix)
	if err := fs.Parse(args); err != nil {
		return UsageError{err}
	}
	if err := cfg.Limits.Validate(); err != nil {
		return UsageError{err}
	}
	for _, c := range strings.Split(challenges, ",") {
		if c != ChallengeHTTP01 && c != ChallengeTLSALPN01 {
			return UsageError{fmt.Errorf("--acme-challenges: %q is not %s or %s", c, ChallengeHTTP01, ChallengeTLSALPN01)}
		}
		cfg.Challenges = append(cfg.Challenges, c)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e, err := New(cfg, log, reg)
	if err != nil {
		return err
	}
	return e.Serve(ctx, metricsAddr, reg, drain)
}
