package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Release history lives in the namespace, as Helm keeps its releases: one
// ConfigMap per release (invdeploy-<project>-release-<N>) with what it
// applied. Secrets are never in it: a release names its Secrets, their
// values stay in the Secrets.

// Release statuses.
const (
	StatusDeployed   = "deployed"
	StatusSuperseded = "superseded"
	StatusFailed     = "failed"
)

// LabelRelease carries a release record's number.
const LabelRelease = "invdeploy.io/release"

// keepReleases is how many release records a project keeps.
const keepReleases = 20

// Release is one deploy of a project.
type Release struct {
	Number  int       `json:"number"`
	Time    time.Time `json:"time"`
	Command string    `json:"command"`
	Status  string    `json:"status"`
	// Images: service -> the image its pods run.
	Images map[string]string `json:"images"`
	// Note says more (which release a failed one rolled back to).
	Note string `json:"note,omitempty"`

	manifests []Manifest
	cm        *corev1.ConfigMap
}

type storedObject struct {
	Kind    string          `json:"kind"`
	Service string          `json:"service,omitempty"`
	Object  json.RawMessage `json:"object"`
}

func releaseName(project string, n int) string {
	return ResourceName(fmt.Sprintf("invdeploy-%s-release-%d", project, n))
}

// Releases lists a project's releases, newest first.
func Releases(ctx context.Context, c *Cluster, project string) ([]Release, error) {
	cms, err := c.Client.CoreV1().ConfigMaps(c.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: LabelProject + "=" + project + "," + LabelKind + "=release"})
	if err != nil {
		return nil, fmt.Errorf("list releases: %s", oneLine(err))
	}
	var out []Release
	for i := range cms.Items {
		cm := &cms.Items[i]
		var r Release
		if err := json.Unmarshal([]byte(cm.Data["release.json"]), &r); err != nil {
			continue
		}
		var objs []storedObject
		if err := json.Unmarshal([]byte(cm.Data["manifests.json"]), &objs); err == nil {
			for _, o := range objs {
				m, err := decodeStored(o)
				if err == nil {
					r.manifests = append(r.manifests, m)
				}
			}
		}
		r.cm = cm
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number > out[j].Number })
	return out, nil
}

func decodeStored(o storedObject) (Manifest, error) {
	var obj any
	switch o.Kind {
	case "ConfigMap":
		obj = &corev1.ConfigMap{}
	case "Service":
		obj = &corev1.Service{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	default:
		return Manifest{}, fmt.Errorf("kind %s is not kept in a release", o.Kind)
	}
	if err := json.Unmarshal(o.Object, obj); err != nil {
		return Manifest{}, err
	}
	mo := obj.(metav1.Object)
	return Manifest{Kind: o.Kind, Name: mo.GetName(), Service: o.Service, Object: obj, Hash: mo.GetAnnotations()[AnnotationHash]}, nil
}

// recordRelease stores a release and marks the one it replaces
// superseded; the oldest records beyond keepReleases go.
func recordRelease(ctx context.Context, c *Cluster, project string, r Release, items []Manifest) (*Release, error) {
	prev, err := Releases(ctx, c, project)
	if err != nil {
		return nil, err
	}
	r.Number = 1
	if len(prev) > 0 {
		r.Number = prev[0].Number + 1
	}
	r.Time = time.Now().UTC()
	var objs []storedObject
	for _, it := range items {
		if it.Kind == "Secret" {
			continue // values stay in the Secrets
		}
		b, err := json.Marshal(it.Object)
		if err != nil {
			return nil, err
		}
		objs = append(objs, storedObject{Kind: it.Kind, Service: it.Service, Object: b})
	}
	mb, err := json.Marshal(objs)
	if err != nil {
		return nil, err
	}
	rb, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	l := labels(project, "")
	l[LabelKind] = "release"
	l[LabelRelease] = strconv.Itoa(r.Number)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: releaseName(project, r.Number), Labels: l},
		Data: map[string]string{"release.json": string(rb), "manifests.json": string(mb)}}
	if _, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("record release %d: %s", r.Number, oneLine(err))
	}
	if r.Status == StatusDeployed {
		for _, p := range prev {
			if p.Status == StatusDeployed {
				_ = setStatus(ctx, c, p, StatusSuperseded)
			}
		}
	}
	for i, p := range prev {
		if i+1 >= keepReleases {
			_ = c.Client.CoreV1().ConfigMaps(c.Namespace).Delete(ctx, p.cm.Name, metav1.DeleteOptions{})
		}
	}
	r.manifests = items
	return &r, nil
}

func setStatus(ctx context.Context, c *Cluster, r Release, status string) error {
	r.Status = status
	rb, err := json.Marshal(r)
	if err != nil {
		return err
	}
	cm := r.cm.DeepCopy()
	cm.Data["release.json"] = string(rb)
	_, err = c.Client.CoreV1().ConfigMaps(c.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// current is the release that runs: the newest deployed one.
func current(rels []Release) *Release {
	for i := range rels {
		if rels[i].Status == StatusDeployed {
			return &rels[i]
		}
	}
	return nil
}
