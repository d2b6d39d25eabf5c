package deployer

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// Up reads the lock first (lockFree) and takes it only when its plan has
// operations (see lockedPlan): an up that finds nothing to change never
// writes to the engine (a no-op up costs one lock read, not a create and a
// remove).

// lockFree fails with a *LockError when a live deploy holds project's
// lock; a free or stale lock is fine (a stale one is taken over when the
// lock is taken).
func (d *Deployer) lockFree(ctx context.Context, project string) error {
	cur, _, err := d.readLock(ctx, project)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the deploy lock of %s: %w", project, err)
	}
	age := time.Since(cur.Heartbeat)
	if staleReason(cur, age) != "" {
		return nil
	}
	return &LockError{Project: project, Holder: cur, Age: age}
}
