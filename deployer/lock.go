package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/invdeploy/invdeploy/deployer/internal/scratchimage"
)

// The deploy lock lives on the engine, so two machines deploying to one host
// exclude each other: it is a never-started container named
// invdeploy-lock-<project>. Creating a container with a given name is atomic
// in the engine, so exactly one creator wins. The holder is in the
// container's labels (visible in `docker ps -a`) and a heartbeat file inside
// it, rewritten every LockHeartbeat through the Engine API; a lock whose
// heartbeat is older than LockLease, or whose holder is a dead process on
// this machine, is stale and taken over. The container runs nothing and
// holds no secret; its image is a one-file image built from scratch.
//
// The lock is a lease with fencing: the lock container's id is the lease's
// token (a lock taken again, after a break or a takeover, is a new
// container, so a new id). A deploy changes the engine only through
// fencedEngine (fence.go), which compares that token with the engine's
// before each change (Lock.Fence): a deploy whose lease was taken stops
// before its next change with a *LeaseLostError (exit 5). lock --break
// refuses a holder that is alive (see LockHolder.Dead) unless forced.

// ErrLocked is wrapped when another deploy holds the project's lock (exit 5).
var ErrLocked = errors.New("another deploy holds the lock")

// IsLocked reports whether err means another deploy holds the lock.
func IsLocked(err error) bool { return errors.Is(err, ErrLocked) }

const (
	// LockHeartbeat is how often a holder renews its lock.
	LockHeartbeat = 5 * time.Second
	// LockLease is how old a heartbeat may be before the lock counts as
	// abandoned (its holder died on another machine or lost the engine).
	LockLease = 30 * time.Second

	lockImage        = "invdeploy-lock:1"
	labelLockHolder  = "io.invdeploy.lock.holder"
	labelLockProject = "io.invdeploy.lock.project"
	lockFile         = "/invdeploy-lock.json"
)

// LockHolder says who holds a lock.
type LockHolder struct {
	User      string    `json:"user"`
	Machine   string    `json:"machine"`
	PID       int       `json:"pid"`
	Command   string    `json:"command"`
	Since     time.Time `json:"since"`
	Heartbeat time.Time `json:"heartbeat"`
}

func (h LockHolder) String() string {
	return fmt.Sprintf("%s@%s pid %d (%s) since %s", h.User, h.Machine, h.PID, h.Command, h.Since.UTC().Format(time.RFC3339))
}

// LockError is returned when the lock is held by someone else.
type LockError struct {
	Project string
	Holder  LockHolder
	// Age is how long ago the holder's last heartbeat was.
	Age time.Duration
	// Break: the error refuses lock --break of a live holder.
	Break bool
}

func (e *LockError) Error() string {
	if e.Break {
		return fmt.Sprintf("the deploy lock of project %s is held by %s, which is alive (last heartbeat %s ago): not broken. "+
			"Wait for it to finish; a holder without heartbeat for %s is dead and taken over by itself. If you know it is gone, "+
			"add --force: that deploy then stops before its next change (exit 5)", e.Project, e.Holder, e.Age.Round(time.Second), LockLease)
	}
	return fmt.Sprintf("%s of project %s: %s, last heartbeat %s ago (alive); wait for it to finish (a lock without heartbeat for %s is taken over by itself); "+
		"if you know that deploy is gone, `invdeploy lock --break --force -p %s` breaks it, and that deploy then stops before its next change",
		ErrLocked, e.Project, e.Holder, e.Age.Round(time.Second), LockLease, e.Project)
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockError) Unwrap() error { return ErrLocked }

// LeaseLostError is returned by a change a deploy tried after its lock was
// broken or taken over: the change was not made (exit 5, as ErrLocked).
type LeaseLostError struct {
	Project string
	// Holder is who holds the lock now, when known.
	Holder *LockHolder
	// Free: nobody holds the lock now (it was broken, not taken again).
	Free bool
	// Before names the change that was not made.
	Before string
}

