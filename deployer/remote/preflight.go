package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// PreflightEngine is the part of the Engine API the remote preflight uses;
// *client.Client implements it.
type PreflightEngine interface {
	ServerVersion(ctx context.Context) (dockertypes.Version, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerWait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
}

// worldForbidden are host ports that must never be reachable from outside:
// the Docker Engine API (plain and TLS) and PostgreSQL.
var worldForbidden = map[int]string{
	2375: "the Docker Engine API without TLS (root on the host for anyone who reaches it)",
	2376: "the Docker Engine API",
	5432: "PostgreSQL",
}

// PreflightOptions are the inputs of the remote-only checks.
type PreflightOptions struct {
	// AppCIDR is who may reach the published app ports (--allow-from).
	AppCIDR string
	// AdminCIDR is who may reach SSH (--admin-cidr).
	AdminCIDR string
	// SSHPort is the host's SSH port, for the SSH ingress rule (0: none, e.g. tcp://).
	SSHPort int
	// Edge are the HTTPS edge's settings: with services that name hosts,
	// its ports are the ones to open, not theirs.
	Edge deployer.EdgeOptions
}

// IngressRule is one EC2 security-group ingress rule the stack needs.
type IngressRule struct {
	Port    int
	CIDR    string // may be a placeholder when the user gave none
	Purpose string
}

// AWSCommand is the rule as an aws CLI command (the group id left for the user).
func (r IngressRule) AWSCommand() string {
	return fmt.Sprintf("aws ec2 authorize-security-group-ingress --group-id <sg-id> --protocol tcp --port %d --cidr %s", r.Port, r.CIDR)
}

// Findings are the outcome of the remote preflight.
type Findings struct {
	// Engine describes the remote engine: "Docker 20.10.24 (API 1.41) linux/amd64".
	Engine string
	// ToProbe are published host ports no container holds: Probe checks
	// whether a process on the host does.
	ToProbe []int
	// Problems refuse the deploy (exit 3).
	Problems []deployer.Problem
	// Rules are the security-group ingress rules to print.
	Rules []IngressRule
	// Notes are hints for the user (no refusal).
	Notes []string
	// edgePorts are the HTTPS edge's ports among ToProbe.
	edgePorts map[int]bool
}

// Err is a *deployer.PreflightError when there are problems, else nil.
func (f *Findings) Err() error {
	if len(f.Problems) == 0 {
		return nil
	}
	return &deployer.PreflightError{Problems: f.Problems}
}

// Preflight runs the checks only a remote deploy needs, before anything is
// sent or created: the engine version; host ports published to the world
// that must never be (2375, 2376, 5432, or any port of Postgres); and the
// security-group rules the stack needs. It lists in ToProbe the published
// ports that no container holds; Findings.Probe then checks them on the host
// from a short-lived container in the host's network namespace (no shell on
// the host needed). Ports held by containers, and weak secrets, are checked
// by deployer.Check with Remote set.
func Preflight(ctx context.Context, eng PreflightEngine, st *deployer.Stack, o PreflightOptions) (*Findings, error) {
	f := &Findings{}
	v, err := eng.ServerVersion(ctx)
	if err != nil {
		return f, fmt.Errorf("remote preflight: engine version: %w", err)
	}
	f.Engine = fmt.Sprintf("Docker %s (API %s) %s/%s", v.Version, v.APIVersion, v.Os, v.Arch)

	p := st.Project
	edgePorts, fronted, err := deployer.EdgePorts(st, o.Edge)
	if err != nil {
		return f, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "compose", Subject: deployer.ExtService + ".hosts", Message: err.Error()}}}
	}
	var want []int
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		for _, port := range s.Ports {
			n, err := strconv.Atoi(port.Published)
			if err != nil || port.Published == "" {
				continue
			}
			proto := port.Protocol
			if proto == "" {
				proto = "tcp"
			}
			subject := fmt.Sprintf("services.%s.ports %s:%d", name, displayHost(port.HostIP), n)
			world := !isLoopback(port.HostIP)
			if world {
				if what, bad := worldForbidden[n]; bad {
					f.Problems = append(f.Problems, deployer.Problem{Rule: "exposure", Subject: subject,
						Message: fmt.Sprintf("would publish %s to the world; remove the port or bind it to 127.0.0.1", what)})
					continue
				}
				if port.Target == 5432 || isPostgres(s) {
					f.Problems = append(f.Problems, deployer.Problem{Rule: "exposure", Subject: subject,
						Message: "would publish PostgreSQL to the world; on a remote host the database is reached only by the app over the stack's network"})
					continue
				}
			}
			if proto != "tcp" {
				continue
			}
			if world && fronted[name] {
				f.Notes = append(f.Notes, fmt.Sprintf("services.%s is reached through the HTTPS edge: keep its port %d closed in the security group (or publish it on 127.0.0.1)", name, n))
			} else if world {
				cidr := o.AppCIDR
				if cidr == "" {
					cidr = "<CIDR>"
				}
				f.Rules = append(f.Rules, IngressRule{Port: n, CIDR: cidr, Purpose: "services." + name})
			}
			want = append(want, n)
		}
	}
	if len(edgePorts) == 2 {
		cidr := o.AppCIDR
		if cidr == "" {
			cidr = "<CIDR>"
		}
		// The CA validates HTTP-01 from addresses it does not publish:
		// port 80 must be open to all, or certificates are not renewed.
		f.Rules = append(f.Rules, IngressRule{Port: edgePorts[0], CIDR: "0.0.0.0/0", Purpose: "HTTPS edge: ACME HTTP-01 challenges (from anywhere) and redirects to HTTPS"},
			IngressRule{Port: edgePorts[1], CIDR: cidr, Purpose: "HTTPS edge"})
	}
	if o.SSHPort > 0 {
		cidr := o.AdminCIDR
		if cidr == "" {
			cidr = "<your-admin-ip>/32"
		}
		f.Rules = append(f.Rules, IngressRule{Port: o.SSHPort, CIDR: cidr, Purpose: "SSH for invdeploy (admin only)"})
	}
	if o.AppCIDR == "" && hasPlaceholder(f.Rules) {
		f.Notes = append(f.Notes, "give --allow-from CIDR to fill in who may reach the app port")
	}
	if err := CheckCIDR(o.AppCIDR, "--allow-from"); err != nil {
		return f, err
	}
	if err := CheckCIDR(o.AdminCIDR, "--admin-cidr"); err != nil {
		return f, err
	}

	// Ports published by running containers are judged by deployer.Check
	// (ours are fine, others refuse); the rest are left for Probe.
	running, err := eng.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return f, fmt.Errorf("remote preflight: list containers: %w", err)
	}
	published := map[int]bool{}
	for _, c := range running {
		for _, cp := range c.Ports {
			if cp.Type == "tcp" && cp.PublicPort != 0 {
				published[int(cp.PublicPort)] = true
			}
		}
	}
	for _, n := range uniqInts(want) {
		if !published[n] {
			f.ToProbe = append(f.ToProbe, n)
		}
	}
	if len(edgePorts) == 2 && !edgeRuns(running, edgePorts) {
		f.edgePorts = map[int]bool{}
		for _, n := range edgePorts {
			if published[n] {
				f.Problems = append(f.Problems, deployer.Problem{Rule: "port", Subject: strconv.Itoa(n),
					Message: "is held by a container on the remote host; the HTTPS edge needs it: stop that container, or give the edge other ports (--edge-http-port/--edge-https-port)"})
				continue
			}
			f.edgePorts[n] = true
			f.ToProbe = append(f.ToProbe, n)
		}
		f.ToProbe = uniqInts(f.ToProbe)
	}
	return f, nil
}

