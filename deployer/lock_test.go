package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// lockEngine is a fake of just the calls the lock makes: named containers
// whose creation is atomic, and one file each.
type lockEngine struct {
	Engine
	mu     sync.Mutex
	image  bool
	builds int
	// inspects, creates and hostConfigs count ImageInspect calls,
	// ContainerCreate calls, and creates that sent a HostConfig.
	inspects, creates, hostConfigs int
	seq                            int
	byName                         map[string]string            // name -> id
	labels                         map[string]map[string]string // id -> labels
	files                          map[string][]byte            // id -> lock file
	removed                        []string
	vols                           map[string]map[string]string // volume name -> labels
}

func newLockEngine() *lockEngine {
	return &lockEngine{byName: map[string]string{}, labels: map[string]map[string]string{}, files: map[string][]byte{}}
}

func (f *lockEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inspects++
	if f.image && ref == lockImage {
		return image.InspectResponse{ID: "sha256:lock"}, nil
	}
	return image.InspectResponse{}, cerrdefs.ErrNotFound
}

func (f *lockEngine) ImageBuild(_ context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	io.Copy(io.Discard, r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.image = true
	f.builds++
	return build.ImageBuildResponse{Body: io.NopCloser(strings.NewReader(`{"stream":"ok"}`))}, nil
}

func (f *lockEngine) ContainerCreate(_ context.Context, cfg *container.Config, host *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if host != nil {
		f.hostConfigs++
	}
	if cfg.Image == lockImage && !f.image {
		return container.CreateResponse{}, fmt.Errorf("No such image: %s: %w", cfg.Image, cerrdefs.ErrNotFound)
	}
	if _, ok := f.byName[name]; ok {
		return container.CreateResponse{}, fmt.Errorf("name %s in use: %w", name, cerrdefs.ErrConflict)
	}
	f.seq++
	id := fmt.Sprintf("c%d", f.seq)
	f.byName[name] = id
	f.labels[id] = cfg.Labels
	f.files[id] = []byte("{}\n") // the lock image's file
	return container.CreateResponse{ID: id}, nil
}

func (f *lockEngine) idOf(ref string) (string, bool) {
	if id, ok := f.byName[ref]; ok {
		return id, true
	}
	_, ok := f.labels[ref]
	return ref, ok
}

func (f *lockEngine) ContainerInspect(_ context.Context, ref string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.idOf(ref)
	if !ok {
		return container.InspectResponse{}, cerrdefs.ErrNotFound
	}
	r := container.InspectResponse{Config: &container.Config{Labels: f.labels[id]}}
	r.ContainerJSONBase = &container.ContainerJSONBase{ID: id}
	return r, nil
}

func (f *lockEngine) ContainerRemove(_ context.Context, ref string, _ container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.idOf(ref)
	if !ok {
		return cerrdefs.ErrNotFound
	}
	for n, i := range f.byName {
		if i == id {
			delete(f.byName, n)
		}
	}
	delete(f.labels, id)
	delete(f.files, id)
	f.removed = append(f.removed, id)
	return nil
}

func (f *lockEngine) CopyToContainer(_ context.Context, id, _ string, r io.Reader, _ container.CopyToContainerOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.labels[id]; !ok {
		return cerrdefs.ErrNotFound
	}
	tr := tar.NewReader(r)
	if _, err := tr.Next(); err != nil {
		return err
	}
	b, _ := io.ReadAll(tr)
	f.files[id] = b
	return nil
}

func (f *lockEngine) CopyFromContainer(_ context.Context, id, _ string) (io.ReadCloser, container.PathStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[id]
	if !ok {
		return nil, container.PathStat{}, cerrdefs.ErrNotFound
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "invdeploy-lock.json", Mode: 0o644, Size: int64(len(b))})
	tw.Write(b)
	tw.Close()
	return io.NopCloser(&buf), container.PathStat{}, nil
}

