package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

type upOptions struct {
	stack       stackOptions
	waitTimeout time.Duration
	build       bool
	// removeOrphans removes containers of services the file no longer has.
	removeOrphans bool
	dryRun        bool
	edge          edgeFlags
}

func newUpCommand(g *globalOptions) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up [-f FILE] [-p NAME] [--profile P] [--wait-timeout D] [--build] [--remove-orphans] [--dry-run]",
		Short: "Preflight, build if needed, start the stack and wait until it is healthy",
		Long: `up deploys a stack. Preflight runs first and refuses (exit 3, nothing created)
when a port is taken, a secret is missing or weak, a .env or secret file is tracked
by git or would enter a build context, an image is unavailable, or the engine does
not answer. Images with a build section are built when missing, when their build
context changed since they were built (what is on disk is deployed), or with --build.
Services start in dependency order (depends_on conditions are honoured); up returns
when every container runs and every healthcheck passes, else exits 4 showing the
failing container's log lines that look like errors, its healthcheck's last results
and its last 20 log lines (probe access-log lines left out).

up is idempotent: an unchanged service is left running untouched. A changed
stateless service that publishes one HTTP port is rolled with zero downtime: its
port belongs to invdeploy's rollout proxy, the new container starts beside the old
one, and the proxy switches once it is healthy, then drains and stops the old one
(a new container that fails leaves the old one serving: exit 4). Other changed
services (a named volume, several ports) are recreated in place. --dry-run prints
that plan and changes nothing. Without -f and with no compose file in the working directory it deploys
the bundled Invoicing stack, whose build context is the working directory; its
database password is generated on the first up and kept, mode 0600, under
$XDG_CONFIG_HOME/invdeploy/<project>/ and on the engine (set INVOICING_DB_PASSWORD
to choose one).

Services with profiles: start only when one of their profiles is enabled with
--profile (repeatable) or COMPOSE_PROFILES. Containers of services the file no
longer has (orphans) are named in a warning; --remove-orphans removes them.

HTTPS: a service whose x-invdeploy names hosts (hosts: [api.example.com]) is
served over HTTPS by the engine's edge, one container (invdeploy-edge) owning
ports 80 and 443 for every project on the engine. It orders certificates by ACME
(Let's Encrypt unless --acme-directory), keeps them in the volume
invdeploy-edge-data, redirects HTTP to HTTPS and forwards to the service's
published port, so a roll stays zero-downtime. Preflight refuses a host name that
does not look like one and ports 80/443 held by something else (exit 3). The
--edge-* and --acme-* settings are the engine's: an up that gives none keeps
what the edge runs with. See docs/guides/https.md.`,
		Example: `  invdeploy up                                   # bundled stack, API on 127.0.0.1:8000
  INVOICING_API_PORT=8080 invdeploy up
  invdeploy up -f docker-compose.yml -p shop --wait-timeout 5m
  invdeploy up --profile monitoring --remove-orphans
  invdeploy up --dry-run -o json                 # the plan, nothing changed
  invdeploy up -f compose.yaml --acme-email ops@example.com   # services with x-invdeploy hosts get HTTPS`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.waitTimeout <= 0 {
				return usagef("--wait-timeout must be positive")
			}
			if err := o.edge.check(); err != nil {
				return err
			}
			st, err := o.stack.load(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			uo := deployer.UpOptions{Build: o.build, WaitTimeout: o.waitTimeout, RemoveOrphans: o.removeOrphans, ProxyBinary: proxyBinary(), Edge: o.edge.o}
			if o.dryRun {
				plan, err := d.Plan(cmd.Context(), st, uo)
				if err != nil {
					return err
				}
				return printPlan(g, plan)
			}
			announce(g, "Deploying", st)
			uo.Lock, uo.RecordCommand = true, "up"
			res, err := d.Up(cmd.Context(), st, uo)
			if err != nil {
				return err
			}
			return printUp(g, &o.stack, st, d, cmd, res)
		},
	}
	o.stack.bind(cmd, true)
	durationFlag(cmd, &o.waitTimeout, "wait-timeout", 3*time.Minute, "how long to wait for dependencies and health")
	cmd.Flags().BoolVar(&o.build, "build", false, "rebuild images that have a build section even when present")
	cmd.Flags().BoolVar(&o.removeOrphans, "remove-orphans", false, "remove containers of services the compose file no longer has")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the plan (per service: keep, create, roll, recreate, and why) and change nothing")
	o.edge.bind(cmd)
	return cmd
}