// edgeRuns reports whether the engine's HTTPS edge runs on ports.
func edgeRuns(running []container.Summary, ports []int) bool {
	want := strconv.Itoa(ports[0]) + "," + strconv.Itoa(ports[1])
	for _, c := range running {
		if c.Labels["io.invdeploy.role"] == "edge" && c.Labels[deployer.LabelEdgePorts] == want {
			return true
		}
	}
	return false
}

func hasPlaceholder(rules []IngressRule) bool {
	for _, r := range rules {
		if r.CIDR == "<CIDR>" {
			return true
		}
	}
	return false
}

// Probe checks the ports in ToProbe with the probe command run from img
// (which must be on the remote engine: call it after the transfer) and adds
// a problem for each port a process on the host holds.
func (f *Findings) Probe(ctx context.Context, eng PreflightEngine, img string, cmd []string) error {
	if len(f.ToProbe) == 0 {
		return nil
	}
	held, err := ProbePorts(ctx, eng, img, cmd, f.ToProbe)
	if errors.Is(err, errNoProbe) {
		// The image has no probe subcommand (a stack other than the
		// bundled one): fall back to asking the engine to bind each port.
		held, err = probeByBinding(ctx, eng, img, f.ToProbe)
	}
	if err != nil {
		return fmt.Errorf("remote preflight: %w", err)
	}
	for _, n := range held {
		msg := "is held by a process on the remote host (not a container); stop it there, or publish the app on another port (--port)"
		if f.edgePorts[n] {
			msg = "is held by a process on the remote host (not a container); the HTTPS edge needs it: stop it there, or give the edge other ports (--edge-http-port/--edge-https-port)"
		}
		f.Problems = append(f.Problems, deployer.Problem{Rule: "port", Subject: strconv.Itoa(n), Message: msg})
	}
	return nil
}

