package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// The deploy lock is a coordination.k8s.io Lease named
// invdeploy-<project>-lock in the namespace: creating it is atomic in the
// API server, so one of two concurrent ups wins; the other exits 5. The
// holder renews it every leaseRenew; a lease not renewed for leaseDuration
// is abandoned (its holder died) and taken over.
const (
	leaseDuration = 30 * time.Second
	leaseRenew    = 5 * time.Second
)

// Lock is a held deploy lock.
type Lock struct {
	c      *Cluster
	name   string
	stop   chan struct{}
	done   chan struct{}
	holder string
}

func lockName(project string) string { return ResourceName("invdeploy-" + project + "-lock") }

func holderOf(command string) (string, deployer.LockHolder) {
	h := deployer.LockHolder{PID: os.Getpid(), Command: command, Since: time.Now().UTC()}
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	h.Machine, _ = os.Hostname()
	b, _ := json.Marshal(h)
	return string(b), h
}

// TakeLock takes the project's deploy lock or fails with a
// *deployer.LockError (exit 5) naming its holder.
func TakeLock(ctx context.Context, c *Cluster, project, command string) (*Lock, error) {
	id, _ := holderOf(command)
	name := lockName(project)
	leases := c.Client.CoordinationV1().Leases(c.Namespace)
	secs := int32(leaseDuration / time.Second)
	now := metav1.NewMicroTime(time.Now())
	lease := &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels(project, "")},
		Spec:       coordv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
	}
	_, err := leases.Create(ctx, lease, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := leases.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("read the deploy lock: %s", oneLine(gerr))
		}
		renewed := cur.CreationTimestamp.Time
		if cur.Spec.RenewTime != nil {
			renewed = cur.Spec.RenewTime.Time
		}
		if time.Since(renewed) < leaseDuration {
			var h deployer.LockHolder
			if cur.Spec.HolderIdentity != nil {
				_ = json.Unmarshal([]byte(*cur.Spec.HolderIdentity), &h)
			}
			return nil, &LockError{Project: project, Namespace: c.Namespace, Holder: h, Age: time.Since(renewed)}
		}
		// Abandoned: take it over (the update fails if another took it first).
		cur.Spec = lease.Spec
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return nil, &LockError{Project: project, Namespace: c.Namespace}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("take the deploy lock (Lease %s): %s", name, oneLine(err))
	}
	l := &Lock{c: c, name: name, holder: id, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l, nil
}

func (l *Lock) renew() {
	defer close(l.done)
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	leases := l.c.Client.CoordinationV1().Leases(l.c.Namespace)
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), leaseRenew)
			if cur, err := leases.Get(ctx, l.name, metav1.GetOptions{}); err == nil && cur.Spec.HolderIdentity != nil && *cur.Spec.HolderIdentity == l.holder {
				now := metav1.NewMicroTime(time.Now())
				cur.Spec.RenewTime = &now
				_, _ = leases.Update(ctx, cur, metav1.UpdateOptions{})
			}
			cancel()
		}
	}
}

// Unlock releases the lock (deletes the Lease if it is still ours).
func (l *Lock) Unlock(ctx context.Context) {
	close(l.stop)
	<-l.done
	leases := l.c.Client.CoordinationV1().Leases(l.c.Namespace)
	if cur, err := leases.Get(ctx, l.name, metav1.GetOptions{}); err == nil && cur.Spec.HolderIdentity != nil && *cur.Spec.HolderIdentity == l.holder {
		rv := cur.ResourceVersion
		_ = leases.Delete(ctx, l.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	}
}

// LockError is returned when another deploy holds the lock (exit 5).
type LockError struct {
	Project, Namespace string
	Holder             deployer.LockHolder
	Age                time.Duration
}

func (e *LockError) Error() string {
	return fmt.Sprintf("%v: project %s in namespace %s is being deployed by %s (renewed %s ago); wait for it to finish (an abandoned lock expires after %s)",
		deployer.ErrLocked, e.Project, e.Namespace, e.Holder, e.Age.Round(time.Second), leaseDuration)
}

// Unwrap makes errors.Is(err, deployer.ErrLocked) true.
func (e *LockError) Unwrap() error { return deployer.ErrLocked }
