package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/go-units"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels and annotations on every object invdeploy applies.
const (
	LabelProject   = "invdeploy.io/project"
	LabelService   = "invdeploy.io/service"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelKind says what an object is to invdeploy beyond its kind:
	// "generated" on a Secret whose value invdeploy generated (the
	// deployment's state: down keeps it while the volumes stay),
	// "release" on a release record, "registry" on the pull secret.
	LabelKind = "invdeploy.io/kind"
	// AnnotationHash is the SHA-256 of an object as invdeploy rendered it:
	// an object whose live annotation matches is left alone. (Never on a
	// Secret: its data is compared instead, so no digest of a secret value
	// is ever written where `kubectl get -o yaml` shows it.)
	AnnotationHash = "invdeploy.io/config-hash"
	// AnnotationInputs, on a pod template, names the Secrets and
	// ConfigMaps the pods read with their resourceVersion: a changed value
	// rolls the pods (they read files mounted with subPath, which the
	// kubelet does not refresh).
	AnnotationInputs = "invdeploy.io/inputs"
	// FieldManager is invdeploy's field manager for server-side apply.
	FieldManager = "invdeploy"
	managedBy    = "invdeploy"
	// DataSubPath is the subdirectory of a claim a non-root stateful
	// service's volume is mounted from (see podTemplate).
	DataSubPath = "data"
	// preStopSeconds is how long a terminating pod keeps serving while its
	// endpoint is removed from the Services (endpoints lag the pod's
	// termination; without the delay a rolling update drops requests).
	preStopSeconds = 5
	// defaultVolumeSize is what a named volume's claim asks for unless
	// x-invdeploy size says otherwise.
	defaultVolumeSize = "1Gi"
)

// Inputs are what the conversion needs beyond the compose model: what only
// the local engine, the registry or the cluster can say.
type Inputs struct {
	// Images: service -> the image reference pods run (repo@digest for
	// built images).
	Images map[string]string
	// Users: service -> numeric uid/gid of its compose user (resolved
	// through the image's /etc/passwd when it is a name).
	Users map[string][2]int
	// Exposed: service -> container ports its image exposes ("5432/tcp").
	Exposed map[string][]string
	// Scale overrides deploy.replicas per service (--scale).
	Scale map[string]int
	// PullSecret is the registry Secret pods pull with ("" none).
	PullSecret string
	// Inputs: service -> its pod template's AnnotationInputs value ("" on
	// a dry run before the Secrets exist).
	Inputs map[string]string
}

// Manifest is one object to apply with its identity.
type Manifest struct {
	// Kind is Secret, ConfigMap, Service, Deployment or StatefulSet.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Service is the compose service the object belongs to ("" shared).
	Service string `json:"service,omitempty"`
	// Object is the typed object (*corev1.Secret, ...).
	Object any `json:"-"`
	// Hash is AnnotationHash of the object ("" for Secrets).
	Hash string `json:"-"`
}

// Manifests are a stack's objects in apply order: Secrets and ConfigMaps,
// then per service in dependency order its Service and its workload.
type Manifests struct {
	Items []Manifest
	// Order is the services in dependency order.
	Order []string
}

// ResourceName is the Kubernetes name of a compose name: lower case, "_"
// and "." become "-" (compose allows them, DNS labels do not).
func ResourceName(s string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(s))
}

// SecretName is the Secret that holds a compose secret of project.
func SecretName(project, secret string) string { return ResourceName(project + "-secret-" + secret) }

// ConfigName is the ConfigMap that holds a compose config of project.
func ConfigName(project, config string) string { return ResourceName(project + "-config-" + config) }

func labels(project, service string) map[string]string {
	l := map[string]string{LabelProject: project, LabelManagedBy: managedBy}
	if service != "" {
		l[LabelService] = service
	}
	return l
}

func selector(project, service string) map[string]string {
	return map[string]string{LabelProject: project, LabelService: service}
}

