package kube

import (
	"context"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DownOptions control Down.
type DownOptions struct {
	// Volumes deletes the project's PersistentVolumeClaims (the data) and
	// its generated Secrets (the data's passwords) too.
	Volumes bool
}

// DownResult is what Down deleted.
type DownResult struct {
	Deleted []string `json:"deleted"`
	// Kept says what stayed and why.
	Kept []string `json:"kept,omitempty"`
}

// Down deletes exactly what up applied: the objects labelled with the
// project (workloads, Services, ConfigMaps, Secrets, release history, the
// lock). Claims stay, and so do generated Secrets (the data was set up
// with them), unless o.Volumes.
func Down(ctx context.Context, c *Cluster, project string, o DownOptions) (*DownResult, error) {
	if _, err := c.ServerVersion(ctx); err != nil {
		return nil, err
	}
	lock, err := TakeLock(ctx, c, project, "k8s down")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock(context.WithoutCancel(ctx))
	res := &DownResult{}
	sel := metav1.ListOptions{LabelSelector: LabelProject + "=" + project}
	ns := c.Namespace
	var objs [][2]string
	add := func(kind string, names []string) {
		for _, n := range names {
			objs = append(objs, [2]string{kind, n})
		}
	}
	deps, err := c.Client.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %s", oneLine(err))
	}
	for _, d := range deps.Items {
		add("Deployment", []string{d.Name})
	}
	stss, err := c.Client.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %s", oneLine(err))
	}
	for _, s := range stss.Items {
		add("StatefulSet", []string{s.Name})
	}
	svcs, err := c.Client.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list services: %s", oneLine(err))
	}
	for _, s := range svcs.Items {
		add("Service", []string{s.Name})
	}
	cms, err := c.Client.CoreV1().ConfigMaps(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list configmaps: %s", oneLine(err))
	}
	for _, cm := range cms.Items {
		add("ConfigMap", []string{cm.Name})
	}
	secs, err := c.Client.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %s", oneLine(err))
	}
	for _, s := range secs.Items {
		if s.Labels[LabelKind] == "generated" && !o.Volumes {
			res.Kept = append(res.Kept, "Secret/"+s.Name+" (generated: the data in the volumes was set up with it; down --volumes deletes both)")
			continue
		}
		add("Secret", []string{s.Name})
	}
	pvcs, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list claims: %s", oneLine(err))
	}
	for _, pv := range pvcs.Items {
		if o.Volumes {
			add("PersistentVolumeClaim", []string{pv.Name})
		} else {
			res.Kept = append(res.Kept, "PersistentVolumeClaim/"+pv.Name+" (the data: down --volumes deletes it)")
		}
	}
	for _, ob := range objs {
		if err := c.remove(ctx, ob[0], ob[1]); err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, key(ob[0], ob[1]))
	}
	// A claim stays (Terminating) while a pod of the deleted workloads
	// still uses it: down returns once the data is gone, so an up right
	// after starts on a fresh claim, not on the one going away.
	for _, ob := range objs {
		if ob[0] == "PersistentVolumeClaim" {
			if err := waitGone(ctx, c, ob[1], time.Now().Add(claimGoneTimeout)); err != nil {
				return res, err
			}
		}
	}
	sort.Strings(res.Kept)
	return res, nil
}

// claimGoneTimeout bounds down's wait for a deleted claim to go (its pod's
// termination: the grace period and a little).
const claimGoneTimeout = 2 * time.Minute

func waitGone(ctx context.Context, c *Cluster, claim string, deadline time.Time) error {
	for {
		_, err := c.Client.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, claim, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read PersistentVolumeClaim/%s: %s", claim, oneLine(err))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PersistentVolumeClaim/%s is deleted but still there after %s: a pod still uses it", claim, claimGoneTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
