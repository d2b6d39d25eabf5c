package kube

import (
	"context"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

// LocalImages builds on the local engine and pushes to a registry (the
// same build and push as `invdeploy build` and `invdeploy push`).
type LocalImages struct {
	D           *deployer.Deployer
	Stack       *deployer.Stack
	Registry    string
	Credentials registry.Credentials
	// Tag is pushed besides latest ("" the git revision).
	Tag string
}

// Predict implements Images.
func (l *LocalImages) Predict(ctx context.Context, s types.ServiceConfig) (string, string, bool, error) {
	app, err := l.Stack.AppImage(s.Name)
	if err != nil {
		return "", "", false, err
	}
	repo, err := registry.Repository(l.Registry, l.Credentials.Username, app.Name)
	if err != nil {
		return "", "", false, &deployer.InvalidError{Err: err}
	}
	present, digests := l.D.ImageDigests(ctx, s.Image)
	for _, d := range digests {
		if strings.HasPrefix(d, repo+"@") {
			return repo, d, present, nil
		}
	}
	return repo, "", present, nil
}

// Build implements Images.
func (l *LocalImages) Build(ctx context.Context, service string) error {
	_, err := l.D.Build(ctx, l.Stack, deployer.BuildOptions{Services: []string{service}})
	return err
}

// Push implements Images.
func (l *LocalImages) Push(ctx context.Context, service string) (string, error) {
	res, err := l.D.Push(ctx, l.Stack, deployer.PushOptions{Service: service, Registry: l.Registry, Credentials: l.Credentials, Tag: l.Tag})
	if err != nil {
		return "", err
	}
	return res.Reference(), nil
}

// User implements Images.
func (l *LocalImages) User(ctx context.Context, image, spec string) (int, int, error) {
	return l.D.ImageUser(ctx, image, spec)
}

// Exposed implements Images.
func (l *LocalImages) Exposed(ctx context.Context, image string) []string {
	return l.D.ImageExposed(ctx, image)
}
