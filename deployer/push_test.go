package deployer

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer/registry"
)

func TestRepositoryOf(t *testing.T) {
	for ref, want := range map[string]string{
		"invoicing-api:latest":                  "invoicing-api",
		"invoicing-api":                         "invoicing-api",
		"127.0.0.1:5000/team/app:v1":            "127.0.0.1:5000/team/app",
		"127.0.0.1:5000/app":                    "127.0.0.1:5000/app",
		"docker.io/library/postgres:15":         "docker.io/library/postgres",
		"app@sha256:" + strings.Repeat("a", 64): "app",
		"Bad/Name:tag":                          "Bad/Name",
	} {
		if got := repositoryOf(ref); got != want {
			t.Errorf("repositoryOf(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestPushTags(t *testing.T) {
	for _, tc := range []struct {
		tag, rev string
		want     []string
	}{
		{"", "0123456789ab", []string{"0123456789ab", "latest"}},
		{"v1.2.0", "0123456789ab", []string{"v1.2.0", "latest"}},
		{"", "", []string{"latest"}},
		{"latest", "0123456789ab", []string{"latest"}},
	} {
		if got := PushTags(tc.tag, tc.rev); !slices.Equal(got, tc.want) {
			t.Errorf("PushTags(%q, %q) = %v, want %v", tc.tag, tc.rev, got, tc.want)
		}
	}
}

// TestAppImageRefusesAmbiguity: the image to push is the one service with
// a build section, or the one named; anything else is an invalid request
// (exit 2), never a guess.
func TestAppImageRefusesAmbiguity(t *testing.T) {
	two := loadStack(t, "services:\n  a:\n    build: .\n  b:\n    build: .\n    image: reg.example:5000/team/b:v1\n  db:\n    image: postgres:15\n", map[string]string{"Dockerfile": "FROM scratch\n"})
	for service, want := range map[string]string{
		"":   "the stack has 2 services with a build section (a, b): choose one with --service",
		"db": "--service db has no build section",
		"x":  "--service x:",
	} {
		_, err := two.AppImage(service)
		if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("AppImage(%q) = %v, want an invalid request saying %q", service, err, want)
		}
	}
	app, err := two.AppImage("b")
	if err != nil {
		t.Fatal(err)
	}
	if app.Service != "b" || app.Ref != "reg.example:5000/team/b:v1" || app.Name != "b" {
		t.Errorf("AppImage(b) = %+v", app)
	}
	if app, err := two.AppImage("a"); err != nil || app.Ref != "t-a" || app.Name != "t-a" {
		t.Errorf("AppImage(a) = %+v, %v; want the compose default image t-a", app, err)
	}
}

// TestPushBuildsTagsAndRecords: push builds the app image when the
// revision's image is missing, pushes <repo>:<revision> and :latest (one
// digest), records it, and does not build again when the image is there.
func TestPushBuildsTagsAndRecords(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	st := loadStack(t, "services:\n  app:\n    build: .\n    image: app\n", map[string]string{
		"Dockerfile": "FROM scratch\n",
		".git/HEAD":  commit + "\n", // a detached checkout: gitRevision reads it without git
	})
	f := newFakeEngine()
	d := New(f, nil)
	creds := registry.Credentials{Registry: "127.0.0.1:5000", Username: "ci", Password: "s3cret", Source: "test"}
	recordDir := t.TempDir()
	res, err := d.Push(context.Background(), st, PushOptions{Registry: "127.0.0.1:5000", Credentials: creds, RecordDir: recordDir})
	if err != nil {
		t.Fatal(err)
	}
	if res.RecordErr != nil {
		t.Errorf("not recorded: %v", res.RecordErr)
	}
	if res.Repository != "127.0.0.1:5000/app" || !slices.Equal(res.Tags, []string{commit[:12], "latest"}) || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Errorf("pushed %+v", res.Result)
	}
	if n := f.countCalls("build "); n != 1 {
		t.Errorf("%d builds, want 1 (the image was missing)", n)
	}
	wantPushes := []string{"push 127.0.0.1:5000/app:" + commit[:12], "push 127.0.0.1:5000/app:latest"}
	var pushes []string
	for _, c := range f.mutations() {
		if strings.HasPrefix(c, "push ") {
			pushes = append(pushes, c)
		}
	}
	if !slices.Equal(pushes, wantPushes) {
		t.Errorf("pushes %v, want %v", pushes, wantPushes)
	}
	rec, ok, err := registry.LoadRecord(recordDir)
	if err != nil || !ok || rec.Digest != res.Digest || rec.ImageID != f.images["app:"+commit[:12]] {
		t.Errorf("record %+v, %v, %v; want digest %s", rec, ok, err, res.Digest)
	}

	// Present: pushed again without a build; --tag replaces the revision.
	res, err = d.Push(context.Background(), st, PushOptions{Registry: "127.0.0.1:5000", Tag: "v1.2.0", Credentials: creds, RecordDir: recordDir})
	if err != nil {
		t.Fatal(err)
	}
	if n := f.countCalls("build "); n != 1 {
		t.Errorf("%d builds after the second push, want still 1", n)
	}
	if !slices.Equal(res.Tags, []string{"v1.2.0", "latest"}) {
		t.Errorf("tags %v", res.Tags)
	}

	// A registry that gives no valid repository is an invalid request.
	if _, err := d.Push(context.Background(), st, PushOptions{Registry: "127.0.0.1:5000/Team:x", Credentials: creds, RecordDir: recordDir}); !IsInvalid(err) {
		t.Errorf("bad --registry: %v, want an invalid request", err)
	}
}

// TestStackURLs: the addresses up prints; a port published on every
// interface is shown at the host given, a bound one at its address, UDP
// not at all.
func TestStackURLs(t *testing.T) {
	st := loadStack(t, `services:
  web:
    image: web
    ports: ["8080:80", "127.0.0.2:8443:443", "5353:53/udp"]
  db:
    image: postgres:15
  api:
    image: api
    ports: ["0.0.0.0:9000:8000"]
`, nil)
	var got []string
	for _, u := range st.URLs("203.0.113.7") {
		got = append(got, u.Service+" "+u.URL)
	}
	want := []string{"api http://203.0.113.7:9000/", "web http://203.0.113.7:8080/", "web http://127.0.0.2:8443/"}
	if !slices.Equal(got, want) {
		t.Errorf("URLs = %q, want %q", got, want)
	}
	if o := st.Orphans([]ContainerStatus{{Name: "t-web-1", Service: "web"}, {Name: "t-old-1", Service: "old"}}); !slices.Equal(o, []string{"t-old-1"}) {
		t.Errorf("Orphans = %v, want [t-old-1]", o)
	}
}

// TestImageTags: a built image gets its own name, <repo>:<revision> and
// the --tag values, a bare TAG meaning <repo>:TAG; never an unasked :latest.
func TestImageTags(t *testing.T) {
	got := imageTags("127.0.0.1:5000/team/app:v1", "0123456789ab", []string{"v2", "other:x", "127.0.0.1:5000/team/app:v1", "reg.example:5000/a/b:c"})
	want := []string{
		"127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:0123456789ab",
		"127.0.0.1:5000/team/app:v2", "other:x", "reg.example:5000/a/b:c",
	}
	if !slices.Equal(got, want) {
		t.Errorf("imageTags = %q\nwant %q", got, want)
	}
	if got := imageTags("x:dev", "", nil); !slices.Equal(got, []string{"x:dev"}) {
		t.Errorf("imageTags(x:dev) = %q: an unasked tag", got)
	}
	if got := imageTags("app", "0123456789ab-dirty-abcdefabcdef", nil); !slices.Equal(got, []string{"app", "app:0123456789ab-dirty-abcdefabcdef"}) {
		t.Errorf("imageTags(app, dirty) = %q", got)
	}
}
