package kube

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// ServiceStatus is one service's workload as the cluster reports it.
type ServiceStatus struct {
	Service  string `json:"service"`
	Workload string `json:"workload"`
	Ready    int32  `json:"ready"`
	Desired  int32  `json:"desired"`
	Updated  int32  `json:"updated"`
	Image    string `json:"image"`
}

// Status lists the project's workloads; ErrNotFound when it has none.
func Status(ctx context.Context, c *Cluster, project string) ([]ServiceStatus, error) {
	sel := metav1.ListOptions{LabelSelector: LabelProject + "=" + project}
	var out []ServiceStatus
	deps, err := c.Client.AppsV1().Deployments(c.Namespace).List(ctx, sel)
	if err != nil {
		return nil, c.unreachable(err)
	}
	for _, d := range deps.Items {
		out = append(out, ServiceStatus{Service: d.Labels[LabelService], Workload: "Deployment/" + d.Name, Ready: d.Status.ReadyReplicas,
			Desired: replicasOf(&d), Updated: d.Status.UpdatedReplicas, Image: firstImage(d.Spec.Template.Spec.Containers)})
	}
	stss, err := c.Client.AppsV1().StatefulSets(c.Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %s", oneLine(err))
	}
	for _, s := range stss.Items {
		out = append(out, ServiceStatus{Service: s.Labels[LabelService], Workload: "StatefulSet/" + s.Name, Ready: s.Status.ReadyReplicas,
			Desired: replicasOf(&s), Updated: s.Status.UpdatedReplicas, Image: firstImage(s.Spec.Template.Spec.Containers)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: project %s has nothing in namespace %s", deployer.ErrNotFound, project, c.Namespace)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

// LogsOptions control Logs.
type LogsOptions struct {
	// Service limits to one service ("" all).
	Service string
	// Tail is how many lines of each pod first (0: 100).
	Tail int64
	// Follow keeps streaming.
	Follow bool
}

// Logs writes the project's pods' logs to w, each line prefixed with the
// pod's name.
func Logs(ctx context.Context, c *Cluster, project string, o LogsOptions, w io.Writer) error {
	sel := LabelProject + "=" + project
	if o.Service != "" {
		sel += "," + LabelService + "=" + o.Service
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return c.unreachable(err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("%w: no pods of project %s in namespace %s", deployer.ErrNotFound, project, c.Namespace)
	}
	tail := o.Tail
	if tail == 0 {
		tail = 100
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(pods.Items))
	for _, p := range pods.Items {
		wg.Add(1)
		go func(p corev1.Pod) {
			defer wg.Done()
			rc, err := c.Client.CoreV1().Pods(c.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail, Follow: o.Follow}).Stream(ctx)
			if err != nil {
				errs <- fmt.Errorf("logs of %s: %s", p.Name, oneLine(err))
				return
			}
			defer rc.Close()
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				mu.Lock()
				fmt.Fprintf(w, "%s | %s\n", p.Name, sc.Text())
				mu.Unlock()
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Rollback applies release n again (0: the deployed release before the
// current one) as a new release, under the lock, and waits for it.
func Rollback(ctx context.Context, c *Cluster, project string, n int, timeout time.Duration, out *deployer.Progress) (*Release, error) {
	if out == nil {
		out = deployer.Discard()
	}
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if _, err := c.ServerVersion(ctx); err != nil {
		return nil, err
	}
	lock, err := TakeLock(ctx, c, project, "k8s rollback")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock(context.WithoutCancel(ctx))
	rels, err := Releases(ctx, c, project)
	if err != nil {
		return nil, err
	}
	cur := current(rels)
	var target *Release
	for i := range rels {
		r := &rels[i]
		if n != 0 && r.Number == n {
			target = r
		}
		if n == 0 && cur != nil && r.Number < cur.Number && (r.Status == StatusSuperseded || r.Status == StatusDeployed) && target == nil {
			target = r
		}
	}
	if target == nil {
		if n != 0 {
			return nil, deployer.Invalidf("project %s has no release %d in namespace %s (see invdeploy k8s releases)", project, n, c.Namespace)
		}
		return nil, deployer.Invalidf("project %s has no earlier release to roll back to in namespace %s", project, c.Namespace)
	}
	if target.Status == StatusFailed {
		return nil, deployer.Invalidf("release %d failed: roll back to a release that was deployed", target.Number)
	}
	var failed []Manifest
	if cur != nil {
		failed = cur.manifests
	}
	out.Event("Rolling back to release %d", target.Number)
	if err := restore(ctx, c, target.manifests, failed, timeout, out); err != nil {
		if re, ok := err.(*RolloutError); ok {
			return nil, &UnhealthyError{Rollout: re, Note: fmt.Sprintf("the rollback to release %d did not become ready", target.Number)}
		}
		return nil, err
	}
	imgs := map[string]string{}
	for _, m := range target.manifests {
		if img := firstImageOf(m.Object); img != "" {
			imgs[m.Service] = img
		}
	}
	return recordRelease(ctx, c, project, Release{Command: fmt.Sprintf("rollback --to %d", target.Number), Status: StatusDeployed, Images: imgs}, target.manifests)
}
