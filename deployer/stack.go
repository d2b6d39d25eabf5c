package deployer

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/invdeploy/invdeploy/stacks"
)

// Stack is a loaded compose project and what loading it found.
type Stack struct {
	// Project is the compose model, interpolated and normalized by compose-go.
	Project *types.Project
	// Bundled is true for the embedded default stack (stacks/invoicing).
	Bundled bool
	// Source names where the stack came from: the compose file paths, or the
	// bundled stack's name.
	Source string
	// Warnings name compose fields invdeploy does not implement, and hold
	// compose-go's own warnings; they are reported, never dropped silently.
	Warnings []string
	// LoaderWarnings are compose-go's own warnings (e.g. the obsolete
	// version attribute), also in Warnings: commands that only need the
	// project name print these.
	LoaderWarnings []string
	// Reason says why this project was chosen ("bundled stack; no compose
	// file here", "-f x.yaml", ...): a mutating command says which project
	// it changes and why.
	Reason string
	// FromFile is true when the stack came from a compose file (-f, or one
	// found in the working directory), false for the bundled stack.
	FromFile bool
}

// Describe names the project and why it was chosen, e.g. "project
// invoicing (bundled stack; no compose file here)".
func (s *Stack) Describe() string {
	return fmt.Sprintf("project %s (%s)", s.Project.Name, s.Reason)
}

// LoadOptions say where a stack comes from.
type LoadOptions struct {
	// Files are the compose files (-f). Empty: a compose file in WorkingDir
	// (compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml),
	// and when there is none, the bundled invoicing stack.
	Files []string
	// ProjectName overrides the project name (-p).
	ProjectName string
	// WorkingDir is where relative paths resolve and .env is read. Empty: the
	// directory of the first file, or the current directory for the bundled
	// stack (the build context of its api service).
	WorkingDir string
	// Env holds KEY=VALUE pairs that override the process environment for
	// interpolation, e.g. INVOICING_API_BIND=0.0.0.0 on a remote host.
	Env []string
	// Profiles are the compose profiles to enable (--profile). Empty: the
	// comma-separated COMPOSE_PROFILES of the environment or .env, as
	// docker compose does. Services with profiles: are inactive unless one
	// of their profiles is enabled.
	Profiles []string
	// Services named on the command line are enabled even when their
	// profiles are not (as docker compose does for `up SERVICE`).
	Services []string
}

// Load reads and validates a stack with compose-go, the way docker compose
// does (OS environment, .env, project name precedence).
func Load(ctx context.Context, o LoadOptions) (*Stack, error) {
	if o.ProjectName != "" {
		if err := CheckProjectName(o.ProjectName); err != nil {
			return nil, err
		}
	}
	st, err := load(ctx, o)
	if err != nil || len(o.Services) == 0 {
		return st, err
	}
	// A service named on the command line enables its profiles: load again
	// with them, so that compose-go checks its depends_on like any other.
	extra := enablingProfiles(st.Project, o.Services)
	if len(extra) == 0 {
		return st, nil
	}
	o.Profiles = append(append([]string{}, st.Project.Profiles...), extra...)
	return load(ctx, o)
}

// enablingProfiles are the profiles of the named services that are disabled.
func enablingProfiles(p *types.Project, names []string) []string {
	var out []string
	for _, n := range names {
		if s, off := p.DisabledServices[n]; off {
			out = append(out, s.Profiles...)
		}
	}
	return out
}

