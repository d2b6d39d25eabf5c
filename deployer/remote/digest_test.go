package remote

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer/registry"
)

func TestRepoDigest(t *testing.T) {
	const sum = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		digests []string
		ref     string
		want    string
	}{
		{[]string{"postgres@" + sum}, "postgres:15", "postgres@" + sum},
		{[]string{"docker.io/library/postgres@" + sum}, "postgres:15", "postgres@" + sum},
		{[]string{"registry.example.com:5000/team/app@" + sum}, "registry.example.com:5000/team/app:1", "registry.example.com:5000/team/app@" + sum},
		{[]string{"other@" + sum}, "postgres:15", ""}, // digest of another repository
		{nil, "postgres:15", ""}, // built or loaded locally: no digest
		{[]string{"postgres@" + sum}, "mirror.example/postgres:15", ""}, // same path, other registry
		{[]string{"not a reference"}, "postgres:15", ""},
	} {
		if got := repoDigest(c.digests, c.ref); got != c.want {
			t.Errorf("repoDigest(%v, %s) = %q, want %q", c.digests, c.ref, got, c.want)
		}
	}
}

// TestPullLoginIsNeverThePushLoginWhenGiven: with pull credentials the
// remote engine gets those, not the push login; without, the push login.
func TestPullLoginIsNeverThePushLoginWhenGiven(t *testing.T) {
	push := registry.Credentials{Registry: "reg.example", Username: "ci", Password: "push-secret", Source: "--username/--password-stdin"}
	pull := registry.Credentials{Registry: "reg.example", Username: "host", Password: "read-only", Source: "--pull-username/--pull-password-stdin"}
	r := &RegistryRoute{Credentials: push, PullCredentials: &pull}
	if got := r.pullLogin(); got.Password != "read-only" || got.Username != "host" {
		t.Fatalf("pull login %v, want the pull credentials", got)
	}
	auth, err := r.pullLogin().EncodedAuth()
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := base64.URLEncoding.DecodeString(auth); strings.Contains(string(raw), "push-secret") {
		t.Fatal("the pull request's X-Registry-Auth carries the push password")
	}
	if got := (&RegistryRoute{Credentials: push}).pullLogin(); got.Password != "push-secret" {
		t.Fatalf("without pull credentials: %v, want the push login", got)
	}
	anon := registry.Credentials{Registry: "reg.example"}
	if got := (&RegistryRoute{Credentials: push, PullCredentials: &anon}).pullLogin(); !got.Anonymous() {
		t.Fatalf("anonymous pull credentials: %v", got)
	}
}
