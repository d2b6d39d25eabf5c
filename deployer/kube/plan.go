package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

// Operations of a Kubernetes plan (deployer.Op, the one plan's operation,
// with kinds of this target).
const (
	// OpNamespace creates the namespace.
	OpNamespace deployer.OpKind = "namespace-create"
	// OpBuild builds a service's image on the local engine.
	OpBuild deployer.OpKind = "build"
	// OpPush pushes it to the registry (pods run it by digest).
	OpPush deployer.OpKind = "push"
	// OpApply creates or changes one object (server-side apply).
	OpApply deployer.OpKind = "apply"
	// OpWait waits until a service is ready: its dependents are applied
	// only then (depends_on), and up ends with every service ready.
	OpWait deployer.OpKind = "wait-ready"
	// OpDelete deletes an object of the project the stack no longer has.
	OpDelete deployer.OpKind = "delete"
)

// Plan is up's plan on a cluster: Ops is what Up performs, in order.
type Plan struct {
	Project   string         `json:"project"`
	Namespace string         `json:"namespace"`
	Cluster   string         `json:"cluster"`
	Ops       []deployer.Op  `json:"operations"`
	Services  []ServicePlan  `json:"services"`
	Warnings  []string       `json:"warnings,omitempty"`
	Report    *PreflightInfo `json:"preflight,omitempty"`

	st        *deployer.Stack
	order     []string
	manifests *Manifests
	in        Inputs
	secrets   map[string][]byte
	configs   map[string][]byte
	// objs[i] is the manifest of Ops[i] (apply ops), live the objects
	// found (kind/name -> hash, "" for Secrets).
	objs    []*Manifest
	prune   []liveObject
	nsMiss  bool
	builds  map[string]bool
	repos   map[string]string // service -> repository pushed to
	changed map[string]string // service -> why its workload changes ("" kept)
}

// ServicePlan sums up one service.
type ServicePlan struct {
	Service  string `json:"service"`
	Workload string `json:"workload"` // Deployment or StatefulSet
	Replicas int32  `json:"replicas"`
	Image    string `json:"image"`
	// Action is apply (created or changed: rolled) or keep.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// PreflightInfo is what preflight found out.
type PreflightInfo struct {
	ServerVersion string   `json:"server_version"`
	Warnings      []string `json:"warnings,omitempty"`
}

// Changes reports whether applying the plan would change anything.
func (p *Plan) Changes() bool {
	for _, op := range p.Ops {
		if op.Kind != OpWait {
			return true
		}
	}
	return false
}

// Manifests are the objects the plan applies (for -o yaml).
func (p *Plan) Manifests() []Manifest { return p.manifests.Items }

type liveObject struct {
	kind, name, hash, service string
	data                      map[string][]byte // Secrets
	rv                        string
	image                     string
	labels                    map[string]string
}

func key(kind, name string) string { return kind + "/" + name }

// observe lists the project's objects in the namespace.
func (c *Cluster) observe(ctx context.Context, project string) (map[string]liveObject, error) {
	sel := metav1.ListOptions{LabelSelector: LabelProject + "=" + project}
	out := map[string]liveObject{}
	put := func(kind string, m metav1.Object, extra func(*liveObject)) {
		o := liveObject{kind: kind, name: m.GetName(), hash: m.GetAnnotations()[AnnotationHash], service: m.GetLabels()[LabelService], rv: m.GetResourceVersion(), labels: m.GetLabels()}
		if extra != nil {
			extra(&o)
		}
		out[key(kind, o.name)] = o
	}
	ns := c.Namespace
	secs, err := c.Client.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	for i := range secs.Items {
		s := &secs.Items[i]
		if s.Labels[LabelKind] == "registry" || s.Labels[LabelKind] == "generated" || s.Labels[LabelKind] == "" {
			put("Secret", s, func(o *liveObject) { o.data = s.Data })
		}
	}
	cms, err := c.Client.CoreV1().ConfigMaps(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list configmaps: %w", err)
	}
	for i := range cms.Items {
		if cms.Items[i].Labels[LabelKind] == "release" {
			continue
		}
		put("ConfigMap", &cms.Items[i], nil)
	}
	svcs, err := c.Client.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for i := range svcs.Items {
		put("Service", &svcs.Items[i], nil)
	}
	deps, err := c.Client.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		put("Deployment", d, func(o *liveObject) { o.image = firstImage(d.Spec.Template.Spec.Containers) })
	}
	stss, err := c.Client.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %w", err)
	}
	for i := range stss.Items {
		s := &stss.Items[i]
		put("StatefulSet", s, func(o *liveObject) { o.image = firstImage(s.Spec.Template.Spec.Containers) })
	}
	return out, nil
}