func load(ctx context.Context, o LoadOptions) (*Stack, error) {
	files := o.Files
	wd := o.WorkingDir
	reason := "-f " + strings.Join(files, " -f ")
	if len(files) == 0 {
		dir := wd
		if dir == "" {
			var err error
			if dir, err = os.Getwd(); err != nil {
				return nil, fmt.Errorf("load stack: %w", err)
			}
		}
		for _, name := range cli.DefaultFileNames {
			if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && !fi.IsDir() {
				files = []string{filepath.Join(dir, name)}
				reason = name + " in " + dir
				break
			}
		}
		if len(files) == 0 {
			return loadBundled(ctx, dir, o)
		}
	}
	if o.ProjectName != "" {
		reason += "; name from -p"
	}
	if err := checkComposeSize(files); err != nil {
		return nil, err
	}
	popts := []cli.ProjectOptionsFn{}
	if wd != "" {
		popts = append(popts, cli.WithWorkingDirectory(wd))
	}
	popts = append(popts, cli.WithOsEnv, cli.WithEnv(o.Env), cli.WithEnvFiles(), cli.WithDotEnv, cli.WithDefaultProfiles(o.Profiles...))
	if o.ProjectName != "" {
		popts = append(popts, cli.WithName(o.ProjectName))
	}
	subject := strings.Join(files, ", ")
	var loaderWarns []string
	po, err := captureLoaderWarnings(&loaderWarns, func() (*cli.ProjectOptions, error) { return cli.NewProjectOptions(files, popts...) })
	if err != nil {
		return nil, composeRefusal(subject, err)
	}
	if env := po.Environment["COMPOSE_PROJECT_NAME"]; o.ProjectName == "" && env != "" {
		if err := CheckProjectName(env); err != nil {
			return nil, fmt.Errorf("COMPOSE_PROJECT_NAME: %w", err)
		}
	}
	// A file set this machine validated before, unchanged and in the same
	// environment, skips compose-go's schema (schemacache.go); any doubt
	// (a failure, a warning, a file edited meanwhile) loads it again with
	// the schema.
	cache := openSchemaCache()
	var id string
	var read []types.ConfigFile
	if cache != nil && !slices.Contains(po.ConfigPaths, "-") {
		// compose-go's own read: the same path resolution, the same bytes.
		if wdir, err := po.GetWorkingDir(); err == nil {
			if cd, err := po.ReadConfigFiles(ctx, wdir, po); err == nil {
				read = cd.ConfigFiles
				id = cache.id(read, wdir, po.Environment, o.Profiles, o.ProjectName)
			}
		}
	}
	used := false // po has loaded once: a second load needs fresh options
	p, err := cache.load(id, &loaderWarns, func(skip bool) (*types.Project, error) {
		if used {
			// Its options read .env again, which the id did not see: the
			// cache does not remember this load (load passes id "").
			var discard []string
			if po, err = captureLoaderWarnings(&discard, func() (*cli.ProjectOptions, error) { return cli.NewProjectOptions(files, popts...) }); err != nil {
				return nil, err
			}
		}
		used = true
		if skip {
			_ = cli.WithLoadOptions(loader.WithSkipValidation)(po)
		}
		return captureLoaderWarnings(&loaderWarns, func() (*types.Project, error) {
			return safeLoad(func() (*types.Project, error) { return po.LoadProject(ctx) })
		})
	}, func() bool { return sameContent(read) })
	if err != nil {
		return nil, composeRefusal(subject, err)
	}
	st, err := newStack(p, false, subject)
	if err != nil {
		return nil, err
	}
	st.Reason, st.FromFile = reason, true
	st.addLoaderWarnings(loaderWarns)
	return st, nil
}

// MaxComposeSize bounds the compose files of one stack together (the files
// given with -f, or the one found; "-" when stdin is a file). The largest
// real-world compose files are tens of kilobytes; a file of megabytes is a
// mistake (a log, a dump) and compose-go would spend tens of seconds and
// hundreds of MB parsing it before refusing (15.6 MB: 37 s, 380 MB).
const MaxComposeSize = 4 << 20

// checkComposeSize refuses compose files over MaxComposeSize together, by
// their size on disk, before any is read or parsed. A file that cannot be
// stated is left to the loader, which names the problem.
func checkComposeSize(files []string) error {
	var total int64
	for _, f := range files {
		var fi os.FileInfo
		var err error
		if f == "-" {
			fi, err = os.Stdin.Stat()
		} else {
			fi, err = os.Stat(f) // relative to the current directory, as compose-go reads it
		}
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		total += fi.Size()
	}
	if total <= MaxComposeSize {
		return nil
	}
	return &PreflightError{Problems: []Problem{{Rule: "compose", Subject: strings.Join(files, ", "),
		Message: fmt.Sprintf("the compose files are %.1f MiB together, over invdeploy's limit of %d MiB; is -f naming the right file?", float64(total)/(1<<20), MaxComposeSize>>20)}}}
}

