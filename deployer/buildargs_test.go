package deployer

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestStripUserinfo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://proxy.golang.example", "https://proxy.golang.example"},
		{"https://alice:s3cret@goproxy.corp.example/mod,direct", "https://goproxy.corp.example/mod,direct"},
		{"https://tok@a.example|https://u:p@b.example,off", "https://a.example|https://b.example,off"},
		{"http://u:p%40ss@proxy:3128", "http://proxy:3128"},
		{"direct", "direct"},
		{"user@example.com", "user@example.com"}, // no URL, no credentials
		{"https://example.com/path@v1", "https://example.com/path@v1"},
	} {
		got, stripped := stripUserinfo(tc.in)
		if got != tc.want || stripped != (tc.in != tc.want) {
			t.Errorf("stripUserinfo(%q) = %q, %v; want %q", tc.in, got, stripped, tc.want)
		}
	}
}

func FuzzStripUserinfo(f *testing.F) {
	for _, s := range []string{"https://u:p@h/x,direct", "http://@h", "a://b@c@d", "https://h/p@v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		out, _ := stripUserinfo(v)
		if urlUserinfo.MatchString(out) {
			t.Fatalf("stripUserinfo(%q) = %q still holds userinfo", v, out)
		}
		if again, stripped := stripUserinfo(out); stripped || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", v, out, again)
		}
	})
}

// TestBuildStripsCredentialsFromBuildArgs: a GOPROXY with credentials (from
// the environment) and a compose build arg with a credentialed URL reach the
// engine without them, and a warning names each arg but not the value.
func TestBuildStripsCredentialsFromBuildArgs(t *testing.T) {
	st := loadStack(t, `services:
  app:
    build:
      context: .
      args:
        MIRROR: https://bob:hunter2-token@mirror.example/debian
        PLAIN: https://mirror.example/debian
    image: app
`, map[string]string{"Dockerfile": "FROM scratch\nARG GOPROXY\nARG MIRROR\nARG PLAIN\n"})
	f := newFakeEngine()
	var out bytes.Buffer
	_, err := New(f, NewProgress(&out, false)).Build(context.Background(), st, BuildOptions{Getenv: func(k string) string {
		return map[string]string{"GOPROXY": "https://alice:s3cret@goproxy.corp.example,direct"}[k]
	}})
	if err != nil {
		t.Fatal(err)
	}
	args := f.builds[0].BuildArgs
	for k, want := range map[string]string{"GOPROXY": "https://goproxy.corp.example,direct", "MIRROR": "https://mirror.example/debian", "PLAIN": "https://mirror.example/debian"} {
		if args[k] == nil || *args[k] != want {
			t.Errorf("build arg %s = %v, want %s", k, args[k], want)
		}
	}
	for _, w := range []string{"build arg GOPROXY held credentials", "build arg MIRROR held credentials"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("no warning %q in:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "PLAIN") || strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "hunter2") {
		t.Errorf("warning names a clean arg or shows a credential:\n%s", out.String())
	}
	if v := st.Project.Services["app"].Build.Args["MIRROR"]; v == nil || !strings.Contains(*v, "hunter2") {
		t.Errorf("the stack's own model was changed: %v", v)
	}
}