// ProbePorts runs the probe command in a short-lived container sharing the
// host's network namespace and returns the ports it reports held. The
// container runs as root with only NET_BIND_SERVICE (to probe ports below
// 1024), a read-only root filesystem and no new privileges, and is always
// removed.
func ProbePorts(ctx context.Context, eng PreflightEngine, img string, cmd []string, ports []int) ([]int, error) {
	if len(cmd) == 0 {
		cmd = []string{"/invoicing-api", "probe-ports"}
	}
	args := append([]string{}, cmd[1:]...)
	for _, p := range ports {
		args = append(args, strconv.Itoa(p))
	}
	var suffix [4]byte
	rand.Read(suffix[:])
	name := "invdeploy-port-probe-" + hex.EncodeToString(suffix[:])
	created, err := eng.ContainerCreate(ctx,
		&container.Config{Image: img, Entrypoint: cmd[:1], Cmd: args, User: "0:0",
			Labels: map[string]string{deployer.LabelManagedBy: "invdeploy", "io.invdeploy.role": "port-probe"}},
		&container.HostConfig{NetworkMode: "host", ReadonlyRootfs: true, CapDrop: []string{"ALL"},
			CapAdd: []string{"NET_BIND_SERVICE"}, SecurityOpt: []string{"no-new-privileges:true"}},
		nil, nil, name)
	if err != nil {
		return nil, fmt.Errorf("port probe: create container from %s: %w", img, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		eng.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}()
	waitC, errC := eng.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		if notFoundExec(err.Error()) {
			return nil, fmt.Errorf("%w: %s: %v", errNoProbe, cmd[0], err)
		}
		return nil, fmt.Errorf("port probe: start: %w", err)
	}
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
		if w.Error != nil {
			return nil, fmt.Errorf("port probe: wait: %s", w.Error.Message)
		}
	case err := <-errC:
		return nil, fmt.Errorf("port probe: wait: %w", err)
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("port probe: did not finish in 60s")
	}
	logs, err := eng.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, fmt.Errorf("port probe: read output: %w", err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		return nil, fmt.Errorf("port probe: read output: %w", err)
	}
	held, err := parseProbeOutput(stdout.String(), ports)
	if code == 127 || code == 126 || (code != 0 && strings.Contains(stderr.String(), "unknown command")) {
		return nil, fmt.Errorf("%w: %s exited %d", errNoProbe, strings.Join(cmd, " "), code)
	}
	if err != nil || (code != 0 && len(held) == 0) {
		return nil, fmt.Errorf("port probe exited %d: %s %s", code, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return held, nil
}

// errNoProbe means the image lacks the probe command.
var errNoProbe = errors.New("the image has no port-probe command")

func notFoundExec(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "not found in $path")
}