// composeRefusal is the preflight refusal of a compose file that cannot be
// loaded or uses what invdeploy does not support: nothing was created yet,
// so it exits 3 like every other refusal.
func composeRefusal(subject string, err error) error {
	return &PreflightError{Problems: []Problem{{Rule: "compose", Subject: subject,
		Message: err.Error() + "; fix the compose file"}}}
}

// profilesFrom is the profiles to enable: the given ones, else the
// comma-separated COMPOSE_PROFILES of env (as docker compose reads it).
func profilesFrom(given []string, env types.Mapping) []string {
	if len(given) > 0 {
		return given
	}
	var out []string
	for _, p := range strings.Split(env["COMPOSE_PROFILES"], ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func loadBundled(ctx context.Context, dir string, o LoadOptions) (*Stack, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load bundled stack: %w", err)
	}
	// The API image is tagged with what the checkout holds (gitTreeTag):
	// its commit, or <commit>-dirty-<hash> of uncommitted changes, so a new
	// commit or an edit is built and deployed by the next up, and an
	// unchanged tree is not rebuilt.
	env := o.Env
	if _, set := os.LookupEnv(EnvAPITag); !set && !hasKey(env, EnvAPITag) {
		if tag := gitTreeTag(abs); tag != "" {
			env = append([]string{EnvAPITag + "=" + tag}, env...)
		}
	}
	popts := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(abs), cli.WithOsEnv, cli.WithEnv(env), cli.WithEnvFiles(), cli.WithDotEnv}
	var loaderWarns []string
	po, err := captureLoaderWarnings(&loaderWarns, func() (*cli.ProjectOptions, error) { return cli.NewProjectOptions(nil, popts...) })
	if err != nil {
		return nil, fmt.Errorf("load bundled stack: %w", err)
	}
	name := o.ProjectName
	if name == "" {
		if name = po.Environment["COMPOSE_PROJECT_NAME"]; name != "" {
			if err := CheckProjectName(name); err != nil {
				return nil, fmt.Errorf("COMPOSE_PROJECT_NAME: %w", err)
			}
		}
	}
	profiles := profilesFrom(o.Profiles, po.Environment)
	cache := openSchemaCache()
	id := cache.id([]types.ConfigFile{{Filename: filepath.Join(abs, "compose.yaml"), Content: stacks.Invoicing}}, abs, po.Environment, profiles, name)
	p, err := cache.load(id, &loaderWarns, func(skip bool) (*types.Project, error) {
		opts := []func(*loader.Options){loader.WithProfiles(profiles)}
		if skip {
			opts = append(opts, loader.WithSkipValidation)
		}
		return captureLoaderWarnings(&loaderWarns, func() (*types.Project, error) {
			return loadContent(ctx, stacks.Invoicing, abs, po.Environment, name, opts...)
		})
	}, func() bool { return true })
	if err != nil {
		return nil, composeRefusal(stacks.InvoicingPath+" (bundled)", err)
	}
	// As docker compose does: the volumes and secrets of services whose
	// profile is not enabled (Prometheus' TSDB, Grafana's admin password)
	// are neither created nor generated by a plain up.
	p = p.WithoutUnnecessaryResources()
	st, err := newStack(p, true, stacks.InvoicingPath+" (bundled)")
	if err != nil {
		return nil, err
	}
	st.addLoaderWarnings(loaderWarns)
	st.Reason = "bundled stack; no compose file here"
	if o.ProjectName != "" {
		st.Reason = "bundled stack, name from -p; no compose file here"
	}
	return st, nil
}

// loadContent loads a compose file held in memory.
func loadContent(ctx context.Context, content []byte, dir string, env types.Mapping, name string, opts ...func(*loader.Options)) (*types.Project, error) {
	return safeLoad(func() (*types.Project, error) {
		return loader.LoadWithContext(ctx, types.ConfigDetails{
			WorkingDir:  dir,
			ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml"), Content: content}},
			Environment: env,
		}, append([]func(*loader.Options){func(lo *loader.Options) {
			if name != "" {
				lo.SetProjectName(name, true)
			}
		}}, opts...)...)
	})
}

// safeLoad turns a panic of compose-go on malformed input (found by
// FuzzLoadAndConvert) into an error.
func safeLoad(load func() (*types.Project, error)) (p *types.Project, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("malformed compose file (the compose loader failed: %v)", r)
		}
	}()
	return load()
}

