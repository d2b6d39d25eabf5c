package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
)

// fakeEngine embeds Engine and records what Push asked for.
type fakeEngine struct {
	Engine
	loginErr error
	streams  map[string]string // ref -> JSON stream
	tagged   []string
	pushed   []string
	auths    []string
}

func (f *fakeEngine) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: "sha256:local"}, nil
}
func (f *fakeEngine) ImageTag(_ context.Context, _, target string) error {
	f.tagged = append(f.tagged, target)
	return nil
}
func (f *fakeEngine) RegistryLogin(context.Context, registry.AuthConfig) (registry.AuthenticateOKBody, error) {
	return registry.AuthenticateOKBody{Status: "Login Succeeded"}, f.loginErr
}
func (f *fakeEngine) ImagePush(_ context.Context, ref string, o image.PushOptions) (io.ReadCloser, error) {
	f.pushed = append(f.pushed, ref)
	f.auths = append(f.auths, o.RegistryAuth)
	return io.NopCloser(strings.NewReader(f.streams[ref])), nil
}

type recorder struct{ lines []string }

func (r *recorder) Event(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}
func (r *recorder) Live(l string) { r.lines = append(r.lines, l) }
func (r *recorder) Done()         {}

const okStream = `{"status":"The push refers to repository [127.0.0.1:5000/invoicing-api]"}
{"status":"Preparing","progressDetail":{},"id":"aaa"}
{"status":"Pushing","progressDetail":{"current":512,"total":2048},"id":"aaa"}
{"status":"Pushed","progressDetail":{},"id":"aaa"}
{"status":"Layer already exists","progressDetail":{},"id":"bbb"}
{"status":"v1: digest: sha256:abc size: 528"}
{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:abc","Size":528}}
`

func TestPushTagsPushesAndReportsDigest(t *testing.T) {
	repo := "127.0.0.1:5000/invoicing-api"
	f := &fakeEngine{streams: map[string]string{repo + ":v1": okStream, repo + ":latest": strings.ReplaceAll(okStream, `"v1"`, `"latest"`)}}
	rep := &recorder{}
	creds := Credentials{Registry: "127.0.0.1:5000", Username: "ci", Password: secret, Source: "test"}
	res, err := Push(context.Background(), f, PushOptions{Source: "invoicing-api:latest", Repository: repo, Tags: []string{"v1", "latest"}, Credentials: creds, Progress: rep})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reference() != repo+"@sha256:abc" || res.ImageID != "sha256:local" || res.Registry != "127.0.0.1:5000" {
		t.Errorf("result %+v", res)
	}
	if strings.Join(f.tagged, ",") != repo+":v1,"+repo+":latest" || len(f.pushed) != 2 {
		t.Errorf("tagged %v pushed %v", f.tagged, f.pushed)
	}
	out := strings.Join(rep.lines, "\n")
	for _, want := range []string{"layer aaa: Pushing 512B/2KiB", "layer aaa: Pushed", "layer bbb: Layer already exists"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secret) {
		t.Error("progress shows the password")
	}
	dec, err := registry.DecodeAuthConfig(f.auths[0])
	if err != nil || dec.Password != secret || dec.ServerAddress != "127.0.0.1:5000" {
		t.Errorf("X-Registry-Auth does not carry the login: %v", err)
	}
}

func TestPushWrongLoginNamesRegistry(t *testing.T) {
	f := &fakeEngine{loginErr: errors.New("Error response from daemon: login attempt to http://127.0.0.1:5000/v2/ failed with status: 401 Unauthorized")}
	creds := Credentials{Registry: "127.0.0.1:5000", Username: "ci", Password: secret, Source: "--username/--password-stdin"}
	_, err := Push(context.Background(), f, PushOptions{Source: "x", Repository: "127.0.0.1:5000/invoicing-api", Tags: []string{"latest"}, Credentials: creds})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("want ErrUnauthorized, got %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "registry 127.0.0.1:5000") || !strings.Contains(msg, `"ci"`) || strings.Contains(msg, secret) {
		t.Errorf("message: %s", msg)
	}
	if len(f.pushed) != 0 {
		t.Error("pushed after a failed login")
	}
}

