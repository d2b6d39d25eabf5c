package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// apply sends one object with server-side apply under invdeploy's field
// manager (dryRun: the API server validates it and changes nothing) and
// returns the object's resourceVersion.
func (c *Cluster) apply(ctx context.Context, m Manifest, dryRun bool) (string, error) {
	data, err := json.Marshal(m.Object)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", key(m.Kind, m.Name), err)
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ns := c.Namespace
	var obj metav1.Object
	switch m.Kind {
	case "Secret":
		obj, err = c.Client.CoreV1().Secrets(ns).Patch(ctx, m.Name, ktypes.ApplyPatchType, data, opts)
	case "ConfigMap":
		obj, err = c.Client.CoreV1().ConfigMaps(ns).Patch(ctx, m.Name, ktypes.ApplyPatchType, data, opts)
	case "Service":
		obj, err = c.Client.CoreV1().Services(ns).Patch(ctx, m.Name, ktypes.ApplyPatchType, data, opts)
	case "Deployment":
		obj, err = c.Client.AppsV1().Deployments(ns).Patch(ctx, m.Name, ktypes.ApplyPatchType, data, opts)
	case "StatefulSet":
		obj, err = c.Client.AppsV1().StatefulSets(ns).Patch(ctx, m.Name, ktypes.ApplyPatchType, data, opts)
	default:
		return "", fmt.Errorf("apply %s: unknown kind", key(m.Kind, m.Name))
	}
	if err != nil {
		// The API server's message never holds a Secret's data.
		return "", fmt.Errorf("apply %s: %s", key(m.Kind, m.Name), oneLine(err))
	}
	return obj.GetResourceVersion(), nil
}

// remove deletes one object (gone already is fine).
func (c *Cluster) remove(ctx context.Context, kind, name string) error {
	ns := c.Namespace
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	var err error
	switch kind {
	case "Secret":
		err = c.Client.CoreV1().Secrets(ns).Delete(ctx, name, opts)
	case "ConfigMap":
		err = c.Client.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
	case "Service":
		err = c.Client.CoreV1().Services(ns).Delete(ctx, name, opts)
	case "Deployment":
		err = c.Client.AppsV1().Deployments(ns).Delete(ctx, name, opts)
	case "StatefulSet":
		err = c.Client.AppsV1().StatefulSets(ns).Delete(ctx, name, opts)
	case "PersistentVolumeClaim":
		err = c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, opts)
	default:
		return fmt.Errorf("delete %s: unknown kind", key(kind, name))
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %s", key(kind, name), oneLine(err))
	}
	return nil
}

func sameData(live map[string][]byte, obj any) bool {
	s, ok := obj.(*corev1.Secret)
	if !ok || len(s.Data) != len(live) {
		return false
	}
	for k, v := range s.Data {
		if !bytes.Equal(live[k], v) {
			return false
		}
	}
	return true
}

func firstImage(cs []corev1.Container) string {
	if len(cs) == 0 {
		return ""
	}
	return cs[0].Image
}

func podSpecOf(obj any) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	}
	return nil
}

func firstImageOf(obj any) string {
	if t := podSpecOf(obj); t != nil {
		return firstImage(t.Spec.Containers)
	}
	return ""
}

func replicasOf(obj any) int32 {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if o.Spec.Replicas != nil {
			return *o.Spec.Replicas
		}
	case *appsv1.StatefulSet:
		if o.Spec.Replicas != nil {
			return *o.Spec.Replicas
		}
	}
	return 1
}

// validName checks a Kubernetes object name (a DNS-1035 label: Services
// need one).
func validName(n string) error {
	if errs := validation.IsDNS1035Label(n); len(errs) > 0 {
		return fmt.Errorf("%s", errs[0])
	}
	return nil
}
