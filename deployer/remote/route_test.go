package remote

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

func loadCompose(t *testing.T, compose string) *deployer.Stack {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"compose.yaml": compose, "Dockerfile": "FROM scratch\n", ".git/HEAD": "0123456789abcdef0123456789abcdef01234567\n"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := deployer.Load(context.Background(), deployer.LoadOptions{WorkingDir: dir, ProjectName: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestNewRegistryRoute: --via registry pushes the app image to the
// registry's repository as <revision> and latest, the host pulls from
// --pull-registry when given, and what cannot go that way is refused as an
// invalid request before any connection.
func TestNewRegistryRoute(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	st := loadCompose(t, "services:\n  app:\n    build: .\n    image: app\n  db:\n    image: postgres:15\n")
	creds := registry.Credentials{Registry: "127.0.0.1:5000", Username: "ci", Password: "push-secret", Source: "test"}
	r, err := NewRegistryRoute(st, RegistryOptions{Registry: "127.0.0.1:5000", PullRegistry: "10.0.0.1:5000/team", Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	if r.Repository != "127.0.0.1:5000/app" || r.PullRepository != "10.0.0.1:5000/team/app" || !slices.Equal(r.Tags, []string{"0123456789ab", "latest"}) {
		t.Errorf("route %+v", r)
	}
	if r.Credentials != creds || r.PullCredentials != nil || !strings.HasSuffix(r.RecordDir, filepath.Join("invdeploy", "shop")) {
		t.Errorf("route logins/record %+v", r)
	}

	two := loadCompose(t, "services:\n  a:\n    build: .\n  b:\n    build: .\n")
	for name, tc := range map[string]struct {
		st   *deployer.Stack
		o    RegistryOptions
		want string
	}{
		"two images":        {two, RegistryOptions{Registry: "127.0.0.1:5000", Service: "a"}, "--via registry moves one built image, and this stack builds 2: shop-a (a), shop-b (b); use --via ssh"},
		"no build":          {st, RegistryOptions{Registry: "127.0.0.1:5000", Service: "db"}, "--service db has no build section"},
		"no registry":       {st, RegistryOptions{}, "no registry given and no Docker Hub login"},
		"bad pull registry": {st, RegistryOptions{Registry: "127.0.0.1:5000", PullRegistry: "10.0.0.1:5000/Team:x", Credentials: creds}, "--pull-registry:"},
	} {
		_, err := NewRegistryRoute(tc.st, tc.o)
		if !deployer.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid request saying %q", name, err, tc.want)
		}
	}
}
