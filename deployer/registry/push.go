package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/go-units"

	"github.com/invdeploy/invdeploy/deployer/internal/enginestream"
)

// Engine is the part of the Engine API that pushing uses; *client.Client
// implements it.
type Engine interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImagePush(ctx context.Context, ref string, opts image.PushOptions) (io.ReadCloser, error)
	RegistryLogin(ctx context.Context, auth registry.AuthConfig) (registry.AuthenticateOKBody, error)
}

// Reporter shows progress; *deployer.Progress implements it.
type Reporter interface {
	Event(format string, args ...any)
	Live(line string)
	Done()
}

// ErrUnauthorized means the registry refused the login.
var ErrUnauthorized = errors.New("registry refused the login")

// AuthError is a refused login, naming the registry and where the login
// came from (never the password).
type AuthError struct {
	Registry string
	Creds    Credentials
	Detail   string // the registry's message, e.g. "unauthorized: authentication required"
}

func (e *AuthError) Error() string {
	who := "anonymous access"
	hint := "log in: --username U --password-stdin, docker login " + e.Registry + ", or " + EnvUser + "/" + EnvPassword
	if !e.Creds.Anonymous() {
		who = fmt.Sprintf("the login of user %q (from %s)", e.Creds.Username, e.Creds.Source)
		hint = "check the user name and password for " + e.Registry
	}
	return fmt.Sprintf("registry %s refused %s: %s; %s", e.Registry, who, e.Detail, hint)
}

func (e *AuthError) Unwrap() error { return ErrUnauthorized }

// PushOptions say what to push where.
type PushOptions struct {
	// Source is the local image, e.g. invoicing-api:latest.
	Source string
	// Repository is the target without a tag, e.g. 127.0.0.1:5000/invoicing-api
	// or docker.io/alice/invoicing-api.
	Repository string
	// Tags are pushed in order, e.g. the git revision then latest.
	Tags []string
	// Credentials log in to the repository's registry.
	Credentials Credentials
	// Progress receives per-layer progress; nil: none.
	Progress Reporter
}

// Result is what was pushed.
type Result struct {
	Repository string   `json:"repository"`
	Registry   string   `json:"registry"`
	Tags       []string `json:"tags"`
	// Digest is the manifest digest, sha256:...
	Digest string `json:"digest"`
	// ImageID is the local image ID that was pushed.
	ImageID string `json:"image_id"`
}

// Reference is repo@sha256:..., the pinned form.
func (r Result) Reference() string { return r.Repository + "@" + r.Digest }

// Push tags Source as Repository:tag for each tag and pushes them, checking
// the login first so a wrong password fails before any upload.
func Push(ctx context.Context, eng Engine, o PushOptions) (Result, error) {
	res := Result{Repository: o.Repository, Registry: RegistryOf(o.Repository)}
	if len(o.Tags) == 0 {
		return res, errors.New("push: no tag given")
	}
	rep := o.Progress
	if rep == nil {
		rep = nopReporter{}
	}
	img, err := eng.ImageInspect(ctx, o.Source)
	if err != nil {
		return res, fmt.Errorf("push: inspect local image %s: %w", o.Source, err)
	}
	res.ImageID = img.ID
	auth, err := o.Credentials.EncodedAuth()
	if err != nil {
		return res, fmt.Errorf("push: encode credentials: %w", err)
	}
	if !o.Credentials.Anonymous() {
		if _, err := eng.RegistryLogin(ctx, o.Credentials.authConfig()); err != nil {
			return res, classify(err, res.Registry, o.Credentials)
		}
		rep.Event("Logged in to %s as %s", res.Registry, o.Credentials.Username)
	}
	for _, tag := range o.Tags {
		target := o.Repository + ":" + tag
		if err := eng.ImageTag(ctx, o.Source, target); err != nil {
			return res, fmt.Errorf("push: tag %s as %s: %w", o.Source, target, err)
		}
		res.Tags = append(res.Tags, tag)
	}
	for _, tag := range o.Tags {
		target := o.Repository + ":" + tag
		rep.Event("Pushing %s", target)
		body, err := eng.ImagePush(ctx, target, image.PushOptions{RegistryAuth: auth})
		if err != nil {
			return res, classify(fmt.Errorf("push %s: %w", target, err), res.Registry, o.Credentials)
		}
		digest, err := readPushStream(body, rep)
		body.Close()
		rep.Done()
		if err != nil {
			return res, classify(fmt.Errorf("push %s: %w", target, err), res.Registry, o.Credentials)
		}
		if digest == "" {
			return res, fmt.Errorf("push %s: the engine reported no digest", target)
		}
		if res.Digest != "" && res.Digest != digest {
			return res, fmt.Errorf("push %s: digest %s differs from %s pushed for %s", target, digest, res.Digest, o.Tags[0])
		}
		res.Digest = digest
	}
	return res, nil
}

// classify turns a registry's refusal into an *AuthError.
func classify(err error, reg string, c Credentials) error {
	msg := err.Error()
	low := strings.ToLower(msg)
	for _, m := range []string{"unauthorized", "authentication required", "denied", "no basic auth credentials", "401", "incorrect username or password"} {
		if strings.Contains(low, m) {
			detail := msg
			if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(strings.ToLower(msg[i:]), m) {
				detail = msg[i+2:]
			}
			return &AuthError{Registry: reg, Creds: c, Detail: detail}
		}
	}
	return err
}

// readPushStream reports per-layer progress and returns the pushed digest.
func readPushStream(r io.Reader, rep Reporter) (string, error) {
	digest := ""
	err := enginestream.Decode(r, func(m *enginestream.Message) error {
		switch {
		case m.Aux != nil:
			var aux struct {
				Digest string `json:"Digest"`
			}
			if json.Unmarshal(*m.Aux, &aux) == nil && aux.Digest != "" {
				digest = aux.Digest
			}
		case m.ID != "" && m.Progress != nil && m.Progress.Total > 0:
			rep.Live(fmt.Sprintf("  layer %s: %s %s/%s", m.ID, m.Status, units.BytesSize(float64(m.Progress.Current)), units.BytesSize(float64(m.Progress.Total))))
		case m.ID != "" && (m.Status == "Pushed" || m.Status == "Layer already exists" || strings.HasPrefix(m.Status, "Mounted from")):
			rep.Event("  layer %s: %s", m.ID, m.Status)
		}
		return nil
	})
	return digest, err
}

// RegistryOf returns the registry host of a repository reference, as the
// engine decides it (distribution/reference): its first component when that
// looks like a host (has a dot or port, is localhost, or has upper case),
// else Docker Hub.
func RegistryOf(repo string) string {
	if named, err := reference.ParseNormalizedNamed(repo); err == nil {
		return NormalizeHost(reference.Domain(named))
	}
	// Not a valid reference (the engine will refuse it): the same rule on
	// the text.
	first, _, found := strings.Cut(repo, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first) {
		return NormalizeHost(first)
	}
	return DockerHub
}

type nopReporter struct{}

func (nopReporter) Event(string, ...any) {}
func (nopReporter) Live(string)          {}
func (nopReporter) Done()                {}
