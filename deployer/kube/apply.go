package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// Up deploys a stack to the cluster: check (preflight, exit 3), plan
// (from the stack and what the namespace has), apply (the executor
// performs exactly the plan's operations; a service's dependents are
// applied once it is ready) and wait (each workload rolled out: observed
// generation, updated and available replicas). A rollout that fails its
// readiness, crashes, cannot pull its image or outlasts --wait-timeout is
// rolled back to the release that ran before, and Up returns an
// *UnhealthyError (exit 4) with the failing pods' events and last log
// lines. Up holds the project's Lease for its changes (exit 5 when
// another deploy holds it) and records the release in the namespace.
func Up(ctx context.Context, c *Cluster, st *deployer.Stack, o UpOptions) (*UpResult, error) {
	start := time.Now()
	u := newUpper(c, st, o)
	res := &UpResult{Ops: []deployer.Op{}}
	if err := u.check(ctx); err != nil {
		return res, err
	}
	for _, w := range u.info.Warnings {
		u.out.Event("warning: %s", w)
	}
	p := st.Project
	pl, err := u.plan(ctx)
	res.Plan = pl
	if err != nil {
		return res, err
	}
	if pl.nsMiss {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return res, fmt.Errorf("create namespace %s: %s", c.Namespace, oneLine(err))
		}
		u.out.Event("Namespace %s created", c.Namespace)
	}
	lock, err := TakeLock(ctx, c, p.Name, "k8s up")
	if err != nil {
		return res, err
	}
	defer lock.Unlock(context.WithoutCancel(ctx))
	// Planned again under the lock: another deploy may have changed the
	// namespace meanwhile. This is the plan applied.
	if pl, err = u.plan(ctx); err != nil {
		return res, err
	}
	res.Plan = pl
	rels, err := Releases(ctx, c, p.Name)
	if err != nil {
		return res, err
	}
	prev := current(rels)
	a := &applier{u: u, pl: pl, in: pl.in, rvs: map[string]string{}}
	err = a.apply(ctx)
	res.Ops = a.done
	var rerr *RolloutError
	if errors.As(err, &rerr) {
		return res, u.rollBack(ctx, res, pl, prev, rerr)
	}
	if err != nil {
		return res, err
	}
	if pl.Changes() {
		rel, err := recordRelease(ctx, c, p.Name, Release{Command: orDefault(o.Command, "up"), Status: StatusDeployed, Images: a.images()}, a.items())
		if err != nil {
			u.out.Event("warning: the stack is up but its release was not recorded: %v", err)
		}
		res.Release = rel
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// applier performs one plan.
type applier struct {
	u    *upper
	pl   *Plan
	in   Inputs
	done []deployer.Op
	// rvs: kind/name -> resourceVersion of the Secrets and ConfigMaps
	// applied or found.
	rvs     map[string]string
	current *Manifests
}

func (a *applier) apply(ctx context.Context) error {
	c, out := a.u.c, a.u.out
	for i, op := range a.pl.Ops {
		result := deployer.Action("")
		switch op.Kind {
		case OpNamespace:
			// Created before the lock was taken (the Lease lives there).
		case OpBuild:
			out.Event("Building %s", op.Service)
			if err := a.u.images.Build(ctx, op.Service); err != nil {
				return err
			}
		case OpPush:
			ref, err := a.u.images.Push(ctx, op.Service)
			if err != nil {
				return err
			}
			a.in.Images[op.Service] = ref
			out.Event("Pushed %s", ref)
		case OpApply:
			m, err := a.render(ctx, a.pl.objs[i])
			if err != nil {
				return err
			}
			if op.If != "" && a.unchanged(ctx, m) {
				result = op.Else
				break
			}
			rv, err := c.apply(ctx, m, false)
			if err != nil {
				return err
			}
			if m.Kind == "Secret" || m.Kind == "ConfigMap" {
				a.rvs[key(m.Kind, m.Name)] = rv
			}
			out.Event("Applied %s (%s)", key(m.Kind, m.Name), orDefault(op.Reason, op.If))
			result = deployer.ActionCreate
		case OpWait:
			kind, name, _ := strings.Cut(op.Target, "/")
			t0 := time.Now()
			if err := waitReady(ctx, c, kind, name, op.Service, time.Now().Add(a.u.o.WaitTimeout)); err != nil {
				return err
			}
			out.Event("%s ready (%s)", op.Service, time.Since(t0).Round(100*time.Millisecond))
		case OpDelete:
			kind, name, _ := strings.Cut(op.Target, "/")
			if err := c.remove(ctx, kind, name); err != nil {
				return err
			}
			out.Event("Deleted %s (%s)", op.Target, op.Reason)
		}
		op.Result = result
		a.done = append(a.done, op)
	}
	return nil
}

// render is an apply op's object as of now: workloads are rendered again
// with the digests pushed and the Secrets' and ConfigMaps' versions applied.
func (a *applier) render(ctx context.Context, m *Manifest) (Manifest, error) {
	if m.Kind != "Deployment" && m.Kind != "StatefulSet" {
		return *m, nil
	}
	p := a.u.st.Project
	if err := a.readInputs(ctx); err != nil {
		return Manifest{}, err
	}
	a.in.Inputs[m.Service] = inputsOf(p.Services[m.Service], p.Name, func(kind, name string) (string, bool) {
		v, ok := a.rvs[key(kind, name)]
		return v, ok
	})
	ms, err := Convert(p, a.u.c.Namespace, a.pl.order, a.u.secrets, a.u.configs, a.in)
	if err != nil {
		return Manifest{}, err
	}
	a.current = ms
	for _, it := range ms.Items {
		if it.Kind == m.Kind && it.Name == m.Name {
			return it, nil
		}
	}
	return *m, nil
}

// readInputs reads the resourceVersions of the Secrets and ConfigMaps not
// applied by this up.
func (a *applier) readInputs(ctx context.Context) error {
	c, p := a.u.c, a.u.st.Project
	for name := range a.u.secrets {
		k := key("Secret", SecretName(p.Name, name))
		if _, ok := a.rvs[k]; ok {
			continue
		}
		s, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, SecretName(p.Name, name), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read %s: %s", k, oneLine(err))
		}
		a.rvs[k] = s.ResourceVersion
	}
	for name := range a.u.configs {
		k := key("ConfigMap", ConfigName(p.Name, name))
		if _, ok := a.rvs[k]; ok {
			continue
		}
		cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, ConfigName(p.Name, name), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read %s: %s", k, oneLine(err))
		}
		a.rvs[k] = cm.ResourceVersion
	}
	return nil
}

