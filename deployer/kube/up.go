package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

// Images is what up needs of the local engine and the registry: the
// images are built here and pushed to the registry the user names.
type Images interface {
	// Predict says where a built service's image goes (repo), the
	// reference pods would run if the local image is already in that
	// registry (repo@digest, else ""), and whether the image is here.
	Predict(ctx context.Context, s types.ServiceConfig) (repo, ref string, present bool, err error)
	// Build builds a service's image on the local engine.
	Build(ctx context.Context, service string) error
	// Push pushes it and returns repo@digest.
	Push(ctx context.Context, service string) (string, error)
	// User resolves a compose user spec to numeric ids through the
	// image's /etc/passwd (the image must be on the local engine).
	User(ctx context.Context, image, spec string) (uid, gid int, err error)
	// Exposed lists the ports the image exposes ("5432/tcp").
	Exposed(ctx context.Context, image string) []string
}

// UpOptions control Up and Plan.
type UpOptions struct {
	// Images builds and pushes (nil: a stack with a build section is
	// refused).
	Images Images
	// Registry is where built images go (--registry); Credentials log
	// in there, and the pods pull with them (a pull Secret) unless
	// anonymous.
	Registry    string
	Credentials registry.Credentials
	// Build rebuilds images with a build section even when present.
	Build bool
	// Scale overrides deploy.replicas (--scale).
	Scale map[string]int
	// WaitTimeout bounds the wait for each service (0: 3 min).
	WaitTimeout time.Duration
	// Getenv reads the environment of secrets (nil: os.Getenv).
	Getenv func(string) string
	// Command is recorded with the release ("up").
	Command string
	// Progress reports (nil: none).
	Progress *deployer.Progress
}

// UpResult is what Up did.
type UpResult struct {
	Plan *Plan `json:"plan"`
	// Ops are the operations performed, each with its Result.
	Ops     []deployer.Op `json:"operations"`
	Release *Release      `json:"release,omitempty"`
	// RolledBackTo is the release restored after a failed rollout (0: none).
	RolledBackTo int           `json:"rolled_back_to,omitempty"`
	Elapsed      time.Duration `json:"elapsed_ns"`
}

// upper is one up (or plan) of a stack on a cluster.
type upper struct {
	c  *Cluster
	st *deployer.Stack
	o  UpOptions
	// Read at check time: values, ids, ports.
	images     Images
	secrets    map[string][]byte
	configs    map[string][]byte
	users      map[string][2]int
	exposed    map[string][]string
	pullSecret *Manifest
	info       *PreflightInfo
	out        *deployer.Progress
}

func newUpper(c *Cluster, st *deployer.Stack, o UpOptions) *upper {
	out := o.Progress
	if out == nil {
		out = deployer.Discard()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 3 * time.Minute
	}
	return &upper{c: c, st: st, o: o, images: o.Images, out: out, users: map[string][2]int{}, exposed: map[string][]string{}}
}

// Check is preflight on a cluster (exit 3 when it refuses, nothing
// changed): the cluster answers, every field is honoured on Kubernetes,
// the names are valid and no other project's objects have them, the
// identity may do what up does (SelfSubjectAccessReview), built images
// have a registry, secrets and configs are readable, users resolve to ids.
func Check(ctx context.Context, c *Cluster, st *deployer.Stack, o UpOptions) (*PreflightInfo, error) {
	u := newUpper(c, st, o)
	err := u.check(ctx)
	return u.info, err
}

// DryRun runs preflight and computes what Up would do (up --dry-run);
// validate also sends every object to the API server as a server-side dry
// run, so what the cluster would refuse is said now.
func DryRun(ctx context.Context, c *Cluster, st *deployer.Stack, o UpOptions, validate bool) (*Plan, error) {
	u := newUpper(c, st, o)
	if err := u.check(ctx); err != nil {
		return &Plan{Project: st.Project.Name, Namespace: c.Namespace, Report: u.info}, err
	}
	pl, err := u.plan(ctx)
	pl.Report = u.info
	pl.Warnings = u.info.Warnings
	if err != nil || !validate {
		return pl, err
	}
	if pl.nsMiss {
		pl.Warnings = append(pl.Warnings, "the namespace does not exist yet: the objects were not validated by the API server")
		return pl, nil
	}
	for _, it := range pl.manifests.Items {
		if _, err := c.apply(ctx, it, true); err != nil {
			return pl, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "kubernetes", Subject: key(it.Kind, it.Name),
				Message: "the API server refuses it (server-side dry run): " + oneLine(err)}}}
		}
	}
	return pl, nil
}