// Stateful reports whether a service keeps data in a named volume: it runs
// as a StatefulSet with a claim per volume.
func Stateful(s types.ServiceConfig) bool {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source != "" {
			return true
		}
	}
	return false
}

// Convert renders the stack's objects for namespace ns. secrets and configs
// hold the values (secret values go only into Secret objects' data).
func Convert(p *types.Project, ns string, order []string, secrets, configs map[string][]byte, in Inputs) (*Manifests, error) {
	m := &Manifests{Order: order}
	for _, name := range sortedKeys(secrets) {
		sec := &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: SecretName(p.Name, name), Namespace: ns, Labels: labels(p.Name, "")},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"value": secrets[name]},
		}
		if def, ok := p.Secrets[name]; ok && generated(def) {
			sec.Labels[LabelKind] = "generated"
		}
		m.Items = append(m.Items, Manifest{Kind: "Secret", Name: sec.Name, Object: sec})
	}
	for _, name := range sortedKeys(configs) {
		cm := &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: ConfigName(p.Name, name), Namespace: ns, Labels: labels(p.Name, "")},
			BinaryData: map[string][]byte{"value": configs[name]},
		}
		if err := m.add("ConfigMap", "", cm); err != nil {
			return nil, err
		}
	}
	for _, name := range order {
		s := p.Services[name]
		svc, err := convertService(p, ns, s, in)
		if err != nil {
			return nil, err
		}
		if svc != nil {
			if err := m.add("Service", name, svc); err != nil {
				return nil, err
			}
		}
		pod, err := podTemplate(p, s, in)
		if err != nil {
			return nil, err
		}
		replicas := int32(1)
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			replicas = int32(*s.Deploy.Replicas)
		}
		if n, ok := in.Scale[name]; ok {
			replicas = int32(n)
		}
		meta := metav1.ObjectMeta{Name: ResourceName(name), Namespace: ns, Labels: labels(p.Name, name)}
		if Stateful(s) {
			claims, err := claimTemplates(p, s)
			if err != nil {
				return nil, err
			}
			sts := &appsv1.StatefulSet{
				TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
				ObjectMeta: meta,
				Spec: appsv1.StatefulSetSpec{
					Replicas:             &replicas,
					ServiceName:          ResourceName(name),
					Selector:             &metav1.LabelSelector{MatchLabels: selector(p.Name, name)},
					Template:             pod,
					VolumeClaimTemplates: claims,
					PodManagementPolicy:  appsv1.OrderedReadyPodManagement,
					UpdateStrategy:       appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
					// The claims stay when the StatefulSet goes (down
					// keeps the data unless --volumes).
					PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
						WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
						WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
					},
				},
			}
			if err := m.add("StatefulSet", name, sts); err != nil {
				return nil, err
			}
			continue
		}
		zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
		deadline := int32(120)
		history := int32(5)
		dep := &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: selector(p.Name, name)},
				Template: pod,
				// A new pod first, an old one stopped only once the new
				// one is ready: never fewer ready pods than asked for.
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one}},
				ProgressDeadlineSeconds: &deadline,
				RevisionHistoryLimit:    &history,
			},
		}
		if err := m.add("Deployment", name, dep); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// add appends an object with its hash annotation.
func (m *Manifests) add(kind, service string, obj metav1.Object) error {
	h, err := objectHash(obj)
	if err != nil {
		return err
	}
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[AnnotationHash] = h
	obj.SetAnnotations(a)
	m.Items = append(m.Items, Manifest{Kind: kind, Name: obj.GetName(), Service: service, Object: obj, Hash: h})
	return nil
}

func objectHash(obj any) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16], nil
}

