package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	authv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// fieldProblems are the field table's refusals on Kubernetes, and the
// values of honoured fields that cannot be honoured (a bind mount, a
// security option other than no-new-privileges); warnings say how the
// fields honoured only in part are taken.
func fieldProblems(p *types.Project) ([]deployer.Problem, []string) {
	probs, err := deployer.FieldProblems(p, deployer.TargetKubernetes)
	if err != nil {
		return []deployer.Problem{{Rule: "field", Subject: "compose", Message: err.Error()}}, nil
	}
	var warns []string
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		for i, v := range s.Volumes {
			if v.Type != types.VolumeTypeVolume || v.Source == "" {
				probs = append(probs, deployer.Problem{Rule: "field", Subject: fmt.Sprintf("services.%s.volumes[%d]", name, i),
					Message: fmt.Sprintf("service %s: a %s mount is not honoured on kubernetes: use a named volume (a PersistentVolumeClaim), a config or a secret", name, v.Type)})
			}
		}
		for _, o := range s.SecurityOpt {
			if o != "no-new-privileges:true" && o != "no-new-privileges" && o != "no-new-privileges=true" {
				probs = append(probs, deployer.Problem{Rule: "field", Subject: "services." + name + ".security_opt",
					Message: fmt.Sprintf("service %s: security_opt %q is not honoured on kubernetes (only no-new-privileges is)", name, o)})
			}
		}
		for _, t := range s.Tmpfs {
			_, opts, _ := strings.Cut(t, ":")
			for _, o := range strings.Split(opts, ",") {
				if o != "" && !strings.HasPrefix(o, "size=") {
					probs = append(probs, deployer.Problem{Rule: "field", Subject: "services." + name + ".tmpfs",
						Message: fmt.Sprintf("service %s: tmpfs option %q is not honoured on kubernetes (only size is)", name, o)})
				}
			}
		}
		probs = append(probs, extProblems(s)...)
		if s.PidsLimit != 0 {
			warns = append(warns, fmt.Sprintf("services.%s.pids_limit: Kubernetes has no per-pod pids limit; the nodes' kubelet podPidsLimit bounds it", name))
		}
		if s.Restart != "" && s.Restart != types.RestartPolicyAlways && s.Restart != types.RestartPolicyUnlessStopped {
			warns = append(warns, fmt.Sprintf("services.%s.restart %s: pods always restart on Kubernetes (with the kubelet's back-off, no retry cap)", name, s.Restart))
		}
	}
	return probs, warns
}

// extProblems refuses the x-invdeploy keys of a service that Kubernetes
// does not honour: the HTTPS edge's (hosts, hsts, tls_*), the rollout
// proxy's (rollout, drain_timeout and its limits) and continuous backups;
// health_path is honoured (the readiness probe), backup: off says nothing.
func extProblems(s types.ServiceConfig) []deployer.Problem {
	m, _ := s.Extensions[deployer.ExtService].(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var probs []deployer.Problem
	for _, k := range keys {
		switch v := m[k]; {
		case k == "health_path", k == "backup" && (v == nil || fmt.Sprint(v) == "off" || fmt.Sprint(v) == ""):
			continue
		}
		probs = append(probs, deployer.Problem{Rule: "field", Subject: fmt.Sprintf("services.%s.%s.%s", s.Name, deployer.ExtService, k),
			Message: fmt.Sprintf("service %s: %s.%s is not honoured on kubernetes (only health_path is): remove it, or deploy to one engine", s.Name, deployer.ExtService, k)})
	}
	return probs
}

// permission is one thing up does in the namespace.
type permission struct{ verb, group, resource string }

// upPermissions are the API calls up makes.
var upPermissions = func() []permission {
	var out []permission
	for _, r := range []permission{{"", "", "secrets"}, {"", "", "configmaps"}, {"", "", "services"}, {"", "apps", "deployments"}, {"", "apps", "statefulsets"}} {
		for _, v := range []string{"get", "list", "create", "patch", "delete"} {
			out = append(out, permission{v, r.group, r.resource})
		}
	}
	return append(out,
		permission{"list", "", "pods"}, permission{"get", "", "pods/log"}, permission{"list", "", "events"},
		permission{"delete", "", "pods"},
		permission{"get", "coordination.k8s.io", "leases"}, permission{"create", "coordination.k8s.io", "leases"},
		permission{"update", "coordination.k8s.io", "leases"}, permission{"delete", "coordination.k8s.io", "leases"})
}()

// access asks the API server whether the identity of the kubeconfig may
// do what up does in the namespace (SelfSubjectAccessReview).
func (u *upper) access(ctx context.Context) []deployer.Problem {
	c := u.c
	var denied []string
	ask := func(pm permission, ns string) error {
		r, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
			Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
				Namespace: ns, Verb: pm.verb, Group: pm.group, Resource: strings.Split(pm.resource, "/")[0], Subresource: subresource(pm.resource)}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !r.Status.Allowed {
			g := pm.group
			if g == "" {
				g = "core"
			}
			denied = append(denied, fmt.Sprintf("%s %s (%s)", pm.verb, pm.resource, g))
		}
		return nil
	}
	for _, pm := range upPermissions {
		if err := ask(pm, c.Namespace); err != nil {
			return []deployer.Problem{{Rule: "rbac", Subject: c.Namespace, Message: "ask the API server what this identity may do (SelfSubjectAccessReview): " + oneLine(err)}}
		}
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, c.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if err := ask(permission{"create", "", "namespaces"}, ""); err != nil {
			return []deployer.Problem{{Rule: "rbac", Subject: c.Namespace, Message: oneLine(err)}}
		}
	}
	if len(denied) == 0 {
		return nil
	}
	sort.Strings(denied)
	return []deployer.Problem{{Rule: "rbac", Subject: c.Namespace, Message: fmt.Sprintf("this identity may not %s in namespace %s: ask the cluster's admin for a Role with these verbs, or use another --context",
		strings.Join(denied, ", "), c.Namespace)}}
}

func subresource(r string) string {
	_, sub, _ := strings.Cut(r, "/")
	return sub
}

// foreignObjects refuses a stack whose objects' names are taken in the
// namespace by something that is not this project's.
func (u *upper) foreignObjects(ctx context.Context) []deployer.Problem {
	c, p := u.c, u.st.Project
	var probs []deployer.Problem
	check := func(kind, name string, get func() (metav1.Object, error)) {
		obj, err := get()
		if err != nil {
			return // absent (or unreadable: access says so)
		}
		if obj.GetLabels()[LabelProject] != p.Name {
			owner := obj.GetLabels()[LabelProject]
			what := "something invdeploy did not make"
			if owner != "" {
				what = "project " + owner
			}
			probs = append(probs, deployer.Problem{Rule: "kubernetes", Subject: key(kind, name),
				Message: fmt.Sprintf("it exists in namespace %s and belongs to %s: deploy to another namespace (-n) or remove it", c.Namespace, what)})
		}
	}
	ns := c.Namespace
	for _, name := range p.ServiceNames() {
		n := ResourceName(name)
		check("Service", n, func() (metav1.Object, error) {
			return c.Client.CoreV1().Services(ns).Get(ctx, n, metav1.GetOptions{})
		})
		check("Deployment", n, func() (metav1.Object, error) {
			return c.Client.AppsV1().Deployments(ns).Get(ctx, n, metav1.GetOptions{})
		})
		check("StatefulSet", n, func() (metav1.Object, error) {
			return c.Client.AppsV1().StatefulSets(ns).Get(ctx, n, metav1.GetOptions{})
		})
	}
	return probs
}