func (e *LeaseLostError) Error() string {
	now := "" // the heartbeat found it gone: who holds it now is not known
	switch {
	case e.Free:
		now = " (nobody holds it now)"
	case e.Holder != nil:
		now = " (now held by " + e.Holder.String() + ")"
	}
	before := ""
	if e.Before != "" {
		before = " before " + e.Before
	}
	return fmt.Sprintf("the deploy lock of project %s was broken while this deploy held it%s: stopped%s, changing nothing more; "+
		"run `invdeploy status -p %s` to see where the stack stands, and deploy again once the other deploy is done", e.Project, now, before, e.Project)
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LeaseLostError) Unwrap() error { return ErrLocked }

// Dead says whether a holder whose last heartbeat is age old is dead (the
// lock is then taken over by the next deploy, and may be broken) and why;
// "" means it is alive.
func (h LockHolder) Dead(age time.Duration) string { return staleReason(h, age) }

// LockOptions control Lock.
type LockOptions struct {
	// Command is what the holder runs, e.g. "up" (shown to others).
	Command string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Lock is a held deploy lock; Unlock releases it.
type Lock struct {
	d       *Deployer
	project string
	id      string
	holder  LockHolder
	now     func() time.Time
	stop    chan struct{}
	done    sync.WaitGroup
	once    sync.Once

	mu   sync.Mutex
	lost *LeaseLostError // set once the lease is found taken
}

func lockName(project string) string { return "invdeploy-lock-" + project }

// Lock takes the deploy lock of project on the engine, or fails with a
// *LockError naming the holder. A stale lock (no heartbeat for LockLease, or
// held by a dead process of this machine) is taken over with a warning.
func (d *Deployer) Lock(ctx context.Context, project string, o LockOptions) (*Lock, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	h := currentHolder(o.Command, now())
	for attempt := 0; attempt < 3; attempt++ {
		id, err := d.createLock(ctx, project, h)
		if err == nil {
			l := &Lock{d: d, project: project, id: id, holder: h, now: now, stop: make(chan struct{})}
			l.done.Add(1)
			go l.heartbeat()
			return l, nil
		}
		if !cerrdefs.IsConflict(err) {
			return nil, fmt.Errorf("take the deploy lock of %s: %w", project, err)
		}
		cur, curID, err := d.readLock(ctx, project)
		if cerrdefs.IsNotFound(err) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return nil, fmt.Errorf("read the deploy lock of %s: %w", project, err)
		}
		age := now().Sub(cur.Heartbeat)
		if reason := staleReason(cur, age); reason != "" {
			d.out.Event("warning: taking over the deploy lock of %s from %s: %s", project, cur, reason)
			err := d.quick(ctx, "remove the deploy lock", func(ctx context.Context) error {
				return d.engine.ContainerRemove(ctx, curID, container.RemoveOptions{Force: true})
			})
			if err != nil && !cerrdefs.IsNotFound(err) {
				return nil, fmt.Errorf("remove the stale deploy lock of %s: %w", project, err)
			}
			continue
		}
		return nil, &LockError{Project: project, Holder: cur, Age: age}
	}
	return nil, fmt.Errorf("take the deploy lock of %s: it changed hands three times while trying; try again", project)
}