// plan computes the operations of an up from the stack and what the
// cluster has. Images that up builds and pushes are predicted from the
// local image's digest in the registry when it has one; else the workload
// op says it changes if the pushed digest differs.
func (u *upper) plan(ctx context.Context) (*Plan, error) {
	st, c := u.st, u.c
	p := st.Project
	pl := &Plan{Project: p.Name, Namespace: c.Namespace, Cluster: c.Where(), Ops: []deployer.Op{}, st: st,
		builds: map[string]bool{}, repos: map[string]string{}, changed: map[string]string{}}
	order, err := deployer.DependencyOrder(p)
	if err != nil {
		return pl, err
	}
	pl.order = order
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, c.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		pl.nsMiss = true
		pl.Ops = append(pl.Ops, deployer.Op{Kind: OpNamespace, Target: "Namespace/" + c.Namespace, Reason: "the namespace does not exist"})
	} else if err != nil && !apierrors.IsForbidden(err) {
		return pl, fmt.Errorf("read namespace %s: %w", c.Namespace, err)
	}
	live := map[string]liveObject{}
	if !pl.nsMiss {
		if live, err = c.observe(ctx, p.Name); err != nil {
			return pl, err
		}
	}
	// Images: build (when needed) and push what has a build section.
	in := Inputs{Images: map[string]string{}, Users: u.users, Exposed: u.exposed, Scale: u.o.Scale, Inputs: map[string]string{}}
	for _, name := range order {
		s := p.Services[name]
		if s.Build == nil {
			continue
		}
		repo, ref, present, err := u.images.Predict(ctx, s)
		if err != nil {
			return pl, err
		}
		pl.repos[name] = repo
		if deployer.NeedsBuild(s, present, u.o.Build, false) {
			pl.builds[name] = true
			pl.Ops = append(pl.Ops, deployer.Op{Kind: OpBuild, Service: name, Target: s.Image, Reason: buildReason(present, u.o.Build)})
		}
		if ref != "" && !pl.builds[name] {
			// The local image is in that registry already: pods run it
			// by that digest, nothing to push.
			in.Images[name] = ref
			continue
		}
		pl.Ops = append(pl.Ops, deployer.Op{Kind: OpPush, Service: name, Target: repo, Reason: "pods run the image by digest from the registry"})
		in.Images[name] = repo + "@<digest of the push>"
	}
	if u.pullSecret != nil {
		in.PullSecret = u.pullSecret.Name
	}
	pl.secrets, pl.configs = u.secrets, u.configs
	// A Secret or ConfigMap that changes rolls the pods that read it: its
	// resourceVersion is known once applied.
	first, err := Convert(p, c.Namespace, order, u.secrets, u.configs, in)
	if err != nil {
		return pl, err
	}
	willApply := map[string]bool{}
	for _, it := range first.Items {
		lo, ok := live[key(it.Kind, it.Name)]
		switch {
		case it.Kind == "Secret":
			willApply[key(it.Kind, it.Name)] = !ok || !sameData(lo.data, it.Object)
		case it.Kind == "ConfigMap":
			willApply[key(it.Kind, it.Name)] = !ok || lo.hash != it.Hash
		}
	}
	for _, name := range order {
		in.Inputs[name] = inputsOf(p.Services[name], p.Name, func(kind, n string) (string, bool) {
			if willApply[key(kind, n)] {
				return "", false
			}
			lo, ok := live[key(kind, n)]
			return lo.rv, ok
		})
	}
	pl.in = in
	m, err := Convert(p, c.Namespace, order, u.secrets, u.configs, in)
	if err != nil {
		return pl, err
	}
	if u.pullSecret != nil {
		m.Items = append([]Manifest{*u.pullSecret}, m.Items...)
	}
	pl.manifests = m
	want := map[string]bool{}
	for i := range m.Items {
		it := &m.Items[i]
		want[key(it.Kind, it.Name)] = true
		lo, exists := live[key(it.Kind, it.Name)]
		reason := ""
		switch {
		case !exists:
			reason = "new"
		case it.Kind == "Secret":
			if !sameData(lo.data, it.Object) {
				reason = "its value changed"
			}
		case lo.hash != it.Hash && strings.Contains(in.Images[it.Service], "<digest") && sameBut(p, c.Namespace, order, u, in, it, lo):
			// Only the image may differ: the push decides.
		case lo.hash != it.Hash:
			reason = changeReason(it, lo, in)
		}
		svc := it.Service
		if it.Kind == "Deployment" || it.Kind == "StatefulSet" {
			pl.changed[svc] = reason
			if exists && reason == "" && strings.Contains(in.Images[svc], "<digest") {
				// The push decides: the op is applied only if the digest differs.
				pl.Ops = append(pl.Ops, deployer.Op{Kind: OpApply, Service: svc, Target: key(it.Kind, it.Name),
					If: "the pushed image differs from the one running", Else: deployer.ActionKeep})
				pl.objs = append(pl.objs, make([]*Manifest, len(pl.Ops)-len(pl.objs))...)
				pl.objs[len(pl.Ops)-1] = it
				pl.changed[svc] = "the pushed image may differ"
			}
		}
		if reason != "" {
			pl.Ops = append(pl.Ops, deployer.Op{Kind: OpApply, Service: svc, Target: key(it.Kind, it.Name), Reason: reason})
			pl.objs = append(pl.objs, make([]*Manifest, len(pl.Ops)-len(pl.objs))...)
			pl.objs[len(pl.Ops)-1] = it
		}
		if it.Kind == "Deployment" || it.Kind == "StatefulSet" {
			pl.Ops = append(pl.Ops, deployer.Op{Kind: OpWait, Service: svc, Target: key(it.Kind, it.Name), Reason: waitReason(p, svc, order)})
			pl.Services = append(pl.Services, servicePlan(it, in, pl.changed[svc]))
		}
	}
	// What the project has that the stack no longer has goes (claims
	// stay: down --volumes removes them).
	var gone []string
	for k, lo := range live {
		if !want[k] && !(lo.kind == "Secret" && lo.labels[LabelKind] == "generated") {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	for _, k := range gone {
		lo := live[k]
		pl.Ops = append(pl.Ops, deployer.Op{Kind: OpDelete, Service: lo.service, Target: k, Reason: "the stack no longer has it"})
		pl.prune = append(pl.prune, lo)
	}
	pl.objs = append(pl.objs, make([]*Manifest, len(pl.Ops)-len(pl.objs))...)
	return pl, nil
}

func buildReason(present, force bool) string {
	if !present {
		return "the image is not on the local engine"
	}
	if force {
		return "--build"
	}
	return "pull_policy build"
}

func waitReason(p *types.Project, svc string, order []string) string {
	var deps []string
	for _, n := range order {
		if _, ok := p.Services[n].DependsOn[svc]; ok {
			deps = append(deps, n)
		}
	}
	if len(deps) > 0 {
		return "ready (readiness probes pass) before " + strings.Join(deps, ", ") + " (depends_on)"
	}
	return "rolled out and ready"
}

func changeReason(it *Manifest, lo liveObject, in Inputs) string {
	if (it.Kind == "Deployment" || it.Kind == "StatefulSet") && lo.image != "" && lo.image != in.Images[it.Service] && in.Images[it.Service] != "" {
		return "image " + shortRef(lo.image) + " -> " + shortRef(in.Images[it.Service])
	}
	return "its definition changed"
}

func shortRef(ref string) string {
	if i := strings.Index(ref, "@sha256:"); i >= 0 && len(ref) > i+20 {
		return ref[:i+20]
	}
	return ref
}

func servicePlan(it *Manifest, in Inputs, reason string) ServicePlan {
	sp := ServicePlan{Service: it.Service, Workload: it.Kind, Image: in.Images[it.Service], Action: "keep", Reason: reason}
	if reason != "" {
		sp.Action = "apply"
	}
	switch o := it.Object.(type) {
	case interface{ GetReplicas() int32 }:
		sp.Replicas = o.GetReplicas()
	}
	sp.Replicas = replicasOf(it.Object)
	if sp.Image == "" {
		sp.Image = firstImageOf(it.Object)
	}
	return sp
}

// inputsOf is the AnnotationInputs value of a service: its Secrets and
// ConfigMaps with their resourceVersion ("" when one is new or changes:
// known once applied).
func inputsOf(s types.ServiceConfig, project string, rv func(kind, name string) (string, bool)) string {
	var parts []string
	for _, ref := range s.Secrets {
		v, ok := rv("Secret", SecretName(project, ref.Source))
		if !ok || v == "" {
			return ""
		}
		parts = append(parts, "secret/"+ref.Source+"="+v)
	}
	for _, ref := range s.Configs {
		v, ok := rv("ConfigMap", ConfigName(project, ref.Source))
		if !ok || v == "" {
			return ""
		}
		parts = append(parts, "config/"+ref.Source+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// sameBut reports whether workload it, rendered with the image the live
// object runs, is the live object (only a pushed digest could change it).
func sameBut(p *types.Project, ns string, order []string, u *upper, in Inputs, it *Manifest, lo liveObject) bool {
	alt := in
	alt.Images = map[string]string{}
	for k, v := range in.Images {
		alt.Images[k] = v
	}
	alt.Images[it.Service] = lo.image
	m, err := Convert(p, ns, order, u.secrets, u.configs, alt)
	if err != nil {
		return false
	}
	for _, a := range m.Items {
		if a.Kind == it.Kind && a.Name == it.Name {
			return a.Hash == lo.hash
		}
	}
	return false
}