func TestLockExcludesSecondDeploy(t *testing.T) {
	eng := newLockEngine()
	d := New(eng, nil)
	ctx := context.Background()
	l, err := d.Lock(ctx, "shop", LockOptions{Command: "up"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Lock(ctx, "shop", LockOptions{Command: "down"})
	var le *LockError
	if !errors.As(err, &le) || !IsLocked(err) {
		t.Fatalf("second lock: %v, want a LockError", err)
	}
	host, _ := os.Hostname()
	if le.Holder.PID != os.Getpid() || le.Holder.Command != "up" || le.Holder.Machine != host {
		t.Fatalf("holder %+v", le.Holder)
	}
	for _, want := range []string{"shop", "pid", "(up)", "invdeploy lock --break --force -p shop", "(alive)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// Another project is independent.
	other, err := d.Lock(ctx, "blog", LockOptions{Command: "up"})
	if err != nil {
		t.Fatalf("another project's lock: %v", err)
	}
	other.Unlock(ctx)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := d.Lock(ctx, "shop", LockOptions{Command: "rollback"})
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock(ctx)
	if eng.builds != 1 {
		t.Errorf("lock image built %d times, want once", eng.builds)
	}
}

// TestFreeLockIsOneCreate: taking a free lock is one small create call
// (it crosses the SSH link on every remote up): no image inspect, no
// HostConfig; only the first lock on an engine builds the image and
// creates again.
func TestFreeLockIsOneCreate(t *testing.T) {
	eng := newLockEngine()
	d := New(eng, nil)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		l, err := d.Lock(ctx, "shop", LockOptions{Command: "up"})
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock(ctx)
	}
	if eng.builds != 1 || eng.creates != 4 {
		t.Errorf("3 locks: %d builds and %d creates, want 1 and 4 (the first create finds no image)", eng.builds, eng.creates)
	}
	if eng.inspects != 0 || eng.hostConfigs != 0 {
		t.Errorf("3 locks: %d image inspects and %d creates with a HostConfig, want none", eng.inspects, eng.hostConfigs)
	}
}

// TestLockConcurrent: of many simultaneous takers exactly one wins.
func TestLockConcurrent(t *testing.T) {
	eng := newLockEngine()
	d := New(eng, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []*Lock
	locked := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := d.Lock(ctx, "shop", LockOptions{Command: "up"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, l)
			case IsLocked(err):
				locked++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || locked != 7 {
		t.Fatalf("winners %d, refused %d; want 1 and 7", len(won), locked)
	}
	won[0].Unlock(ctx)
}

// TestStaleLockTakenOver: a lock whose heartbeat is older than the lease, or
// whose holder is a dead process of this machine, is taken over; a live one
// of another machine is not.
func TestStaleLockTakenOver(t *testing.T) {
	ctx := context.Background()
	host, _ := os.Hostname()
	now := time.Now()
	cases := []struct {
		name   string
		holder LockHolder
		stale  bool
	}{
		{"fresh, other machine", LockHolder{User: "bob", Machine: "elsewhere", PID: 1, Heartbeat: now.Add(-2 * time.Second)}, false},
		{"old heartbeat", LockHolder{User: "bob", Machine: "elsewhere", PID: 1, Heartbeat: now.Add(-LockLease - time.Second)}, true},
		{"dead pid here", LockHolder{User: "me", Machine: host, PID: deadPID(t), Heartbeat: now}, true},
		{"live pid here", LockHolder{User: "me", Machine: host, PID: os.Getppid(), Heartbeat: now}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng := newLockEngine()
			d := New(eng, nil)
			tc.holder.Since = tc.holder.Heartbeat
			if _, err := d.createLock(ctx, "shop", tc.holder); err != nil {
				t.Fatal(err)
			}
			l, err := d.Lock(ctx, "shop", LockOptions{Command: "up", Now: func() time.Time { return now }})
			if tc.stale {
				if err != nil {
					t.Fatalf("stale lock not taken over: %v", err)
				}
				l.Unlock(ctx)
				return
			}
			if !IsLocked(err) {
				t.Fatalf("live lock: %v, want ErrLocked", err)
			}
		})
	}
}

func TestBreakAndStatus(t *testing.T) {
	eng := newLockEngine()
	d := New(eng, nil)
	ctx := context.Background()
	if _, _, err := d.LockStatus(ctx, "shop"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status without lock: %v", err)
	}
	l, err := d.Lock(ctx, "shop", LockOptions{Command: "up"})
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := d.LockStatus(ctx, "shop")
	if err != nil || h.Command != "up" {
		t.Fatalf("status: %+v %v", h, err)
	}
	// Its holder (this process, heartbeat fresh) is alive: --break alone
	// refuses, naming it alive; --force breaks it.
	if why := h.Dead(0); why != "" {
		t.Fatalf("a live holder reported dead: %s", why)
	}
	var refused *LockError
	if _, err := d.BreakLock(ctx, "shop", false); !errors.As(err, &refused) || !refused.Break || !IsLocked(err) || !strings.Contains(err.Error(), "is alive") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("break of a live holder: %v, want a refusal that says alive and --force", err)
	}
	if _, _, err := d.LockStatus(ctx, "shop"); err != nil {
		t.Fatalf("the refused break removed the lock: %v", err)
	}
	broken, err := d.BreakLock(ctx, "shop", true)
	if err != nil || broken == nil || broken.PID != os.Getpid() {
		t.Fatalf("break: %+v %v", broken, err)
	}
	// Someone takes it; the first holder's Unlock must not remove theirs.
	l2, err := d.Lock(ctx, "shop", LockOptions{Command: "down"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _, err := d.LockStatus(ctx, "shop"); err != nil || h.Command != "down" {
		t.Fatalf("the second holder's lock was removed by the first's Unlock: %+v %v", h, err)
	}
	l2.Unlock(ctx)
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	return p.Pid
}

// TestBreakDeadHolderWithoutForce: a dead holder (no heartbeat for longer
// than the lease) is broken by --break alone, and reported dead.
func TestBreakDeadHolderWithoutForce(t *testing.T) {
	ctx := context.Background()
	eng := newLockEngine()
	d := New(eng, nil)
	old := time.Now().Add(-LockLease - 5*time.Second)
	if _, err := d.createLock(ctx, "shop", LockHolder{User: "bob", Machine: "elsewhere", PID: 7, Since: old, Heartbeat: old}); err != nil {
		t.Fatal(err)
	}
	h, age, err := d.LockStatus(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if why := h.Dead(age); !strings.Contains(why, "no heartbeat for") {
		t.Fatalf("Dead = %q, want no heartbeat", why)
	}
	if broken, err := d.BreakLock(ctx, "shop", false); err != nil || broken == nil || broken.User != "bob" {
		t.Fatalf("break of a dead holder: %+v %v", broken, err)
	}
}

// TestFencedDeployStopsWhenLeaseTaken: a deploy changes the engine through
// fencedEngine; once its lock is broken (--force) and taken by another
// deploy, its next change is not made and fails with a *LeaseLostError
// (exit 5) naming the new holder, and so does every change after it.
func TestFencedDeployStopsWhenLeaseTaken(t *testing.T) {
	ctx := context.Background()
	eng := newLockEngine()
	eng.image = true
	d := New(eng, nil)
	var took int
	fd, f := d.fenced(func() (*Lock, error) { took++; return d.Lock(ctx, "shop", LockOptions{Command: "up"}) }, nil)
	if f.held() != nil {
		t.Fatal("the lock is taken before the first change")
	}
	cfg := &container.Config{Image: "app"}
	if _, err := fd.engine.ContainerCreate(ctx, cfg, nil, nil, nil, "shop-api-1"); err != nil {
		t.Fatal(err)
	}
	if took != 1 || f.held() == nil {
		t.Fatalf("the first change did not take the lock (took %d)", took)
	}
	if _, err := fd.engine.ContainerCreate(ctx, cfg, nil, nil, nil, "shop-db-1"); err != nil {
		t.Fatalf("a change under a live lease: %v", err)
	}
	if _, err := d.BreakLock(ctx, "shop", true); err != nil {
		t.Fatal(err)
	}
	other, err := New(eng, nil).Lock(ctx, "shop", LockOptions{Command: "down"})
	if err != nil {
		t.Fatal(err)
	}
	creates := eng.creates
	_, err = fd.engine.ContainerCreate(ctx, cfg, nil, nil, nil, "shop-api-2")
	var lost *LeaseLostError
	if !errors.As(err, &lost) || !IsLocked(err) {
		t.Fatalf("change after the lease was taken: %v, want a *LeaseLostError", err)
	}
	if lost.Holder == nil || lost.Holder.Command != "down" || !strings.Contains(err.Error(), "before create shop-api-2") {
		t.Fatalf("the error does not name the new holder and the change: %v", err)
	}
	if eng.creates != creates {
		t.Fatal("the change was made after the lease was lost")
	}
	for _, change := range []func() error{
		func() error { return fd.engine.ContainerStart(ctx, "c1", container.StartOptions{}) },
		func() error { return fd.engine.ContainerRemove(ctx, "c1", container.RemoveOptions{}) },
		func() error {
			_, err := fd.engine.NetworkCreate(ctx, "shop_default", network.CreateOptions{})
			return err
		},
		func() error { _, err := fd.engine.ContainerExecCreate(ctx, "c1", container.ExecOptions{}); return err },
	} {
		if err := change(); !IsLocked(err) {
			t.Fatalf("a later change: %v, want the lease lost", err)
		}
	}
	if _, _, err := d.LockStatus(ctx, "shop"); err != nil {
		t.Fatalf("the new holder's lock is gone: %v", err)
	}
	other.Unlock(ctx)
}

// TestFencedLeaseBrokenAndFree: a lock broken and not taken again is lost
// too ("nobody holds it now").
func TestFencedLeaseBrokenAndFree(t *testing.T) {
	ctx := context.Background()
	eng := newLockEngine()
	d := New(eng, nil)
	l, err := d.Lock(ctx, "shop", LockOptions{Command: "down"})
	if err != nil {
		t.Fatal(err)
	}
	fd, _ := d.fenced(nil, l)
	if err := fd.engine.ContainerRemove(ctx, "c9", container.RemoveOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("a change under a held lease: %v, want the engine's answer", err)
	}
	if _, err := d.BreakLock(ctx, "shop", true); err != nil {
		t.Fatal(err)
	}
	if err := fd.engine.ContainerRemove(ctx, "c9", container.RemoveOptions{}); !IsLocked(err) || !strings.Contains(err.Error(), "nobody holds it now") {
		t.Fatalf("stop after the break: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the heartbeat's writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHeartbeatNoticesBrokenLock: the heartbeat that finds its lock
// container gone records the lease as lost (the deploy stops before its
// next change, without another engine call) and says so, instead of only
// warning and going on.
func TestHeartbeatNoticesBrokenLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := newLockEngine()
	var out syncBuffer
	d := New(eng, NewProgress(&out, false))
	l, err := d.Lock(ctx, "shop", LockOptions{Command: "up"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	if _, err := d.BreakLock(ctx, "shop", true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(LockHeartbeat + 5*time.Second)
	for {
		l.mu.Lock()
		lost := l.lost
		l.mu.Unlock()
		if lost != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat did not notice the broken lock")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "was broken; this deploy stops before its next change") {
		t.Fatalf("no notice: %q", out.String())
	}
	// Taken again meanwhile: still lost (a lease once lost stays lost).
	other, err := d.Lock(ctx, "shop", LockOptions{Command: "down"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unlock(ctx)
	if err := l.Fence(ctx, "start x"); !IsLocked(err) {
		t.Fatalf("Fence after the heartbeat found the lock gone: %v", err)
	}
}