// EnvAPITag selects the tag of the bundled stack's invoicing-api image; by
// default the git commit of the working directory, <commit>-dirty-<hash>
// with uncommitted changes (latest outside git).
const EnvAPITag = "INVOICING_API_TAG"

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

func newStack(p *types.Project, bundled bool, source string) (*Stack, error) {
	s := &Stack{Project: p, Bundled: bundled, Source: source}
	recordFileOrder(p)
	warns, err := unsupported(p)
	if err != nil {
		return nil, composeRefusal(source, err)
	}
	s.Warnings = unique(warns)
	return s, nil
}

// unsupported refuses values invdeploy cannot run on any target (external
// or swarm-only secrets, network_mode service:, port ranges, ...) and warns
// about values it reads differently (pull_policy daily). Which fields each
// target honours is the field table (fields.go), checked by preflight.
func unsupported(p *types.Project) ([]string, error) {
	var warns []string
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		path := "services." + name
		switch s.PullPolicy {
		case "", types.PullPolicyAlways, types.PullPolicyNever, types.PullPolicyMissing,
			types.PullPolicyIfNotPresent, types.PullPolicyBuild, types.PullPolicyRefresh:
		default: // daily, weekly, every_<duration>
			warns = append(warns, fmt.Sprintf("%s.pull_policy %q is not supported by invdeploy and is treated as missing", path, s.PullPolicy))
		}
		if nm := s.NetworkMode; strings.HasPrefix(nm, "service:") || strings.HasPrefix(nm, "container:") {
			return nil, fmt.Errorf("%s.network_mode %q is not supported by invdeploy", path, nm)
		}
		for i, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeVolume, types.VolumeTypeBind, types.VolumeTypeTmpfs:
			default:
				return nil, fmt.Errorf("%s.volumes[%d].type %q is not supported by invdeploy", path, i, v.Type)
			}
		}
		for i, port := range s.Ports {
			if port.Mode == "ingress" && port.Published == "" {
				continue
			}
			if strings.Contains(port.Published, "-") {
				return nil, fmt.Errorf("%s.ports[%d].published %q: port ranges are not supported by invdeploy", path, i, port.Published)
			}
		}
	}
	for name, sec := range p.Secrets {
		if sec.External {
			return nil, fmt.Errorf("secrets.%s.external: external (swarm) secrets are not supported by invdeploy; use file: or environment:", name)
		}
	}
	if err := checkDelivery(p); err != nil {
		return nil, err
	}
	sort.Strings(warns)
	return warns, nil
}

// Name is the project name.
func (s *Stack) Name() string { return s.Project.Name }

// AllServices are the names of every service of the stack, enabled by its
// profiles or not, sorted: what belongs to the project (down removes them,
// the rest are orphans).
func (s *Stack) AllServices() []string { return stackServices(s.Project) }

// ServiceURL is where a service publishes a TCP port.
type ServiceURL struct {
	Service string
	// URL is http://HOST:PORT/.
	URL string
}

// URLs are the published TCP ports of the enabled services, by service
// name, as http:// URLs; a port published on every interface is shown at
// anyHost (127.0.0.1 locally, the host's name remotely).
func (s *Stack) URLs(anyHost string) []ServiceURL {
	names := s.Project.ServiceNames()
	sort.Strings(names)
	var out []ServiceURL
	for _, name := range names {
		for _, pc := range s.Project.Services[name].Ports {
			if pc.Published == "" || (pc.Protocol != "" && pc.Protocol != "tcp") {
				continue
			}
			host := pc.HostIP
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = anyHost
			}
			out = append(out, ServiceURL{Service: name, URL: "http://" + net.JoinHostPort(host, pc.Published) + "/"})
		}
	}
	return out
}

// Orphans are the containers in sts whose services the stack does not
// define (in any profile).
func (s *Stack) Orphans(sts []ContainerStatus) []string {
	known := map[string]bool{}
	for _, name := range stackServices(s.Project) {
		known[name] = true
	}
	var names []string
	for _, c := range sts {
		if !known[c.Service] {
			names = append(names, c.Name)
		}
	}
	return names
}