func generated(s types.SecretConfig) bool {
	v, ok := s.Extensions["x-invdeploy-generate"]
	b, _ := v.(bool)
	return ok && b
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// servicePorts are the ports a service answers on inside the cluster:
// published and exposed ports, and those its image exposes.
func servicePorts(s types.ServiceConfig, in Inputs) ([]corev1.ServicePort, error) {
	seen := map[string]bool{}
	var out []corev1.ServicePort
	add := func(port uint32, proto string) {
		if proto == "" {
			proto = "tcp"
		}
		key := fmt.Sprintf("%d/%s", port, proto)
		if seen[key] {
			return
		}
		seen[key] = true
		out = append(out, corev1.ServicePort{
			Name:       fmt.Sprintf("%s-%d", proto, port),
			Port:       int32(port),
			TargetPort: intstr.FromInt32(int32(port)),
			Protocol:   corev1.Protocol(strings.ToUpper(proto)),
		})
	}
	for _, p := range s.Ports {
		add(p.Target, p.Protocol)
	}
	for _, e := range s.Expose {
		port, proto, _ := strings.Cut(e, "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("services.%s.expose: %q is not a port (ranges are refused on kubernetes)", s.Name, e)
		}
		add(uint32(n), proto)
	}
	for _, e := range in.Exposed[s.Name] {
		port, proto, _ := strings.Cut(e, "/")
		if n, err := strconv.ParseUint(port, 10, 16); err == nil {
			add(uint32(n), proto)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func convertService(p *types.Project, ns string, s types.ServiceConfig, in Inputs) (*corev1.Service, error) {
	ports, err := servicePorts(s, in)
	if err != nil || len(ports) == 0 {
		return nil, err
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: ResourceName(s.Name), Namespace: ns, Labels: labels(p.Name, s.Name)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector(p.Name, s.Name),
			Ports:    ports,
		},
	}, nil
}

func claimTemplates(p *types.Project, s types.ServiceConfig) ([]corev1.PersistentVolumeClaim, error) {
	var out []corev1.PersistentVolumeClaim
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeVolume || v.Source == "" {
			continue
		}
		size := defaultVolumeSize
		if def, ok := p.Volumes[v.Source]; ok {
			if x, ok := def.Extensions["x-invdeploy"].(map[string]any); ok {
				if sz, ok := x["size"].(string); ok {
					size = sz
				}
			}
		}
		q, err := resource.ParseQuantity(size)
		if err != nil {
			return nil, fmt.Errorf("volumes.%s.x-invdeploy.size: %v", v.Source, err)
		}
		out = append(out, corev1.PersistentVolumeClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{Name: ResourceName(v.Source), Labels: labels(p.Name, s.Name)},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
			},
		})
	}
	return out, nil
}

