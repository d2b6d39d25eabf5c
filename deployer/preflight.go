package deployer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/versions"
)

// MinAPIVersion is the oldest Engine API invdeploy supports (Docker 20.10).
const MinAPIVersion = "1.41"

// CheckOptions control preflight.
type CheckOptions struct {
	// Remote means the engine is on another host: weak literal passwords
	// refuse instead of warn, and host ports are not probed by listening here.
	Remote bool
	// ConfigDir holds generated secrets; "" means ConfigDir(project).
	ConfigDir string
	// Build says images with a build section will be (re)built even when
	// present, so their Dockerfile's base images must be available.
	Build bool
	// SkipImages leaves out the image rule: a remote deploy checks
	// everything else before it builds or sends a single image.
	SkipImages bool
	// Target is what the stack is checked for: which compose fields are
	// honoured (the field table); "" is TargetLocal.
	Target Target
}

// Report is the outcome of preflight.
type Report struct {
	// Warnings do not stop a deploy (unsupported fields, weak literal
	// passwords on a local engine).
	Warnings []string
	// Problems refuse a deploy.
	Problems []Problem
}

// Err is a *PreflightError when there are problems, else nil.
func (r *Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return &PreflightError{Problems: r.Problems}
}

// Check runs preflight: it changes nothing and pulls nothing (whether a
// missing image can be pulled is asked of the registry through the engine's
// distribution endpoint). The returned error is a *PreflightError
// (errors.Is ErrPreflight) when something refuses.
func (d *Deployer) Check(ctx context.Context, st *Stack, o CheckOptions) (*Report, error) {
	r := &Report{Warnings: append([]string{}, st.Warnings...)}
	add := func(rule, subject, format string, args ...any) {
		r.Problems = append(r.Problems, Problem{Rule: rule, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	p := st.Project

	target := o.Target
	if target == "" {
		target = TargetLocal
	}
	fields, err := FieldProblems(p, target)
	if err != nil {
		return r, err
	}
	r.Problems = append(r.Problems, fields...)
	r.Warnings = append(r.Warnings, d.checkSecrets(p, o, add)...)
	d.checkFiles(st, add)
	for _, name := range p.ServiceNames() {
		if _, err := rolloutOf(p.Services[name], true); err != nil {
			add("compose", "services."+name+"."+ExtService, "%v", err)
		}
	}
	r.Warnings = append(r.Warnings, checkLiteralPasswords(p, o.Remote, add)...)

	// A ping answers whether the engine is there and, in its API-Version
	// header, which API it speaks: one cheap round trip (the client's own
	// version negotiation pings too; over SSH the remote run cache answers
	// it). GET /version would tell the same but costs an engine 20.10 ~9 ms,
	// most of a no-op up's engine time, as it asks containerd and runc
	// theirs; it is asked only to name the Docker version of an engine too
	// old, or one whose ping does not say its API.
	engineOK := true
	if pong, err := d.engine.Ping(ctx); err != nil || pong.APIVersion == "" || versions.LessThan(pong.APIVersion, MinAPIVersion) {
		// Not answered by the ping (a proxy in front of the engine may
		// refuse /_ping and serve the rest), or too old: the version says.
		if v, verr := d.engine.ServerVersion(ctx); verr != nil {
			engineOK = false
			if err != nil {
				add("engine", d.engine.DaemonHost(), "the Docker engine does not answer (%v); start it, or point -H/DOCKER_HOST at one", err)
			} else {
				add("engine", d.engine.DaemonHost(), "cannot read the engine version: %v", verr)
			}
		} else if versions.LessThan(v.APIVersion, MinAPIVersion) {
			engineOK = false
			add("engine", d.engine.DaemonHost(), "engine API %s (Docker %s) is too old; invdeploy needs API %s (Docker 20.10) or newer", v.APIVersion, v.Version, MinAPIVersion)
		}
	}
	if engineOK {
		if err := d.checkPorts(ctx, p, o, add); err != nil {
			return r, err
		}
		if err := d.checkNetworks(ctx, p, add); err != nil {
			return r, err
		}
		if !o.SkipImages {
			if err := d.checkImages(ctx, p, o, add); err != nil {
				return r, err
			}
		}
	}
	// One finding reached twice (a container publishing a port on 0.0.0.0
	// and on ::) is one line.
	r.Problems = unique(r.Problems)
	r.Warnings = unique(r.Warnings)
	return r, r.Err()
}

// unique keeps the first of equal elements, in order.
func unique[T comparable](xs []T) []T {
	seen := map[T]bool{}
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// weakPasswords are well-known defaults and examples; a secret with one of
// these values (case-insensitive) or shorter than 8 characters is refused.
var weakPasswords = map[string]bool{
	"password": true, "passw0rd": true, "password1": true, "postgres": true, "secret": true,
	"changeme": true, "change-me": true, "admin": true, "root": true, "123456": true,
	"12345678": true, "example": true, "test": true, "letmein": true, "qwerty": true,
	"default": true, "pass": true, "mysecretpassword": true, "invoicing": true, "toor": true,
}

func isWeak(v string) bool {
	v = strings.TrimSpace(v)
	return weakPasswords[strings.ToLower(v)] || len(v) < 8
}

// checkSecrets refuses missing, empty, weak or unreadable secrets, secret
// files that are not regular files, too large (MaxSecretSize) or under
// /proc, /sys or /dev, and unreadable configs; it returns warnings for
// secret and env_file paths in system directories and for secret files
// others can read (see modeRule).
func (d *Deployer) checkSecrets(p *types.Project, o CheckOptions, add func(rule, subject, format string, args ...any)) []string {
	checkConfigs(p, add)
	srcs, err := secretSources(p, o.ConfigDir)
	if err != nil {
		add("secret", "secrets", "%v", err)
		return nil
	}
	var warns []string
	for _, name := range usedSecrets(p) {
		src, ok := srcs[name]
		if !ok {
			add("secret", name, "used by a service but not defined under top-level secrets")
			continue
		}
		file, what := src.File, "file"
		if file == "" && src.Generate && p.Environment[src.Env] == "" {
			if _, err := os.Lstat(src.Stored); errors.Is(err, fs.ErrNotExist) {
				continue // generated on the first up
			}
			file, what = src.Stored, "stored file"
		}
		if file != "" {
			_, fi, err := statSourceFile(file, MaxSecretSize)
			if err != nil {
				add("secret", name, "%v", err)
				continue
			}
			if refuse, msg := modeRule(what, file, fi.Mode(), o.Remote); refuse {
				add("secret", name, "%s", msg)
				continue
			} else if msg != "" {
				warns = append(warns, "secret "+name+": "+msg)
			}
		}
		v, err := readSecret(p, src, false)
		if err != nil {
			if src.Env != "" && !src.Generate {
				add("secret", name, "environment variable %s is not set; export it or put it in a .env file that is not tracked by git", src.Env)
			} else {
				add("secret", name, "%v", err)
			}
			continue
		}
		if len(strings.TrimSpace(string(v))) == 0 {
			add("secret", name, "is empty; set a strong value")
			continue
		}
		if isWeak(string(v)) {
			add("secret", name, "is a known weak default or shorter than 8 characters; set a strong value")
		}
	}
	return append(warns, systemDirWarnings(p, srcs)...)
}

// chmodSafe says why the fix of a readable secret file breaks nothing: docker
// compose bind-mounts the file, so samples ship it at 0644 for a container
// user that is not the file's owner; invdeploy delivers a copy.
const chmodSafe = "that is safe under invdeploy, which delivers a copy owned by the service's user, so the container never reads your file"

// modeRule is the rule for a secret file others can read. On a local
// engine it is the user's business, as with docker compose (compose
// samples ship secret files at 0644): a warning. For a remote host (the
// secret then guards a shared or production host, and the deploying
// machine is often shared too: a CI runner, a jump host) the same file
// refuses. What does leak - a secret
// file tracked by git or inside a build context - refuses everywhere (see
// checkFiles). msg is "" when nobody else can read the file.
func modeRule(what, file string, m fs.FileMode, remote bool) (refuse bool, msg string) {
	if m.Perm()&0o044 == 0 {
		return false, ""
	}
	if remote {
		return true, fmt.Sprintf("%s %s is %s (mode %04o), refused for a remote host; run chmod 600 %s: %s", what, file, readableBy(m), m.Perm(), file, chmodSafe)
	}
	return false, fmt.Sprintf("%s %s is %s (mode %04o): other users of this machine can read it; chmod 600 %s keeps it yours (%s)", what, file, readableBy(m), m.Perm(), file, chmodSafe)
}

// readableBy says who besides the owner can read a file of mode m.
func readableBy(m fs.FileMode) string {
	if m.Perm()&0o004 != 0 {
		return "world-readable"
	}
	return "group-readable"
}

// checkFiles refuses a .env or secret file that is tracked by git or would
// enter a build context, and secret-looking files a build context would send.
func (d *Deployer) checkFiles(st *Stack, add func(rule, subject, format string, args ...any)) {
	p := st.Project
	sensitive := sensitiveFiles(p)
	for _, f := range sortedKeys(sensitive) {
		if gitTracked(f) || (realPath(f) != f && gitTracked(realPath(f))) {
			add("file", f, "%s is tracked by git; run git rm --cached %s, add it to .gitignore and rotate the values it held", sensitive[f], f)
		}
	}
	for _, name := range p.ServiceNames() {
		for _, pr := range contextProblems(p, p.Services[name], sensitive) {
			add(pr.Rule, pr.Subject, "%s", pr.Message)
		}
	}
}

// sensitiveFiles are the stack's files that hold credentials (the project's
// .env, every env_file and file secret): absolute path -> what it is.
func sensitiveFiles(p *types.Project) map[string]string {
	sensitive := map[string]string{} // path -> what it is
	if env := filepath.Join(p.WorkingDir, ".env"); fileExists(env) {
		sensitive[env] = ".env"
	}
	// env_file: files hold environment, as a .env does (often credentials).
	for _, name := range p.ServiceNames() {
		for _, ef := range p.Services[name].EnvFiles {
			f := ef.Path
			if f != "" && !filepath.IsAbs(f) {
				f = filepath.Join(p.WorkingDir, f)
			}
			if f == "" || !fileExists(f) {
				continue
			}
			if _, seen := sensitive[f]; !seen {
				sensitive[f] = "env_file " + filepath.Base(f)
			}
		}
	}
	for _, sec := range p.Secrets {
		if sec.File != "" {
			f := sec.File
			if !filepath.IsAbs(f) {
				f = filepath.Join(p.WorkingDir, f)
			}
			sensitive[f] = "secret file"
		}
	}
	return sensitive
}

// secretLooking is true for file names that usually hold credentials.
func secretLooking(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case ".env", ".netrc", ".npmrc", ".pypirc", ".pgpass", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "credentials.json":
		return true
	case ".env.example", ".env.sample", ".env.template", ".env.dist":
		return false
	}
	if strings.HasPrefix(n, ".env.") {
		return true
	}
	for _, ext := range []string{".pem", ".key", ".p12", ".pfx", ".kdbx", ".jks"} {
		if strings.HasSuffix(n, ext) {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// passwordKey matches environment keys that hold a credential.
func passwordKey(k string) bool {
	k = strings.ToUpper(k)
	if strings.HasSuffix(k, "_FILE") {
		return false
	}
	for _, w := range []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// checkLiteralPasswords warns (local) or refuses (remote) a weak literal
// password in a service's environment; the value is never repeated.
func checkLiteralPasswords(p *types.Project, remote bool, add func(rule, subject, format string, args ...any)) []string {
	var warns []string
	for _, name := range p.ServiceNames() {
		env := p.Services[name].Environment
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := env[k]
			if v == nil || !passwordKey(k) || !isWeak(*v) {
				continue
			}
			subject := fmt.Sprintf("services.%s.environment.%s", name, k)
			if remote {
				add("secret", subject, "is a weak literal password, refused on a remote engine; use a secret (secrets: with file: or environment:)")
			} else {
				warns = append(warns, subject+" is a weak literal password (allowed on a local engine only); prefer a secret")
			}
		}
	}
	return warns
}

type hostPort struct {
	ip    string
	port  int
	proto string
	svc   string
}

func (d *Deployer) checkPorts(ctx context.Context, p *types.Project, o CheckOptions, add func(rule, subject, format string, args ...any)) error {
	var want []hostPort
	seen := map[string]string{}
	for _, name := range p.ServiceNames() {
		for _, port := range p.Services[name].Ports {
			if port.Published == "" {
				continue
			}
			n, err := strconv.Atoi(port.Published)
			if err != nil {
				add("port", port.Published, "services.%s.ports: published port is not a number", name)
				continue
			}
			proto := port.Protocol
			if proto == "" {
				proto = "tcp"
			}
			key := fmt.Sprintf("%d/%s", n, proto)
			if other, dup := seen[key]; dup {
				add("port", key, "published by both services.%s and services.%s", other, name)
				continue
			}
			seen[key] = name
			want = append(want, hostPort{ip: port.HostIP, port: n, proto: proto, svc: name})
		}
	}
	if len(want) == 0 {
		return nil
	}
	running, err := d.engine.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return fmt.Errorf("preflight: list containers: %w", err)
	}
	for _, hp := range want {
		subject := net.JoinHostPort(displayIP(hp.ip), strconv.Itoa(hp.port))
		ours, held := false, false
		for _, c := range running {
			for _, cp := range c.Ports {
				if int(cp.PublicPort) != hp.port || cp.Type != hp.proto || !ipOverlap(cp.IP, hp.ip) {
					continue
				}
				if c.Labels[LabelProject] == p.Name && c.Labels[LabelService] == hp.svc {
					ours = true
					continue
				}
				held = true
				add("port", subject, "is held by container %s (services.%s wants it); stop that container or set another port", containerName(c), hp.svc)
			}
			if held {
				break
			}
		}
		if held || ours || o.Remote || hp.proto != "tcp" {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(listenIP(hp.ip), strconv.Itoa(hp.port)))
		if err != nil {
			holder := portHolder(hp.port)
			if holder != "" {
				holder = " by " + holder
			}
			add("port", subject, "is held%s (services.%s wants it); stop it or set another port", holder, hp.svc)
			continue
		}
		ln.Close()
	}
	return nil
}

func displayIP(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

func listenIP(ip string) string {
	if ip == "" || ip == "::" {
		return "0.0.0.0"
	}
	return ip
}

func ipOverlap(a, b string) bool {
	any := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return any(a) || any(b) || a == b
}

// portHolder names the process listening on a local TCP port ("name (pid
// N)"), from /proc; "" when it cannot tell.
func portHolder(port int) string {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if n, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(n) == port {
				inodes[fields[9]] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := os.ReadDir("/proc")
	for _, pe := range procs {
		pid := pe.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", pid, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
				return fmt.Sprintf("%s (pid %s)", strings.TrimSpace(string(comm)), pid)
			}
		}
	}
	return ""
}

// checkImages refuses an image that is neither present nor buildable nor
// pullable. It pulls nothing: for a missing image it asks the registry,
// through the engine's distribution endpoint, whether the image exists;
// pull_policy never refuses a missing one. (Up pulls missing images once
// preflight passed, pulls present images again under pull_policy always or
// refresh, and rebuilds under build.)
func (d *Deployer) checkImages(ctx context.Context, p *types.Project, o CheckOptions, add func(rule, subject, format string, args ...any)) error {
	checked := map[string]bool{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		ref := ImageRef(p.Name, s)
		id, err := d.imageID(ctx, ref)
		if err != nil {
			return fmt.Errorf("preflight: %w", err)
		}
		if s.Build != nil {
			// On a remote engine images are built here and sent: never there.
			if !NeedsBuild(s, id != "", o.Build, o.Remote) {
				continue
			}
			dir := buildContextDir(p, s)
			info, err := readDockerfile(dir, dockerfileName(s))
			if err != nil {
				add("image", ref, "services.%s is not built yet and its Dockerfile cannot be read: %v", name, err)
				continue
			}
			for _, base := range info.BaseImages {
				if checked[base] {
					continue
				}
				checked[base] = true
				if err := d.presentOrPullable(ctx, base); err != nil {
					add("image", base, "base image of services.%s (%s) is not present and cannot be pulled: %v; build or load it (make images)", name, dockerfileName(s), err)
				}
			}
			continue
		}
		if checked[ref] {
			continue
		}
		if id != "" {
			continue // pull_policy always/refresh pulls it again in Up, once preflight passed
		}
		checked[ref] = true
		if s.PullPolicy == types.PullPolicyNever {
			add("image", ref, "services.%s: image is not present and pull_policy is never", name)
			continue
		}
		if err := d.pullable(ctx, ref); err != nil {
			add("image", ref, "services.%s: image is not present and cannot be pulled: %v; build or load it, or fix the image name", name, err)
		}
	}
	return nil
}

func (d *Deployer) presentOrPullable(ctx context.Context, ref string) error {
	id, err := d.imageID(ctx, ref)
	if err != nil || id != "" {
		return err
	}
	return d.pullable(ctx, ref)
}

// pullable asks the registry, through the engine (GET
// /distribution/{name}/json), whether ref exists there, without pulling it.
func (d *Deployer) pullable(ctx context.Context, ref string) error {
	if _, err := d.engine.DistributionInspect(ctx, ref, ""); err != nil {
		return fmt.Errorf("the registry does not have it or cannot be reached (%w)", err)
	}
	return nil
}