func TestPushStreamErrorIsAuthError(t *testing.T) {
	repo := "127.0.0.1:5000/invoicing-api"
	f := &fakeEngine{streams: map[string]string{repo + ":latest": `{"errorDetail":{"message":"unauthorized: authentication required"},"error":"unauthorized: authentication required"}`}}
	_, err := Push(context.Background(), f, PushOptions{Source: "x", Repository: repo, Tags: []string{"latest"}, Credentials: Credentials{Registry: "127.0.0.1:5000"}})
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "anonymous") || !strings.Contains(err.Error(), "authentication required") {
		t.Fatalf("got %v", err)
	}
}

func TestRepository(t *testing.T) {
	ok := []struct{ reg, user, want string }{
		{"", "Alice", "docker.io/alice/invoicing-api"},
		{"alice", "", "docker.io/alice/invoicing-api"},
		{"docker.io/alice", "", "docker.io/alice/invoicing-api"},
		{"127.0.0.1:5000", "", "127.0.0.1:5000/invoicing-api"},
		{"https://127.0.0.1:5000/team/", "", "127.0.0.1:5000/team/invoicing-api"},
		{"localhost:5000", "", "localhost:5000/invoicing-api"},
	}
	for _, c := range ok {
		got, err := Repository(c.reg, c.user, "invoicing-api")
		if err != nil || got != c.want {
			t.Errorf("Repository(%q, %q) = %q, %v; want %q", c.reg, c.user, got, err, c.want)
		}
	}
	for _, bad := range []string{"Bad Name", "127.0.0.1:5000/UPPER", "r.test/x:tag"} {
		if _, err := Repository(bad, "", "invoicing-api"); err == nil {
			t.Errorf("Repository(%q) accepted", bad)
		}
	}
	if _, err := Repository("", "", "invoicing-api"); err == nil || !strings.Contains(err.Error(), "--registry") {
		t.Errorf("no registry and no user: %v", err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := LoadRecord(dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	res := Result{Repository: "r.test/invoicing-api", Registry: "r.test", Tags: []string{"abc", "latest"}, Digest: "sha256:0123"}
	if err := SaveRecord(dir, res, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := LoadRecord(dir)
	if err != nil || !ok || rec.Reference != "r.test/invoicing-api@sha256:0123" || rec.Digest != "sha256:0123" {
		t.Fatalf("%+v %v %v", rec, ok, err)
	}
}

func FuzzReadPushStream(f *testing.F) {
	f.Add(okStream)
	f.Add(`{"errorDetail":{"message":"denied"}}`)
	f.Add(`{"aux":{"Digest":5}}`)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := readPushStream(strings.NewReader(s), nopReporter{})
		if err == nil && d != "" && !strings.Contains(s, d) {
			t.Fatalf("digest %q not from the input", d)
		}
	})
}

// TestRegistryOf: the registry an image goes to is decided as the engine
// decides it.
func TestRegistryOf(t *testing.T) {
	for repo, want := range map[string]string{
		"invoicing-api":                    DockerHub,
		"alice/invoicing-api":              DockerHub,
		"docker.io/alice/invoicing-api":    DockerHub,
		"index.docker.io/alice/x":          DockerHub,
		"127.0.0.1:5000/invoicing-api":     "127.0.0.1:5000",
		"localhost/x":                      "localhost",
		"registry.example.com/team/app":    "registry.example.com",
		"Registry.Example.com:5000/team/a": "registry.example.com:5000",
		"[::1]:5000/app":                   "[::1]:5000",
	} {
		if got := RegistryOf(repo); got != want {
			t.Errorf("RegistryOf(%q) = %q, want %q", repo, got, want)
		}
	}
}
