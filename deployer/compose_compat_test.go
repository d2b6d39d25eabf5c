package deployer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-connections/nat"
)

const profilesCompose = `services:
  web:
    image: debian:bookworm
  debug:
    image: debian:bookworm
    profiles: [debug]
  metrics:
    image: debian:bookworm
    profiles: [monitoring, all]
`

func loadIn(t *testing.T, dir string, o LoadOptions) *Stack {
	t.Helper()
	o.WorkingDir, o.ProjectName = dir, "t"
	st, err := Load(context.Background(), o)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

func TestLoadProfiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": profilesCompose})
	for _, tc := range []struct {
		name string
		o    LoadOptions
		want string
	}{
		{"no profile: only services without profiles", LoadOptions{}, "web"},
		{"--profile", LoadOptions{Profiles: []string{"debug"}}, "debug web"},
		{"repeated --profile", LoadOptions{Profiles: []string{"debug", "monitoring"}}, "debug metrics web"},
		{"COMPOSE_PROFILES", LoadOptions{Env: []string{"COMPOSE_PROFILES=all, debug"}}, "debug metrics web"},
		{"--profile wins over COMPOSE_PROFILES", LoadOptions{Profiles: []string{"monitoring"}, Env: []string{"COMPOSE_PROFILES=debug"}}, "metrics web"},
		{"a service named on the command line is enabled", LoadOptions{Services: []string{"metrics"}}, "metrics web"},
		{"profile *", LoadOptions{Profiles: []string{"*"}}, "debug metrics web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := loadIn(t, dir, tc.o)
			if got := strings.Join(st.Project.ServiceNames(), " "); got != tc.want {
				t.Fatalf("active services %q, want %q", got, tc.want)
			}
			all := strings.Join(stackServices(st.Project), " ")
			if all != "debug metrics web" {
				t.Fatalf("stack services %q: disabled ones must stay known", all)
			}
		})
	}
}

func TestLoadProfilesFromDotEnv(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": profilesCompose, ".env": "COMPOSE_PROFILES=debug\n"})
	if got := strings.Join(loadIn(t, dir, LoadOptions{}).Project.ServiceNames(), " "); got != "debug web" {
		t.Fatalf("active services %q, want debug web", got)
	}
}