// staleReason says why a lock may be taken over, or "" when it is live.
func staleReason(h LockHolder, age time.Duration) string {
	if age > LockLease {
		return fmt.Sprintf("no heartbeat for %s", age.Round(time.Second))
	}
	if host, _ := os.Hostname(); h.Machine == host && h.PID > 0 && !processAlive(h.PID) {
		return fmt.Sprintf("process %d no longer runs on this machine", h.PID)
	}
	return ""
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LockStatus returns the holder of project's lock and the age of its last
// heartbeat, or ErrNotFound when nobody holds it.
func (d *Deployer) LockStatus(ctx context.Context, project string) (*LockHolder, time.Duration, error) {
	h, _, err := d.readLock(ctx, project)
	if cerrdefs.IsNotFound(err) {
		return nil, 0, fmt.Errorf("deploy lock of %s: %w", project, ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	return &h, time.Since(h.Heartbeat), nil
}

// BreakLock removes project's lock and returns the holder it removed (nil
// when there was none). A holder that is alive (see LockHolder.Dead) is
// refused with a *LockError (Break) unless force; the broken deploy stops
// before its next change (see Lock.Fence).
func (d *Deployer) BreakLock(ctx context.Context, project string, force bool) (*LockHolder, error) {
	h, id, err := d.readLock(ctx, project)
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if age := time.Since(h.Heartbeat); !force && h.Dead(age) == "" {
		return nil, &LockError{Project: project, Holder: h, Age: age, Break: true}
	}
	err = d.quick(ctx, "remove the deploy lock", func(ctx context.Context) error {
		return d.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("break the deploy lock of %s: %w", project, err)
	}
	return &h, nil
}

// Fence fails with a *LeaseLostError when l is no longer the project's
// lock on the engine (it was broken, or taken over after a lapse): the
// lock container of that name is gone or is another one. before names the
// change about to be made. Once lost, always lost.
func (l *Lock) Fence(ctx context.Context, before string) error {
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost == nil {
		c, err := l.d.engine.ContainerInspect(ctx, lockName(l.project))
		switch {
		case cerrdefs.IsNotFound(err):
			lost = &LeaseLostError{Project: l.project, Free: true}
		case err != nil:
			return fmt.Errorf("check the deploy lock of %s before %s: %w", l.project, before, err)
		case c.ContainerJSONBase == nil || c.ID != l.id:
			lost = &LeaseLostError{Project: l.project}
			var h LockHolder
			if c.Config != nil && json.Unmarshal([]byte(c.Config.Labels[labelLockHolder]), &h) == nil {
				lost.Holder = &h
			}
		default:
			return nil
		}
		l.mu.Lock()
		if l.lost == nil {
			l.lost = lost
		}
		lost = l.lost
		l.mu.Unlock()
	}
	e := *lost
	e.Before = before
	return &e
}

// markLost records that the lease is gone (the heartbeat found the lock
// container removed).
func (l *Lock) markLost() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = &LeaseLostError{Project: l.project}
	}
}

// Unlock stops the heartbeat and releases the lock, unless someone broke it
// and took it meanwhile (then theirs is left alone).
func (l *Lock) Unlock(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		l.done.Wait()
		err = l.d.quick(context.WithoutCancel(ctx), "remove the deploy lock", func(ctx context.Context) error {
			return l.d.engine.ContainerRemove(ctx, l.id, container.RemoveOptions{Force: true})
		})
		if cerrdefs.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("release the deploy lock of %s: %w", l.project, err)
		}
	})
	return err
}

func (l *Lock) heartbeat() {
	defer l.done.Done()
	t := time.NewTicker(LockHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.holder.Heartbeat = l.now()
			ctx, cancel := context.WithTimeout(context.Background(), LockHeartbeat)
			err := l.d.writeLockFile(ctx, l.id, l.holder)
			cancel()
			if cerrdefs.IsNotFound(err) {
				// Broken: the deploy stops before its next change (Fence).
				l.markLost()
				l.d.out.Event("warning: the deploy lock of %s was broken; this deploy stops before its next change", l.project)
				return
			}
			if err != nil {
				l.d.out.Event("warning: renewing the deploy lock of %s: %v", l.project, err)
			}
		}
	}
}

func currentHolder(command string, now time.Time) LockHolder {
	h := LockHolder{PID: os.Getpid(), Command: command, Since: now.UTC(), Heartbeat: now.UTC()}
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	} else {
		h.User = strconv.Itoa(os.Getuid())
	}
	h.Machine, _ = os.Hostname()
	return h
}