func podTemplate(p *types.Project, s types.ServiceConfig, in Inputs) (corev1.PodTemplateSpec, error) {
	c := corev1.Container{
		Name:            ResourceName(s.Name),
		Image:           in.Images[s.Name],
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         s.Entrypoint,
		Args:            s.Command,
		WorkingDir:      s.WorkingDir,
	}
	if c.Image == "" {
		c.Image = s.Image
	}
	for _, k := range sortedKeys(s.Environment) {
		v := s.Environment[k]
		if v == nil {
			continue
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: *v})
	}
	ports, err := servicePorts(s, in)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	for _, sp := range ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: shortPortName(sp), ContainerPort: sp.Port, Protocol: sp.Protocol})
	}
	pod := corev1.PodSpec{
		EnableServiceLinks:           boolPtr(false),
		AutomountServiceAccountToken: boolPtr(false),
	}
	if in.PullSecret != "" {
		pod.ImagePullSecrets = []corev1.LocalObjectReference{{Name: in.PullSecret}}
	}
	sc := &corev1.SecurityContext{}
	psc := &corev1.PodSecurityContext{}
	if ids, ok := in.Users[s.Name]; ok && s.User != "" {
		uid, gid := int64(ids[0]), int64(ids[1])
		sc.RunAsUser, sc.RunAsGroup = &uid, &gid
		if uid != 0 {
			sc.RunAsNonRoot = boolPtr(true)
		}
		// The volumes and the secret files belong to the service's group;
		// a volume whose root has it already is not walked again.
		psc.FSGroup = &gid
		policy := corev1.FSGroupChangeOnRootMismatch
		psc.FSGroupChangePolicy = &policy
	}
	if s.ReadOnly {
		sc.ReadOnlyRootFilesystem = boolPtr(true)
	}
	if s.Privileged {
		sc.Privileged = boolPtr(true)
	}
	for _, o := range s.SecurityOpt {
		if o == "no-new-privileges:true" || o == "no-new-privileges" || o == "no-new-privileges=true" {
			sc.AllowPrivilegeEscalation = boolPtr(false)
		}
	}
	if len(s.CapDrop) > 0 || len(s.CapAdd) > 0 {
		sc.Capabilities = &corev1.Capabilities{}
		for _, cp := range s.CapDrop {
			sc.Capabilities.Drop = append(sc.Capabilities.Drop, corev1.Capability(strings.TrimPrefix(strings.ToUpper(cp), "CAP_")))
		}
		for _, cp := range s.CapAdd {
			sc.Capabilities.Add = append(sc.Capabilities.Add, corev1.Capability(strings.TrimPrefix(strings.ToUpper(cp), "CAP_")))
		}
	}
	c.SecurityContext = sc
	pod.SecurityContext = psc
	mode := int32(0o400)
	if psc.FSGroup != nil {
		mode = 0o440
	}
	for _, ref := range s.Secrets {
		target := ref.Target
		if target == "" {
			target = ref.Source
		}
		if !path.IsAbs(target) {
			target = "/run/secrets/" + target
		}
		vol := "secret-" + ResourceName(ref.Source)
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: SecretName(p.Name, ref.Source), DefaultMode: &mode}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: target, SubPath: "value", ReadOnly: true})
	}
	cmode := int32(0o444)
	for _, ref := range s.Configs {
		target := ref.Target
		if target == "" {
			target = "/" + ref.Source
		}
		vol := "config-" + ResourceName(ref.Source)
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigName(p.Name, ref.Source)}, DefaultMode: &cmode}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: target, SubPath: "value", ReadOnly: true})
	}
	for i, t := range s.Tmpfs {
		dir, opts, _ := strings.Cut(t, ":")
		ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
		for _, o := range strings.Split(opts, ",") {
			if v, ok := strings.CutPrefix(o, "size="); ok {
				q, err := memQuantity(v)
				if err != nil {
					return corev1.PodTemplateSpec{}, fmt.Errorf("services.%s.tmpfs %q: %v", s.Name, t, err)
				}
				ed.SizeLimit = &q
			}
		}
		vol := fmt.Sprintf("tmpfs-%d", i)
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{EmptyDir: ed}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: dir})
	}
	if s.ShmSize > 0 {
		q := *resource.NewQuantity(int64(s.ShmSize), resource.BinarySI)
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &q}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "shm", MountPath: "/dev/shm"})
	}
	ids, hasUser := in.Users[s.Name]
	ownData := hasUser && s.User != "" && ids[0] != 0 && Stateful(s)
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source != "" {
			m := corev1.VolumeMount{Name: ResourceName(v.Source), MountPath: v.Target, ReadOnly: v.ReadOnly}
			if ownData {
				m.SubPath = DataSubPath
			}
			c.VolumeMounts = append(c.VolumeMounts, m)
		}
	}
	if ownData {
		// A non-root service that must own its data directory (initdb
		// chowns and chmods it 0700) keeps it in a subdirectory of the
		// claim: the kubelet gives the claim's root to fsGroup (group
		// rwx, setgid), recursively at every mount unless that root
		// already matches (OnRootMismatch), which would undo the
		// directory's mode (postgres then refuses to start). The
		// subdirectory, made by the kubelet as root, is chowned first by
		// an init container of the same image with CAP_CHOWN alone.
		var dirs []string
		var mounts []corev1.VolumeMount
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Source != "" && !v.ReadOnly {
				dirs = append(dirs, v.Target)
				mounts = append(mounts, corev1.VolumeMount{Name: ResourceName(v.Source), MountPath: v.Target, SubPath: DataSubPath})
			}
		}
		if len(dirs) > 0 {
			root := int64(0)
			pod.InitContainers = []corev1.Container{{
				Name: "volume-owner", Image: c.Image, ImagePullPolicy: c.ImagePullPolicy,
				Command:      append([]string{"chown", fmt.Sprintf("%d:%d", ids[0], ids[1])}, dirs...),
				VolumeMounts: mounts,
				SecurityContext: &corev1.SecurityContext{RunAsUser: &root, RunAsNonRoot: boolPtr(false), ReadOnlyRootFilesystem: boolPtr(true),
					AllowPrivilegeEscalation: boolPtr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN"}}},
			}}
		}
	}
	c.Resources = resources(s)
	if err := probes(&c, s, ports); err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	// Endpoints lag a pod's termination: it keeps serving for a moment
	// while the Services stop sending it new connections.
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStopSeconds}}}
	grace := int64(30)
	if s.StopGracePeriod != nil {
		grace = int64(math.Ceil(time.Duration(*s.StopGracePeriod).Seconds()))
	}
	grace += preStopSeconds
	pod.TerminationGracePeriodSeconds = &grace
	pod.Containers = []corev1.Container{c}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels(p.Name, s.Name)},
		Spec:       pod,
	}
	if v := in.Inputs[s.Name]; v != "" {
		tmpl.Annotations = map[string]string{AnnotationInputs: v}
	}
	return tmpl, nil
}