// probeByBinding asks the engine to publish each port on all interfaces for
// a container from img whose entrypoint does not exist: the engine binds the
// port (and fails with "address already in use" when a process holds it)
// before it tries to run the process, which then fails harmlessly. The
// container never runs; it is removed.
func probeByBinding(ctx context.Context, eng PreflightEngine, img string, ports []int) ([]int, error) {
	var held []int
	for _, p := range ports {
		port := nat.Port(strconv.Itoa(p) + "/tcp")
		var suffix [4]byte
		rand.Read(suffix[:])
		created, err := eng.ContainerCreate(ctx,
			&container.Config{Image: img, Entrypoint: []string{"/.invdeploy-port-probe-does-not-exist"}, ExposedPorts: nat.PortSet{port: {}},
				Labels: map[string]string{deployer.LabelManagedBy: "invdeploy", "io.invdeploy.role": "port-probe"}},
			&container.HostConfig{PortBindings: nat.PortMap{port: {{HostIP: "0.0.0.0", HostPort: strconv.Itoa(p)}}},
				ReadonlyRootfs: true, CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges:true"}, NetworkMode: "bridge"},
			nil, nil, "invdeploy-port-probe-"+hex.EncodeToString(suffix[:]))
		if err != nil {
			return nil, fmt.Errorf("port probe: create container from %s: %w", img, err)
		}
		err = eng.ContainerStart(ctx, created.ID, container.StartOptions{})
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		eng.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		cancel()
		if err != nil {
			msg := strings.ToLower(err.Error())
			if strings.Contains(msg, "address already in use") || strings.Contains(msg, "port is already allocated") {
				held = append(held, p)
			}
		}
	}
	return held, nil
}

// parseProbeOutput reads the probe's report: one line per port, "PORT held"
// or "PORT free" (a bare number means held). Ports not asked for are an error.
func parseProbeOutput(out string, asked []int) ([]int, error) {
	ask := map[int]bool{}
	for _, p := range asked {
		ask[p] = true
	}
	var held []int
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(strings.ReplaceAll(line, ":", " "))
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.Atoi(fields[0])
		if err != nil {
			continue
		}
		if !ask[n] {
			return nil, fmt.Errorf("probe reported port %d, which was not asked for", n)
		}
		if len(fields) == 1 || strings.EqualFold(fields[1], "held") || strings.EqualFold(fields[1], "taken") || strings.EqualFold(fields[1], "in-use") {
			held = append(held, n)
		}
	}
	return uniqInts(held), nil
}

func isLoopback(hostIP string) bool {
	ip := net.ParseIP(hostIP)
	return ip != nil && ip.IsLoopback()
}

func displayHost(hostIP string) string {
	if hostIP == "" {
		return "0.0.0.0"
	}
	return hostIP
}

func isPostgres(s types.ServiceConfig) bool {
	img := s.Image
	if i := strings.LastIndexByte(img, '/'); i >= 0 {
		img = img[i+1:]
	}
	return img == "postgres" || strings.HasPrefix(img, "postgres:") || strings.HasPrefix(img, "postgres@")
}

// CheckCIDR validates a --allow-from / --admin-cidr value ("" is allowed).
func CheckCIDR(s, flag string) error {
	if s == "" {
		return nil
	}
	if _, _, err := net.ParseCIDR(s); err != nil {
		return fmt.Errorf("%s %q is not a CIDR like 203.0.113.0/24", flag, s)
	}
	return nil
}

func uniqInts(in []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, n := range in {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}