// buildLockImage builds the one-file image lock containers are made from
// (FROM scratch: nothing is pulled). createLock calls it the first time a
// lock is taken on an engine, when the create finds no image.
func (d *Deployer) buildLockImage(ctx context.Context) error {
	return scratchimage.Build(ctx, d.engine, lockImage, nil, []scratchimage.File{
		{Name: "Dockerfile", Mode: 0o644, Body: []byte("FROM scratch\nCOPY lock " + lockFile + "\nLABEL " + LabelManagedBy + "=invdeploy\n")},
		{Name: "lock", Mode: 0o644, Body: []byte("{}\n")},
	})
}

// createLock creates the lock container, which fails with a conflict when
// it exists. Every up takes the lock, over SSH for a remote engine, so the
// create is the only call when the lock is free: no inspect of the lock
// image first (a missing image is built and the create tried again), and no
// HostConfig, whose zero value alone is 1.2 kB of JSON; a container that
// never starts gets no network, whatever its mode.
func (d *Deployer) createLock(ctx context.Context, project string, h LockHolder) (string, error) {
	info, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	cfg := &container.Config{
		Image: lockImage,
		Cmd:   []string{"/nonexistent"}, // never started
		Labels: map[string]string{
			LabelManagedBy:   "invdeploy",
			labelLockProject: project, // not LabelProject: status, down and orphans ignore it
			labelLockHolder:  string(info),
		},
	}
	var resp container.CreateResponse
	create := func(ctx context.Context) (err error) {
		resp, err = d.engine.ContainerCreate(ctx, cfg, nil, nil, nil, lockName(project))
		return err
	}
	err = d.quick(ctx, "create the deploy lock", create)
	if cerrdefs.IsNotFound(err) { // no lock image on this engine yet
		if err := d.buildLockImage(ctx); err != nil {
			return "", err
		}
		err = d.quick(ctx, "create the deploy lock", create)
	}
	if err != nil {
		return "", err
	}
	// The first heartbeat is the labels' time (Since): writing the file
	// costs a copy into the container (hundreds of ms), paid only by the
	// heartbeats of a deploy that lasts longer than LockHeartbeat.
	return resp.ID, nil
}

func (d *Deployer) writeLockFile(ctx context.Context, id string, h LockHolder) error {
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(lockFile, "/"), Mode: 0o644, Size: int64(len(body)), ModTime: h.Heartbeat}); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return d.engine.CopyToContainer(ctx, id, "/", &buf, container.CopyToContainerOptions{})
}

// readLock returns the holder of project's lock (heartbeat from the lock
// file, else the labels' time) and the lock container's id.
func (d *Deployer) readLock(ctx context.Context, project string) (LockHolder, string, error) {
	var h LockHolder
	c, err := d.engine.ContainerInspect(ctx, lockName(project))
	if err != nil {
		return h, "", err
	}
	if c.Config != nil {
		_ = json.Unmarshal([]byte(c.Config.Labels[labelLockHolder]), &h)
	}
	var rc io.ReadCloser
	err = d.quick(ctx, "read the deploy lock", func(ctx context.Context) (err error) {
		rc, _, err = d.engine.CopyFromContainer(ctx, c.ID, lockFile)
		if err == nil { // read within the bound: the body streams on ctx
			var b []byte
			b, err = io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			rc = io.NopCloser(bytes.NewReader(b))
		}
		return err
	})
	if err == nil {
		defer rc.Close()
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err == nil {
			var fromFile LockHolder
			if b, err := io.ReadAll(io.LimitReader(tr, 64<<10)); err == nil && json.Unmarshal(b, &fromFile) == nil && !fromFile.Heartbeat.IsZero() {
				h.Heartbeat = fromFile.Heartbeat
			}
		}
	} else if cerrdefs.IsNotFound(err) {
		return h, "", err // removed between inspect and copy
	}
	if h.Heartbeat.IsZero() {
		h.Heartbeat = h.Since
	}
	return h, c.ID, nil
}