func shortPortName(sp corev1.ServicePort) string {
	// Container port names are at most 15 characters.
	return fmt.Sprintf("p%d", sp.Port)
}

func boolPtr(b bool) *bool { return &b }

func memQuantity(v string) (resource.Quantity, error) {
	n, err := units.RAMInBytes(v)
	if err != nil {
		return resource.Quantity{}, err
	}
	return *resource.NewQuantity(n, resource.BinarySI), nil
}

// resources: limits from deploy.resources.limits (or mem_limit and cpus);
// requests from reservations, else a small CPU share and the memory limit
// (memory is not overcommitted; CPU requests equal to the limits would
// leave no room on a small node for the surge pod of a rolling update).
func resources(s types.ServiceConfig) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	cpus, mem := float64(s.CPUS), int64(s.MemLimit)
	var resCPU float64
	var resMem int64
	if d := s.Deploy; d != nil {
		if l := d.Resources.Limits; l != nil {
			if l.NanoCPUs > 0 {
				cpus = float64(l.NanoCPUs)
			}
			if l.MemoryBytes > 0 {
				mem = int64(l.MemoryBytes)
			}
		}
		if rv := d.Resources.Reservations; rv != nil {
			resCPU, resMem = float64(rv.NanoCPUs), int64(rv.MemoryBytes)
		}
	}
	if s.MemReservation > 0 {
		resMem = int64(s.MemReservation)
	}
	if cpus > 0 {
		r.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(cpus*1000), resource.DecimalSI)
	}
	if mem > 0 {
		r.Limits[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	switch {
	case resCPU > 0:
		r.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(resCPU*1000), resource.DecimalSI)
	case cpus > 0:
		r.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(10, resource.DecimalSI)
	}
	switch {
	case resMem > 0:
		r.Requests[corev1.ResourceMemory] = *resource.NewQuantity(resMem, resource.BinarySI)
	case mem > 0:
		r.Requests[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	if len(r.Limits) == 0 {
		r.Limits = nil
	}
	if len(r.Requests) == 0 {
		r.Requests = nil
	}
	return r
}