func (u *upper) check(ctx context.Context) error {
	c, p := u.c, u.st.Project
	u.info = &PreflightInfo{}
	v, err := c.ServerVersion(ctx)
	if err != nil {
		return err
	}
	u.info.ServerVersion = v
	var problems []deployer.Problem
	refuse := func(rule, subject, format string, args ...any) {
		problems = append(problems, deployer.Problem{Rule: rule, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	fp, warns := fieldProblems(p)
	problems = append(problems, fp...)
	u.info.Warnings = append(u.info.Warnings, warns...)
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if err := validName(ResourceName(name)); err != nil {
			refuse("field", "services."+name, "the name is not a valid Kubernetes name once lower-cased (%v): rename the service", err)
		}
		if s.Build != nil && (u.images == nil || u.o.Registry == "") {
			refuse("image", "services."+name, "it has a build section: pods run images from a registry, so pass --registry HOST[:PORT][/NAMESPACE] (the image is built here and pushed there)")
		}
	}
	if err := u.readValues(ctx); err != nil {
		if pe, ok := err.(*deployer.PreflightError); ok {
			problems = append(problems, pe.Problems...)
		} else {
			return err
		}
	}
	problems = append(problems, u.resolveImages(ctx)...)
	problems = append(problems, u.access(ctx)...)
	problems = append(problems, u.foreignObjects(ctx)...)
	if len(problems) > 0 {
		return &deployer.PreflightError{Problems: problems}
	}
	if u.o.Registry != "" && !u.o.Credentials.Anonymous() {
		ps, err := pullSecret(p.Name, c.Namespace, u.o.Registry, u.o.Credentials)
		if err != nil {
			return err
		}
		u.pullSecret = ps
	}
	return nil
}

// resolveImages reads what the images say: numeric ids for named users,
// exposed ports.
func (u *upper) resolveImages(ctx context.Context) []deployer.Problem {
	var problems []deployer.Problem
	p := u.st.Project
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if u.images != nil {
			u.exposed[name] = u.images.Exposed(ctx, s.Image)
		}
		if s.User == "" {
			continue
		}
		userPart, groupPart, hasGroup := strings.Cut(s.User, ":")
		uid, err1 := strconv.Atoi(userPart)
		gid, err2 := strconv.Atoi(groupPart)
		if err1 == nil && hasGroup && err2 == nil {
			u.users[name] = [2]int{uid, gid}
			continue
		}
		if u.images == nil {
			problems = append(problems, deployer.Problem{Rule: "field", Subject: "services." + name + ".user",
				Message: fmt.Sprintf("%q: Kubernetes runs a pod as numeric ids; write user: UID:GID", s.User)})
			continue
		}
		uid, gid, err := u.images.User(ctx, s.Image, s.User)
		if err != nil {
			problems = append(problems, deployer.Problem{Rule: "field", Subject: "services." + name + ".user",
				Message: fmt.Sprintf("%q: Kubernetes runs a pod as numeric ids and the name could not be resolved through the image (%v): have the image on this engine (docker pull %s) or write user: UID:GID", s.User, err, s.Image)})
			continue
		}
		u.users[name] = [2]int{uid, gid}
	}
	return problems
}

// readValues reads the secrets and configs the services use. A secret
// marked x-invdeploy-generate keeps the value its Secret has in the
// namespace (the deployment's state lives on its target), else the
// environment's, else a new random one.
func (u *upper) readValues(ctx context.Context) error {
	p := u.st.Project
	u.secrets, u.configs = map[string][]byte{}, map[string][]byte{}
	var problems []deployer.Problem
	used := map[string]bool{}
	usedCfg := map[string]bool{}
	for _, s := range p.Services {
		for _, r := range s.Secrets {
			used[r.Source] = true
		}
		for _, r := range s.Configs {
			usedCfg[r.Source] = true
		}
	}
	for _, name := range sortedKeys(used) {
		def, ok := p.Secrets[name]
		if !ok {
			problems = append(problems, deployer.Problem{Rule: "secret", Subject: name, Message: "a service uses it and the top-level secrets do not define it"})
			continue
		}
		v, err := u.secretValue(ctx, name, def)
		if err != nil {
			problems = append(problems, deployer.Problem{Rule: "secret", Subject: name, Message: err.Error()})
			continue
		}
		u.secrets[name] = v
	}
	for _, name := range sortedKeys(usedCfg) {
		def, ok := p.Configs[name]
		switch {
		case !ok:
			problems = append(problems, deployer.Problem{Rule: "config", Subject: name, Message: "a service uses it and the top-level configs do not define it"})
		case def.Content != "":
			u.configs[name] = []byte(def.Content)
		case def.File != "":
			b, err := os.ReadFile(def.File)
			if err != nil {
				problems = append(problems, deployer.Problem{Rule: "config", Subject: name, Message: fmt.Sprintf("read %s: %v", def.File, err)})
				continue
			}
			u.configs[name] = b
		case def.Environment != "":
			u.configs[name] = []byte(u.getenv(def.Environment))
		default:
			problems = append(problems, deployer.Problem{Rule: "config", Subject: name, Message: "external configs are refused on kubernetes: give file or content"})
		}
	}
	if len(problems) > 0 {
		return &deployer.PreflightError{Problems: problems}
	}
	return nil
}

func (u *upper) getenv(k string) string {
	if v, ok := u.st.Project.Environment[k]; ok && v != "" {
		return v
	}
	return u.o.Getenv(k)
}

// maxSecret bounds a secret (a Kubernetes object holds at most 1 MiB).
const maxSecret = 512 << 10

func (u *upper) secretValue(ctx context.Context, name string, def types.SecretConfig) ([]byte, error) {
	switch {
	case def.File != "":
		fi, err := os.Stat(def.File)
		if err != nil {
			return nil, fmt.Errorf("its file: %v", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("its file %s is not a regular file", filepath.Base(def.File))
		}
		if fi.Size() == 0 || fi.Size() > maxSecret {
			return nil, fmt.Errorf("its file %s is empty or larger than 512 KiB", filepath.Base(def.File))
		}
		return os.ReadFile(def.File)
	case def.Content != "":
		return []byte(def.Content), nil
	case def.Environment != "":
		if v := u.getenv(def.Environment); v != "" {
			return []byte(v), nil
		}
		if !generated(def) {
			return nil, fmt.Errorf("its environment variable %s is not set: export it, or mark the secret x-invdeploy-generate: true", def.Environment)
		}
	case bool(def.External):
		return nil, fmt.Errorf("external secrets are refused on kubernetes: give file, environment or x-invdeploy-generate")
	case !generated(def):
		return nil, fmt.Errorf("it has no file, environment or content")
	}
	// Generated: the namespace keeps it.
	sec, err := u.c.Client.CoreV1().Secrets(u.c.Namespace).Get(ctx, SecretName(u.st.Project.Name, name), metav1.GetOptions{})
	if err == nil && len(sec.Data["value"]) > 0 {
		return sec.Data["value"], nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read its Secret: %s", oneLine(err))
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(b)), nil
}

// pullSecret is the registry login pods pull built images with.
func pullSecret(project, ns, reg string, cr registry.Credentials) (*Manifest, error) {
	host := registry.NormalizeHost(registryHostOf(reg))
	if host == registry.DockerHub {
		host = "https://index.docker.io/v1/"
	}
	auth := map[string]any{"auths": map[string]any{host: map[string]string{"username": cr.Username, "password": cr.Password}}}
	b, err := json.Marshal(auth)
	if err != nil {
		return nil, err
	}
	l := labels(project, "")
	l[LabelKind] = "registry"
	sec := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: ResourceName(project + "-registry"), Namespace: ns, Labels: l},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: b},
	}
	return &Manifest{Kind: "Secret", Name: sec.Name, Object: sec}, nil
}

func registryHostOf(reg string) string {
	host, _, _ := strings.Cut(reg, "/")
	return host
}
