package e2e

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// registryTags lists a repository's tags with basic auth.
func registryTags(t *testing.T, reg *testRegistry, repo string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+reg.Addr+"/v2/"+repo+"/tags/list", nil)
	req.SetBasicAuth(reg.User, reg.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Tags []string }
	json.NewDecoder(resp.Body).Decode(&v)
	return v.Tags
}

// registryDigest is the manifest digest the registry serves for repo:tag.
func registryDigest(t *testing.T, reg *testRegistry, repo, tag string) string {
	t.Helper()
	req, _ := http.NewRequest("HEAD", "http://"+reg.Addr+"/v2/"+repo+"/manifests/"+tag, nil)
	req.SetBasicAuth(reg.User, reg.Password)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Docker-Content-Digest")
}

// noFileContains fails when any file under dirs holds secret.
func noFileContains(t *testing.T, secret string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
					t.Errorf("%s holds the registry password", p)
				}
			}
			return nil
		})
	}
}

// TestPushToAuthenticatedRegistry pushes the app image to a registry with
// htpasswd auth: a wrong password fails clearly, the right one pushes both
// tags and prints the digest, and the password never shows or lands on disk.
func TestPushToAuthenticatedRegistry(t *testing.T) {
	reg := startRegistry(t)
	cfg, dockerCfg := t.TempDir(), t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg, "DOCKER_CONFIG=" + dockerCfg}
	wrong := "Wrong-" + reg.Password

	r := invdeploy(t, env, wrong+"\n", "push", "--registry", reg.Addr, "--username", reg.User, "--password-stdin")
	mustCode(t, r, 1, "push with a wrong password")
	if !strings.Contains(r.Stderr, "registry "+reg.Addr) || !strings.Contains(r.Stderr, `"`+reg.User+`"`) {
		t.Errorf("the error should name the registry and user:\n%s", tail(r.Stderr, 5))
	}
	if strings.Contains(r.Stdout+r.Stderr, wrong) {
		t.Error("the wrong password appears in the output")
	}
	if tags := registryTags(t, reg, "invoicing-api"); len(tags) != 0 {
		t.Errorf("a refused login pushed tags %v", tags)
	}

	r = invdeploy(t, env, reg.Password+"\n", "push", "--registry", reg.Addr, "--username", reg.User, "--password-stdin")
	mustCode(t, r, 0, "push")
	if strings.Contains(r.Stdout+r.Stderr, reg.Password) {
		t.Fatal("the password appears in the output")
	}
	m := regexp.MustCompile(regexp.QuoteMeta(reg.Addr) + `/invoicing-api@(sha256:[0-9a-f]{64})`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("no digest printed:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "layer") {
		t.Errorf("no per-layer progress:\n%s", tail(r.Stderr, 10))
	}
	// The version tag is the git revision (12 hex digits) of the checkout.
	shaTag := regexp.MustCompile(`Pushed ` + regexp.QuoteMeta(reg.Addr) + `/invoicing-api:([0-9a-f]{12})\n`).FindStringSubmatch(r.Stdout)
	if shaTag == nil {
		t.Fatalf("no revision tag pushed:\n%s", r.Stdout)
	}
	tags := strings.Join(registryTags(t, reg, "invoicing-api"), ",")
	if !strings.Contains(tags, "latest") || !strings.Contains(tags, shaTag[1]) {
		t.Errorf("registry tags %q, want latest and %s", tags, shaTag[1])
	}
	if d := registryDigest(t, reg, "invoicing-api", "latest"); d != m[1] {
		t.Errorf("registry serves %s for latest, push printed %s", d, m[1])
	}
	rec, err := os.ReadFile(filepath.Join(cfg, "invdeploy", "invoicing", "pushed.json"))
	if err != nil || !strings.Contains(string(rec), m[1]) {
		t.Errorf("pushed.json does not record %s: %v %s", m[1], err, rec)
	}

	// Credentials from the environment, and a --tag.
	envCreds := append(env, "INVDEPLOY_REGISTRY_USER="+reg.User, "INVDEPLOY_REGISTRY_PASSWORD="+reg.Password)
	r = invdeploy(t, envCreds, "", "push", "--registry", reg.Addr, "--tag", "e2e")
	mustCode(t, r, 0, "push with env credentials")
	if !strings.Contains(strings.Join(registryTags(t, reg, "invoicing-api"), ","), "e2e") {
		t.Error("tag e2e not in the registry")
	}
	if strings.Contains(r.Stdout+r.Stderr, reg.Password) {
		t.Error("the password appears in the output")
	}
	noFileContains(t, reg.Password, cfg, dockerCfg)
}
