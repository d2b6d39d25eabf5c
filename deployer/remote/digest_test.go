package remote

import "testing"

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
