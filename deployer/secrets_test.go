package deployer

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
)

func TestResolveUser(t *testing.T) {
	f := newFakeEngine()
	d := New(f, nil)
	for spec, want := range map[string][2]int{
		"": {0, 0}, "root": {0, 0}, "postgres": {999, 999}, "65532:65532": {65532, 65532}, "65532": {65532, 65532},
		"1234": {1234, 0}, "1234:5": {1234, 5}, "postgres:nonroot": {999, 65532},
	} {
		uid, gid, err := d.resolveUser(context.Background(), "c1", spec)
		if err != nil || uid != want[0] || gid != want[1] {
			t.Errorf("resolveUser(%q) = %d:%d, %v; want %d:%d", spec, uid, gid, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"nobody-here", "postgres:nogroup"} {
		if _, _, err := d.resolveUser(context.Background(), "c1", bad); err == nil {
			t.Errorf("resolveUser(%q): want an error", bad)
		}
	}
}

// secretsMountReadOnly reports whether c mounts /run/secrets from a local
// volume bound read-only, noexec and nosuid, without asking for ro itself
// (which would drop noexec and nosuid).
func secretsMountReadOnly(f *fakeEngine, c *fakeContainer) bool {
	for _, m := range c.host.Mounts {
		if m.Target != "/run/secrets" || m.Type != mount.TypeVolume || m.ReadOnly || m.VolumeOptions == nil || !m.VolumeOptions.NoCopy {
			continue
		}
		v := f.volumes[m.Source]
		o := "," + v.Options["o"] + ","
		return v.Driver == "local" && v.Options["type"] == "none" &&
			strings.Contains(o, ",ro,") && strings.Contains(o, ",noexec,") && strings.Contains(o, ",nosuid,")
	}
	return false
}

func TestDeliveryFiles(t *testing.T) {
	mode := types.FileMode(0o440)
	s := types.ServiceConfig{Name: "app"}
	s.Secrets = []types.ServiceSecretConfig{
		{Source: "a"},
		{Source: "b", Target: "b.txt"},
		{Source: "c", Target: "/etc/app/c.pem", UID: "10", GID: "20", Mode: &mode},
		{Source: "d", Target: "/run/secrets/sub/d"},
	}
	s.Configs = []types.ServiceConfigObjConfig{
		{Source: "conf"},
		{Source: "nginx", Target: "/etc/nginx/nginx.conf"},
		{Source: "rel", Target: "app/rel.ini"},
	}
	got, err := deliveryFiles(s)
	if err != nil {
		t.Fatal(err)
	}
	want := []deliveredFile{
		{Kind: kindSecret, Name: "a", Target: "/run/secrets/a", Mode: 0o400, Stored: "run-secrets/a"},
		{Kind: kindSecret, Name: "b", Target: "/run/secrets/b.txt", Mode: 0o400, Stored: "run-secrets/b.txt"},
		{Kind: kindSecret, Name: "c", Target: "/etc/app/c.pem", Mode: 0o440, UID: "10", GID: "20", Stored: "files/2"},
		{Kind: kindSecret, Name: "d", Target: "/run/secrets/sub/d", Mode: 0o400, Stored: "run-secrets/sub/d"},
		{Kind: kindConfig, Name: "conf", Target: "/conf", Mode: 0o444, Stored: "files/4"},
		{Kind: kindConfig, Name: "nginx", Target: "/etc/nginx/nginx.conf", Mode: 0o444, Stored: "files/5"},
		{Kind: kindConfig, Name: "rel", Target: "/app/rel.ini", Mode: 0o444, Stored: "files/6"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveryFiles:\n got %+v\nwant %+v", got, want)
	}
	setuid := types.FileMode(0o4755)
	svc := func(secrets []types.ServiceSecretConfig, configs []types.ServiceConfigObjConfig) types.ServiceConfig {
		s := types.ServiceConfig{Name: "x"}
		s.Secrets, s.Configs = secrets, configs
		return s
	}
	for name, bad := range map[string]types.ServiceConfig{
		"dot-dot":        svc([]types.ServiceSecretConfig{{Source: "a", Target: "/etc/../shadow"}}, nil),
		"relative up":    svc([]types.ServiceSecretConfig{{Source: "a", Target: "../a"}}, nil),
		"the dir itself": svc([]types.ServiceSecretConfig{{Source: "a", Target: "/run/secrets"}}, nil),
		"root":           svc(nil, []types.ServiceConfigObjConfig{{Source: "a", Target: "/"}}),
		"trailing slash": svc(nil, []types.ServiceConfigObjConfig{{Source: "a", Target: "/etc/a/"}}),
		"duplicate":      svc([]types.ServiceSecretConfig{{Source: "a", Target: "/x"}}, []types.ServiceConfigObjConfig{{Source: "b", Target: "/x"}}),
		"uid not number": svc([]types.ServiceSecretConfig{{Source: "a", UID: "postgres"}}, nil),
		"setuid mode":    svc(nil, []types.ServiceConfigObjConfig{{Source: "a", Target: "/usr/local/bin/a", Mode: &setuid}}),
	} {
		if _, err := deliveryFiles(bad); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// configStack has every config source and secret targets in and outside
// /run/secrets.
const configStack = `services:
  app:
    image: golang:1.26-bookworm
    user: nonroot
    secrets:
      - pw
      - source: pw
        target: /etc/app/pw
        mode: 0440
    configs:
      - inline
      - source: fromfile
        target: /etc/app/app.ini
        uid: "0"
        gid: "0"
        mode: 0400
      - source: fromenv
        target: env.txt
secrets:
  pw:
    environment: TEST_DELIVERY_PW
configs:
  inline:
    content: |
      hello inline
  fromfile:
    file: ./app.ini
  fromenv:
    environment: TEST_DELIVERY_CONF
`

// upConfigStack brings configStack up on a fake engine.
func upConfigStack(t *testing.T) (*fakeEngine, *Deployer, *Stack) {
	t.Helper()
	t.Setenv("TEST_DELIVERY_PW", "a-strong-value-for-delivery-1")
	t.Setenv("TEST_DELIVERY_CONF", "from the environment")
	st := loadStack(t, configStack, map[string]string{"app.ini": "[app]\nx=1\n"})
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.Up(context.Background(), st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	return f, d, st
}

func TestUpDeliversConfigsAndSecretTargets(t *testing.T) {
	f, _, st := upConfigStack(t)
	if len(st.Warnings) != 0 {
		t.Fatalf("configs warned: %q", st.Warnings)
	}
	var app *fakeContainer
	for _, c := range f.containers {
		if c.name == "t-app-1" {
			app = c
		}
	}
	if app == nil {
		t.Fatalf("no app container; loader containers must be gone too (%d containers)", len(f.containers))
	}
	if len(f.containers) != 1 {
		t.Fatalf("%d containers after up, want 1: a loader was left behind", len(f.containers))
	}
	for _, tc := range []struct {
		target, content string
		mode            int64
		uid, gid        int
	}{
		{"/run/secrets/pw", "a-strong-value-for-delivery-1", 0o400, 65532, 65532},
		{"/etc/app/pw", "a-strong-value-for-delivery-1", 0o440, 65532, 65532},
		{"/inline", "hello inline\n", 0o444, 65532, 65532},
		{"/etc/app/app.ini", "[app]\nx=1\n", 0o400, 0, 0},
		{"/env.txt", "from the environment", 0o444, 65532, 65532},
	} {
		file, ok := f.delivered(app, tc.target)
		if !ok {
			t.Errorf("%s: not delivered", tc.target)
			continue
		}
		if file.content != tc.content || file.hdr.Mode != tc.mode || file.hdr.Uid != tc.uid || file.hdr.Gid != tc.gid {
			t.Errorf("%s: mode %o owner %d:%d right content %v; want mode %o owner %d:%d", tc.target, file.hdr.Mode, file.hdr.Uid, file.hdr.Gid, file.content == tc.content, tc.mode, tc.uid, tc.gid)
		}
	}
	if !secretsMountReadOnly(f, app) {
		t.Errorf("/run/secrets is not a ro,noexec,nosuid volume: %+v", app.host.Mounts)
	}
	for _, m := range app.host.Mounts {
		if m.Type == mount.TypeBind && !m.ReadOnly {
			t.Errorf("bind of %s is writable", m.Target)
		}
	}
}

func TestUpRecreatesOnChangedSecretOrConfigOnly(t *testing.T) {
	ctx := context.Background()
	t.Setenv("TEST_DELIVERY_PW", "a-strong-value-for-delivery-1")
	t.Setenv("TEST_DELIVERY_CONF", "from the environment")
	f := fakeWithImages()
	d := New(f, nil)
	up := func() *UpResult {
		t.Helper()
		st := loadStack(t, configStack, map[string]string{"app.ini": "[app]\nx=1\n"})
		res, err := d.Up(ctx, st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("up: %v", err)
		}
		return res
	}
	step := func(res *UpResult) Step {
		t.Helper()
		if len(res.Steps) != 1 {
			t.Fatalf("steps %+v", res.Steps)
		}
		return res.Steps[0]
	}
	up()
	if s := step(up()); s.Action != ActionKeep {
		t.Fatalf("unchanged values: %+v, want keep", s)
	}
	t.Setenv("TEST_DELIVERY_PW", "another-strong-value-for-delivery-2")
	if s := step(up()); s.Action != ActionRecreate || s.Reason != "secret pw changed" {
		t.Fatalf("changed secret: %+v, want recreate (secret pw changed)", s)
	}
	t.Setenv("TEST_DELIVERY_CONF", "changed environment")
	if s := step(up()); s.Action != ActionRecreate || s.Reason != "config fromenv changed" {
		t.Fatalf("changed config: %+v, want recreate (config fromenv changed)", s)
	}
	if s := step(up()); s.Action != ActionKeep {
		t.Fatalf("after the recreate: %+v, want keep", s)
	}
	// Only the current container's two delivery volumes remain; down
	// removes them.
	if n := len(f.volumes); n != 2 {
		t.Fatalf("%d volumes after recreates, want the 2 of the current container", n)
	}
	if _, err := d.Down(ctx, "t", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.volumes); n != 0 {
		t.Fatalf("%d delivery volumes left after down", n)
	}
}

func TestUpRecreatesContainerWithoutReadOnlyDelivery(t *testing.T) {
	ctx := context.Background()
	f, d, st := upConfigStack(t)
	// As an older invdeploy left it: no delivery volumes, none mounted.
	for name := range f.volumes {
		delete(f.volumes, name)
	}
	for _, c := range f.containers {
		c.host.Mounts = nil
	}
	res, err := d.Up(ctx, st, UpOptions{ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Steps[0]; s.Action != ActionRecreate || s.Reason != "secrets and configs now delivered read-only" {
		t.Fatalf("step %+v", s)
	}
}

// FuzzDeliveryTargets: any secret or config target a compose file gives
// either is refused or lands at a clean absolute path, stored inside the
// delivery volume (never outside it), without two files at one place.
func FuzzDeliveryTargets(f *testing.F) {
	for _, seed := range [][2]string{{"pw", ""}, {"pw", "/etc/app/pw"}, {"c", "rel/x"}, {"c", "/run/secrets/../etc"}, {"x", "/run/secrets/a/b"}, {"x", "//a"}, {"..", ""}, {"a", "/"}} {
		f.Add(seed[0], seed[1], seed[1])
	}
	f.Fuzz(func(t *testing.T, source, secretTarget, configTarget string) {
		s := types.ServiceConfig{Name: "svc"}
		s.Secrets = []types.ServiceSecretConfig{{Source: source, Target: secretTarget}}
		s.Configs = []types.ServiceConfigObjConfig{{Source: source, Target: configTarget}}
		files, err := deliveryFiles(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, df := range files {
			if !strings.HasPrefix(df.Target, "/") || path.Clean(df.Target) != df.Target || df.Target == "/" || df.Target == secretsDir {
				t.Fatalf("target %q accepted", df.Target)
			}
			if path.Clean(df.Stored) != df.Stored || strings.HasPrefix(df.Stored, "/") || strings.HasPrefix(df.Stored, "..") ||
				!(strings.HasPrefix(df.Stored, "run-secrets/") || strings.HasPrefix(df.Stored, "files/")) {
				t.Fatalf("target %q stored at %q, outside the delivery volume", df.Target, df.Stored)
			}
			if seen[df.Target] {
				t.Fatalf("two files at %q", df.Target)
			}
			seen[df.Target] = true
		}
	})
}

func TestDownSweepsInterruptedDelivery(t *testing.T) {
	ctx := context.Background()
	f, d, _ := upConfigStack(t)
	// As a crash between loading and creating leaves them: a loader and
	// the volumes of a container that was never created.
	f.containers["left"] = &fakeContainer{id: "left", state: "created", cfg: container.Config{Labels: map[string]string{labelLoader: "t"}}, files: map[string]fakeFile{}}
	f.volumes["t-app-2-delivery-x-files"] = volume.Volume{Name: "t-app-2-delivery-x-files", Labels: map[string]string{LabelProject: "t", LabelDeliveryFor: "t-app-2"}}
	f.volumes["other"] = volume.Volume{Name: "other", Labels: map[string]string{LabelProject: "other", LabelDeliveryFor: "other-app-1"}}
	if _, err := d.Down(ctx, "t", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(f.containers) != 0 {
		t.Errorf("%d containers left after down", len(f.containers))
	}
	if _, ok := f.volumes["other"]; !ok || len(f.volumes) != 1 {
		t.Errorf("after down: %d volumes, want only another project's", len(f.volumes))
	}
}

// TestNoOpUpReadsNoSecretBack: the delivery record lets a second up on the
// same machine skip reading secrets back from the containers; a changed
// value is still seen (the record does not match, the value is read back),
// and the record holds neither value.
func TestNoOpUpReadsNoSecretBack(t *testing.T) {
	ctx := context.Background()
	const first, second = "first-Zq8vN3xK-value-1", "second-Zq8vN3xK-value-2"
	port := strconv.Itoa(freePort(t))
	st, cfgDir := bundledStack(t, "INVOICING_DB_PASSWORD="+first, "INVOICING_API_PORT="+port)
	f := fakeWithImages()
	d := New(f, nil)
	o := UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}
	if _, err := d.Up(ctx, st, o); err != nil {
		t.Fatal(err)
	}
	reads := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.reads }
	before := reads()
	res, err := d.Up(ctx, st, o)
	if err != nil || res.Changed() {
		t.Fatalf("no-op up: changed %v, %v", res.Changed(), err)
	}
	if got := reads() - before; got != 0 {
		t.Fatalf("a no-op up read %d files back from the containers", got)
	}
	rec, err := os.ReadFile(filepath.Join(cfgDir, deliveryRecordFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(cfgDir, deliveryRecordFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("record mode %v", fi.Mode())
	}
	if strings.Contains(string(rec), first) {
		t.Fatal("the delivery record holds the secret")
	}
	st2, _ := bundledStack(t, "INVOICING_DB_PASSWORD="+second, "INVOICING_API_PORT="+port)
	st2.Project.WorkingDir = st.Project.WorkingDir
	res, err = d.Up(ctx, st2, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Steps {
		if s.Action != ActionRecreate || !strings.HasPrefix(s.Reason, "secret db_password changed") {
			t.Fatalf("changed secret: step %+v", s)
		}
	}
}
