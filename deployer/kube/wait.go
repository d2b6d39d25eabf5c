package kube

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// badWaiting are the reasons a container waits that a rollout does not
// recover from by waiting longer.
var badWaiting = map[string]bool{
	"ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CrashLoopBackOff": true, "CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// RolloutError says why a workload did not roll out, with what its failing
// pods said.
type RolloutError struct {
	Service, Kind, Name string
	Reason              string
	Pods                []PodReport
}

// PodReport is a failing pod's last events and log lines.
type PodReport struct {
	Pod    string   `json:"pod"`
	State  string   `json:"state"`
	Events []string `json:"events"`
	Logs   []string `json:"logs"`
}

func (e *RolloutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s/%s): %s", e.Service, e.Kind, e.Name, e.Reason)
	for _, p := range e.Pods {
		fmt.Fprintf(&b, "\n  pod %s: %s", p.Pod, p.State)
		for _, ev := range p.Events {
			fmt.Fprintf(&b, "\n    event: %s", ev)
		}
		if len(p.Logs) > 0 {
			fmt.Fprintf(&b, "\n    last log lines:")
			for _, l := range p.Logs {
				fmt.Fprintf(&b, "\n      %s", l)
			}
		}
	}
	return b.String()
}

// UnhealthyError is a failed up (exit 4): the rollout that failed and what
// was restored.
type UnhealthyError struct {
	Rollout      *RolloutError
	RolledBackTo int
	Note         string
}

func (e *UnhealthyError) Error() string {
	msg := fmt.Sprintf("%v: %v", deployer.ErrUnhealthy, e.Rollout)
	if e.RolledBackTo > 0 {
		msg += fmt.Sprintf("\nrolled back to release %d: it serves again", e.RolledBackTo)
	}
	if e.Note != "" {
		msg += "\n" + e.Note
	}
	return msg
}

// Unwrap makes errors.Is(err, deployer.ErrUnhealthy) true.
func (e *UnhealthyError) Unwrap() error { return deployer.ErrUnhealthy }

// waitReady waits until a workload is rolled out: the controller saw its
// generation, every replica runs the new template and is ready, and the
// old ones are gone. A pod of it that cannot start (image pull, crash
// loop) or a progress deadline ends it at once; deadline ends it too.
func waitReady(ctx context.Context, c *Cluster, kind, name, service string, deadline time.Time) error {
	return waitRollout(ctx, c, kind, name, service, deadline, true)
}

// waitRollout is waitReady; failFast false waits out pods that cannot
// start (a rollback: the failed revision's pods are on their way out).
func waitRollout(ctx context.Context, c *Cluster, kind, name, service string, deadline time.Time, failFast bool) error {
	fail := func(reason string) error {
		return &RolloutError{Service: service, Kind: kind, Name: name, Reason: reason, Pods: podReports(context.WithoutCancel(ctx), c, service)}
	}
	for {
		done, reason, err := rolledOut(ctx, c, kind, name)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if reason != "" {
			return fail(reason)
		}
		if r := stuckPod(ctx, c, service); failFast && r != "" {
			return fail(r)
		}
		if time.Now().After(deadline) {
			return fail("not ready within the wait timeout (readiness never passed)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func rolledOut(ctx context.Context, c *Cluster, kind, name string) (bool, string, error) {
	switch kind {
	case "Deployment":
		d, err := c.Client.AppsV1().Deployments(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", fmt.Errorf("read %s/%s: %s", kind, name, oneLine(err))
		}
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentProgressing && cond.Status == corev1.ConditionFalse && cond.Reason == "ProgressDeadlineExceeded" {
				return false, "exceeded its progress deadline: " + cond.Message, nil
			}
		}
		want := replicasOf(d)
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want &&
			s.AvailableReplicas == want && s.UnavailableReplicas == 0, "", nil
	case "StatefulSet":
		st, err := c.Client.AppsV1().StatefulSets(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", fmt.Errorf("read %s/%s: %s", kind, name, oneLine(err))
		}
		want := replicasOf(st)
		s := st.Status
		return s.ObservedGeneration >= st.Generation && s.ReadyReplicas == want && s.UpdatedReplicas == want &&
			s.Replicas == want && s.CurrentRevision == s.UpdateRevision, "", nil
	}
	return false, "", fmt.Errorf("wait for %s/%s: unknown kind", kind, name)
}

func servicePods(ctx context.Context, c *Cluster, service string) []corev1.Pod {
	var project string
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelService + "=" + service})
	if err != nil {
		return nil
	}
	_ = project
	return pods.Items
}

// stuckPod names a pod of the service that cannot start, and why.
func stuckPod(ctx context.Context, c *Cluster, service string) string {
	for _, p := range servicePods(ctx, c, service) {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && badWaiting[w.Reason] {
				return fmt.Sprintf("pod %s: %s: %s", p.Name, w.Reason, oneLineStr(w.Message))
			}
		}
	}
	return ""
}

func oneLineStr(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// podReports are the not-ready pods' last events and log lines.
func podReports(ctx context.Context, c *Cluster, service string) []PodReport {
	var out []PodReport
	for _, p := range servicePods(ctx, c, service) {
		if p.DeletionTimestamp != nil || podReady(p) {
			continue
		}
		r := PodReport{Pod: p.Name, State: podState(p)}
		evs, err := c.Client.CoreV1().Events(c.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + p.Name})
		if err == nil {
			items := evs.Items
			sort.Slice(items, func(i, j int) bool { return eventTime(items[i]).Before(eventTime(items[j])) })
			if len(items) > 5 {
				items = items[len(items)-5:]
			}
			for _, e := range items {
				r.Events = append(r.Events, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, oneLineStr(e.Message)))
			}
		}
		r.Logs = lastLogLines(ctx, c, p, 20)
		out = append(out, r)
	}
	return out
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podState(p corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			return "waiting: " + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			return fmt.Sprintf("terminated: %s (exit %d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		case cs.State.Running != nil && !cs.Ready:
			return fmt.Sprintf("running, not ready (restarts %d)", cs.RestartCount)
		}
	}
	return string(p.Status.Phase)
}

// lastLogLines are a pod's last n log lines (of the crashed container
// when it restarted).
func lastLogLines(ctx context.Context, c *Cluster, p corev1.Pod, n int64) []string {
	if len(p.Spec.Containers) == 0 {
		return nil
	}
	previous := false
	for _, cs := range p.Status.ContainerStatuses {
		previous = cs.RestartCount > 0 && cs.State.Running == nil
	}
	read := func(prev bool) []string {
		rc, err := c.Client.CoreV1().Pods(c.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &n, Previous: prev}).Stream(ctx)
		if err != nil {
			return nil
		}
		defer rc.Close()
		b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
		s := strings.TrimRight(string(b), "\n")
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	if lines := read(previous); len(lines) > 0 || !previous {
		return lines
	}
	return read(false)
}

// replaceStuckPods deletes the StatefulSet's pods that are not ready and
// run another revision than its update revision.
func replaceStuckPods(ctx context.Context, c *Cluster, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Client.AppsV1().StatefulSets(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read StatefulSet/%s: %s", name, oneLine(err))
		}
		if st.Status.ObservedGeneration >= st.Generation || time.Now().After(deadline) {
			pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(st.Spec.Selector)})
			if err != nil {
				return fmt.Errorf("list pods of %s: %s", name, oneLine(err))
			}
			for _, p := range pods.Items {
				if !podReady(p) && p.Labels["controller-revision-hash"] != st.Status.UpdateRevision {
					_ = c.Client.CoreV1().Pods(c.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
				}
			}
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}