// printPlan prints up's plan: its operations on networks, volumes, images
// and secrets, then one line per container, with the reason and how a
// change is applied.
func printPlan(g *globalOptions, p *deployer.Plan) error {
	if g.Output == "json" {
		return writeJSON(g.stdout, p)
	}
	verdict := "nothing to change"
	if p.Changes() {
		verdict = "changes below"
	}
	fmt.Fprintf(g.stdout, "Plan for project %s (--dry-run: nothing was changed; %s)\n", p.Project, verdict)
	for _, w := range p.Warnings {
		fmt.Fprintf(g.stdout, "  warning: %s\n", w)
	}
	for _, op := range p.Ops {
		group, verb, ok := planLine(op)
		if !ok {
			continue
		}
		line := fmt.Sprintf("  %-10s %-9s %s", group, verb, op.Target)
		if op.Reason != "" {
			line += ": " + op.Reason
		}
		fmt.Fprintln(g.stdout, line)
	}
	for _, s := range p.Services {
		build := ""
		if s.WillBuild {
			build = ", image built first"
		}
		for _, c := range s.Containers {
			line := fmt.Sprintf("  %-10s %-9s %s", s.Service, c.Action, c.Container)
			if c.Reason != "" {
				line += ": " + c.Reason
			}
			if c.If != "" {
				line += fmt.Sprintf(" (only if %s; else %s)", c.If, c.Else)
			}
			fmt.Fprintln(g.stdout, line+build)
		}
		fmt.Fprintf(g.stdout, "  %-10s changes:  %s\n", "", s.RolloutReason)
		if verb := map[deployer.Action]string{deployer.ActionCreate: "created", deployer.ActionRecreate: "recreated", deployer.ActionStart: "started"}[s.Proxy]; verb != "" {
			fmt.Fprintf(g.stdout, "  %-10s proxy:    %s (%s)\n", "", verb, s.ProxyReason)
		}
	}
	for _, o := range p.Orphans {
		fmt.Fprintf(g.stdout, "  orphan     kept      %s (--remove-orphans removes it)\n", o)
	}
	return nil
}

// planLine is how an operation that is not a service's container or proxy
// is shown: its group and verb.
func planLine(op deployer.Op) (group, verb string, ok bool) {
	switch op.Kind {
	case deployer.OpSecretAdopt:
		return "secret", "adopt", true
	case deployer.OpSecretGenerate:
		return "secret", "generate", true
	case deployer.OpSecretStore:
		return "secret", "store", true
	case deployer.OpSecretRotate:
		return "secret", "rotate", true
	case deployer.OpSecretRewrite:
		return "secret", "rewrite", true
	case deployer.OpPull:
		return "image", "pull", true
	case deployer.OpBuild:
		return "image", "build", true
	case remote.OpLocalBuild:
		return "image", "build here", true
	case remote.OpImageSend:
		return "image", "move", true
	case deployer.OpProxyImage:
		return "image", "build", true
	case deployer.OpNetworkRecreate:
		return "network", "recreate", true
	case deployer.OpNetworkCreate:
		return "network", "create", true
	case deployer.OpVolumeCreate:
		return "volume", "create", true
	case deployer.OpRemove:
		if op.Reason == deployer.ReasonOrphan {
			return "orphan", "remove", true
		}
	case deployer.OpEdgeCreate:
		return "edge", "create", true
	case deployer.OpEdgeUpgrade:
		return "edge", "upgrade", true
	case deployer.OpEdgeStart:
		return "edge", "start", true
	case deployer.OpEdgeRoute:
		return "edge", "route", true
	case deployer.OpEdgeUnroute:
		return "edge", "unroute", true
	}
	return "", "", false
}

func printUp(g *globalOptions, so *stackOptions, st *deployer.Stack, d *deployer.Deployer, cmd *cobra.Command, res *deployer.UpResult) error {
	status, err := d.Status(cmd.Context(), st.Name())
	if err != nil {
		return err
	}
	// What up saw: a container its own probe found healthy is healthy,
	// though the engine may not have run its healthcheck yet.
	status = deployer.WithReadiness(status, res.Ready)
	if g.Output == "json" {
		return writeJSON(g.stdout, map[string]any{"project": st.Name(), "operations": nonNil(res.Ops), "steps": nonNil(res.Steps), "containers": nonNil(status), "elapsed_seconds": res.Elapsed.Seconds(), "ready": nonNil(res.Ready), "switches": nonNil(res.Switches)})
	}
	verb := "is up"
	if !res.Changed() {
		verb = "is up, nothing changed"
	}
	fmt.Fprintf(g.stdout, "Stack %s %s: %s (%.1fs)\n", st.Name(), verb, containerSummary(status), res.Elapsed.Seconds())
	for _, u := range st.URLs("127.0.0.1") {
		fmt.Fprintf(g.stdout, "  %s: %s\n", u.Service, u.URL)
	}
	fmt.Fprintf(g.stdout, "Logs: %s    Status: %s    Stop: %s (keeps the data)\n",
		localHint(g, so, "logs -f"), localHint(g, so, "status"), localHint(g, so, "down"))
	return nil
}