func TestLoadDependsOnInactiveServiceRefuses(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": `services:
  web:
    image: debian:bookworm
    depends_on: [debug]
  debug:
    image: debian:bookworm
    profiles: [debug]
`})
	_, err := Load(context.Background(), LoadOptions{WorkingDir: dir})
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), `service "web" depends on undefined service "debug"`) {
		t.Fatalf("want the compose refusal, got %v", err)
	}
	if st := loadIn(t, dir, LoadOptions{Profiles: []string{"debug"}}); len(st.Project.Services) != 2 {
		t.Fatalf("with --profile debug: services %v", st.Project.ServiceNames())
	}
	// Naming the dependent service does not enable what it depends on.
	if _, err := Load(context.Background(), LoadOptions{WorkingDir: dir, Services: []string{"web"}}); !errors.Is(err, ErrPreflight) {
		t.Fatalf("web named: want the refusal, got %v", err)
	}
}

func TestLoadUnsupportedFeatureIsPreflightRefusal(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  web:\n    image: debian:bookworm\n    ports: [\"8000-8001:80\"]\n"})
	_, err := Load(context.Background(), LoadOptions{WorkingDir: dir})
	var pe *PreflightError
	if !errors.As(err, &pe) || pe.Problems[0].Rule != "compose" || !strings.Contains(err.Error(), "port ranges are not supported") {
		t.Fatalf("want a compose preflight refusal, got %v", err)
	}
}

func TestLoadCapturesComposeGoWarnings(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": "version: '3'\nservices:\n  web:\n    image: debian:bookworm\n"})
	st := loadIn(t, dir, LoadOptions{})
	if len(st.LoaderWarnings) != 1 || !strings.Contains(st.LoaderWarnings[0], "the attribute `version` is obsolete") {
		t.Fatalf("loader warnings %q", st.LoaderWarnings)
	}
	if len(st.Warnings) == 0 || st.Warnings[0] != st.LoaderWarnings[0] {
		t.Fatalf("warnings %q lack the loader's", st.Warnings)
	}
	if st.Reason == "" || !st.FromFile || !strings.Contains(st.Describe(), "project t (compose.yaml in ") {
		t.Fatalf("describe %q", st.Describe())
	}
}

func TestBundledStackSaysWhy(t *testing.T) {
	st, _ := bundledStack(t)
	if st.FromFile || st.Describe() != "project inv (bundled stack, name from -p; no compose file here)" {
		t.Fatalf("describe %q", st.Describe())
	}
}

// stackContainer adds a running container of project t's service svc.
func stackContainer(f *fakeEngine, name, svc string) {
	f.runningContainer(name, map[string]string{LabelProject: "t", LabelService: svc, LabelContainerNumber: "1"}, "", "")
	for _, c := range f.containers {
		if c.name == name {
			c.host.PortBindings = nil
		}
	}
}

func TestUpOrphans(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": profilesCompose})
	st := loadIn(t, dir, LoadOptions{})
	f := fakeWithImages()
	f.images["debian:bookworm"] = "sha256:deb"
	stackContainer(f, "t-old-1", "old")
	stackContainer(f, "t-debug-1", "debug") // disabled by a profile: not an orphan

	var out bytes.Buffer
	res, err := New(f, NewProgress(&out, false)).Up(ctx, st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := "warning: Found orphan containers ([t-old-1]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up."
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks the orphan warning:\n%s", out.String())
	}
	if f.countCalls("remove ") != 0 || f.countCalls("stop ") != 0 {
		t.Fatalf("up without --remove-orphans removed something: %v", f.mutations())
	}
	for _, s := range res.Steps {
		if s.Action == ActionRemove {
			t.Fatalf("step %+v", s)
		}
	}

	res, err = New(f, nil).Up(ctx, st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second, RemoveOrphans: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.countCalls("remove t-old-1") != 1 || f.countCalls("remove t-debug-1") != 0 {
		t.Fatalf("--remove-orphans: want t-old-1 removed and t-debug-1 kept: %v", f.mutations())
	}
	found := false
	for _, s := range res.Steps {
		found = found || (s.Container == "t-old-1" && s.Action == ActionRemove && s.Reason == "orphan")
	}
	if !found {
		t.Fatalf("steps %+v lack the orphan removal", res.Steps)
	}
}

func TestDownKeepsOrphansUnlessAsked(t *testing.T) {
	ctx := context.Background()
	f := newFakeEngine()
	stackContainer(f, "t-web-1", "web")
	stackContainer(f, "t-old-1", "old")
	res, err := New(f, nil).Down(ctx, "t", DownOptions{Services: []string{"web", "debug"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Containers != 1 || strings.Join(res.Orphans, ",") != "t-old-1" || f.countCalls("remove t-old-1") != 0 {
		t.Fatalf("down: %+v, calls %v", res, f.mutations())
	}
	res, err = New(f, nil).Down(ctx, "t", DownOptions{Services: []string{"web"}, RemoveOrphans: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Containers != 1 || len(res.Orphans) != 0 || f.countCalls("remove t-old-1") != 1 {
		t.Fatalf("down --remove-orphans: %+v, calls %v", res, f.mutations())
	}
	// -p NAME alone (Services nil): every container of the project.
	stackContainer(f, "t-x-1", "x")
	if res, err := New(f, nil).Down(ctx, "t", DownOptions{}); err != nil || res.Containers != 1 {
		t.Fatalf("down by name: %+v %v", res, err)
	}
}

func TestCheckNeverPulls(t *testing.T) {
	ctx := context.Background()
	st := loadStack(t, "services:\n  web:\n    image: nginx:1\n  db:\n    image: example.invalid/nothing:1\n", nil)
	f := fakeWithImages()
	f.pullable["nginx:1"] = true
	_, err := New(f, nil).Check(ctx, st, CheckOptions{})
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "image example.invalid/nothing:1") || strings.Contains(err.Error(), "nginx") {
		t.Fatalf("want a refusal of the absent image only, got %v", err)
	}
	if len(f.mutations()) != 0 {
		t.Fatalf("check changed something: %v", f.mutations())
	}
	if strings.Join(f.distInspects, " ") != "example.invalid/nothing:1 nginx:1" {
		t.Fatalf("registry asked about %v", f.distInspects)
	}

	// up pulls the missing image once preflight passed.
	st = loadStack(t, "services:\n  web:\n    image: nginx:1\n", nil)
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if f.countCalls("pull nginx:1") != 1 {
		t.Fatalf("up: want one pull of nginx:1: %v", f.mutations())
	}
}

func TestCheckHeldPortOnce(t *testing.T) {
	st := loadStack(t, "services:\n  web:\n    image: postgres:15\n    ports: [\"18790:80\"]\n", nil)
	f := fakeWithImages()
	f.runningContainer("squatter", nil, "0.0.0.0", "18790")
	for _, c := range f.containers {
		// The engine lists a port published on all interfaces twice: IPv4 and IPv6.
		c.host.PortBindings = nat.PortMap{"80/tcp": {{HostIP: "0.0.0.0", HostPort: "18790"}, {HostIP: "::", HostPort: "18790"}}}
	}
	_, err := New(f, nil).Check(context.Background(), st, CheckOptions{})
	if !errors.Is(err, ErrPreflight) {
		t.Fatalf("want a refusal, got %v", err)
	}
	if n := strings.Count(err.Error(), "container squatter"); n != 1 {
		t.Fatalf("the held port is named %d times:\n%v", n, err)
	}
}