// unchanged reports whether the live object already is m (its hash).
func (a *applier) unchanged(ctx context.Context, m Manifest) bool {
	c := a.u.c
	var obj metav1.Object
	var err error
	switch m.Kind {
	case "Deployment":
		obj, err = c.Client.AppsV1().Deployments(c.Namespace).Get(ctx, m.Name, metav1.GetOptions{})
	case "StatefulSet":
		obj, err = c.Client.AppsV1().StatefulSets(c.Namespace).Get(ctx, m.Name, metav1.GetOptions{})
	default:
		return false
	}
	return err == nil && obj.GetAnnotations()[AnnotationHash] == m.Hash
}

// items are the objects as applied (for the release record).
func (a *applier) items() []Manifest {
	if a.current != nil {
		return a.current.Items
	}
	return a.pl.manifests.Items
}

func (a *applier) images() map[string]string {
	out := map[string]string{}
	for _, it := range a.items() {
		if img := firstImageOf(it.Object); img != "" {
			out[it.Service] = img
		}
	}
	return out
}

// rollBack restores the release that ran before a failed rollout and
// returns the *UnhealthyError of the failure.
func (u *upper) rollBack(ctx context.Context, res *UpResult, pl *Plan, prev *Release, rerr *RolloutError) error {
	ctx = context.WithoutCancel(ctx)
	c, p := u.c, u.st.Project
	uerr := &UnhealthyError{Rollout: rerr}
	u.out.Event("%s failed: %s", rerr.Service, rerr.Reason)
	if prev == nil {
		uerr.Note = "there is no earlier release to roll back to: the failed one stays"
		_, _ = recordRelease(ctx, c, p.Name, Release{Command: "up", Status: StatusFailed, Note: uerr.Note, Images: map[string]string{}}, pl.manifests.Items)
		return uerr
	}
	u.out.Event("Rolling back to release %d", prev.Number)
	if err := restore(ctx, c, prev.manifests, pl.manifests.Items, u.o.WaitTimeout, u.out); err != nil {
		uerr.Note = fmt.Sprintf("the rollback to release %d failed too: %v", prev.Number, err)
		return uerr
	}
	res.RolledBackTo = prev.Number
	uerr.RolledBackTo = prev.Number
	_, _ = recordRelease(ctx, c, p.Name, Release{Command: "up", Status: StatusFailed, Note: fmt.Sprintf("rolled back to release %d", prev.Number), Images: map[string]string{}}, pl.manifests.Items)
	return uerr
}

// restore applies a release's objects again (a rollback), deletes the
// workloads the failed objects added, and waits for every workload.
func restore(ctx context.Context, c *Cluster, items, failed []Manifest, timeout time.Duration, out *deployer.Progress) error {
	keep := map[string]bool{}
	for _, m := range items {
		keep[key(m.Kind, m.Name)] = true
		if _, err := c.apply(ctx, m, false); err != nil {
			return err
		}
	}
	for _, m := range failed {
		if (m.Kind == "Deployment" || m.Kind == "StatefulSet") && !keep[key(m.Kind, m.Name)] {
			if err := c.remove(ctx, m.Kind, m.Name); err != nil {
				return err
			}
		}
	}
	for _, m := range items {
		if m.Kind == "StatefulSet" {
			// A StatefulSet does not replace a pod of the failed revision
			// that never became ready: delete it, the controller makes it
			// again from the restored template.
			if err := replaceStuckPods(ctx, c, m.Name); err != nil {
				return err
			}
		}
	}
	for _, m := range items {
		if m.Kind == "Deployment" || m.Kind == "StatefulSet" {
			if err := waitRollout(ctx, c, m.Kind, m.Name, m.Service, time.Now().Add(timeout), false); err != nil {
				return err
			}
			out.Event("%s restored", m.Service)
		}
	}
	return nil
}
