package kube

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/invdeploy/invdeploy/deployer"
)

func bundled(t *testing.T) *deployer.Stack {
	t.Helper()
	st, err := deployer.Load(context.Background(), deployer.LoadOptions{WorkingDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func convertBundled(t *testing.T) (*Manifests, map[string]Manifest) {
	t.Helper()
	st := bundled(t)
	order, err := deployer.DependencyOrder(st.Project)
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{
		Images:  map[string]string{"api": "reg.example/invoicing-api@sha256:abc"},
		Users:   map[string][2]int{"api": {65532, 65532}, "db": {100, 102}},
		Exposed: map[string][]string{"db": {"5432/tcp"}, "api": {"8000/tcp"}},
		Inputs:  map[string]string{},
	}
	m, err := Convert(st.Project, "ns", order, map[string][]byte{"db_password": []byte("s3cret-canary-value")}, nil, in)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Manifest{}
	for _, it := range m.Items {
		by[key(it.Kind, it.Name)] = it
	}
	return m, by
}

// TestConvertBundled holds the conversion of the bundled stack to what the
// issue asks: the API a Deployment rolled with maxUnavailable 0, readiness
// on its health path and a preStop delay; the database a StatefulSet with
// its claim; the secret a file (never env), readable by the service's
// group only; the hardening of the local stack.
func TestConvertBundled(t *testing.T) {
	m, by := convertBundled(t)
	if strings.Join(m.Order, ",") != "db,api" {
		t.Fatalf("order %v", m.Order)
	}
	api, ok := by["Deployment/api"].Object.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("api is not a Deployment: %v", by)
	}
	ru := api.Spec.Strategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1 {
		t.Errorf("api strategy %+v", api.Spec.Strategy)
	}
	c := api.Spec.Template.Spec.Containers[0]
	if c.Image != "reg.example/invoicing-api@sha256:abc" {
		t.Errorf("api image %s", c.Image)
	}
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.IntValue() != 8000 {
		t.Errorf("api readiness %+v", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.Exec == nil || c.StartupProbe == nil {
		t.Errorf("api liveness/startup from the healthcheck: %+v %+v", c.LivenessProbe, c.StartupProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != preStopSeconds {
		t.Errorf("api preStop %+v", c.Lifecycle)
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != 65532 || sc.Capabilities == nil || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("api security context %+v", sc)
	}
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == "/run/secrets/db_password" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly || mount.SubPath != "value" {
		t.Fatalf("db_password not mounted as a file: %+v", c.VolumeMounts)
	}
	for _, v := range api.Spec.Template.Spec.Volumes {
		if v.Name == mount.Name && (v.Secret == nil || *v.Secret.DefaultMode != 0o440 || v.Secret.SecretName != "invoicing-secret-db-password") {
			t.Errorf("secret volume %+v", v)
		}
	}
	if fg := api.Spec.Template.Spec.SecurityContext.FSGroup; fg == nil || *fg != 65532 {
		t.Errorf("api fsGroup %v", fg)
	}
	db, ok := by["StatefulSet/db"].Object.(*appsv1.StatefulSet)
	if !ok {
		t.Fatalf("db is not a StatefulSet")
	}
	if len(db.Spec.VolumeClaimTemplates) != 1 || db.Spec.VolumeClaimTemplates[0].Name != "db-data" {
		t.Errorf("db claims %+v", db.Spec.VolumeClaimTemplates)
	}
	if db.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("db claims are not retained")
	}
	if *db.Spec.Template.Spec.Containers[0].SecurityContext.RunAsUser != 100 {
		t.Errorf("db user not the resolved uid")
	}
	// Its data lives in a subdirectory of the claim, whose root alone the
	// kubelet's fsGroup handling owns (and walks only on a mismatch).
	dbPod := db.Spec.Template.Spec
	if p := dbPod.SecurityContext.FSGroupChangePolicy; p == nil || *p != corev1.FSGroupChangeOnRootMismatch {
		t.Errorf("db fsGroupChangePolicy %v", p)
	}
	for _, cs := range [][]corev1.Container{dbPod.Containers, dbPod.InitContainers} {
		if len(cs) != 1 {
			t.Fatalf("db containers %d (init %d)", len(dbPod.Containers), len(dbPod.InitContainers))
		}
		var data *corev1.VolumeMount
		for i := range cs[0].VolumeMounts {
			if cs[0].VolumeMounts[i].Name == "db-data" {
				data = &cs[0].VolumeMounts[i]
			}
		}
		if data == nil || data.SubPath != DataSubPath || data.MountPath != "/var/lib/postgresql/data" {
			t.Errorf("%s: db data mount %+v", cs[0].Name, data)
		}
	}
	svc, ok := by["Service/db"].Object.(*corev1.Service)
	if !ok || svc.Spec.Ports[0].Port != 5432 {
		t.Errorf("db Service %+v", by["Service/db"])
	}
	// The value is in the Secret's data and nowhere else.
	for _, it := range m.Items {
		b, _ := json.Marshal(it.Object)
		has := strings.Contains(string(b), "s3cret-canary-value") || strings.Contains(string(b), "czNjcmV0LWNhbmFyeS12YWx1ZQ")
		if has != (it.Kind == "Secret") {
			t.Errorf("%s/%s holds the secret value: %v", it.Kind, it.Name, has)
		}
		if it.Kind == "Secret" {
			if _, ok := it.Object.(*corev1.Secret).Annotations[AnnotationHash]; ok {
				t.Errorf("a Secret carries a hash annotation")
			}
		}
	}
}

// TestConvertStable: the same inputs render the same hashes (an unchanged
// service is left alone), another image another hash.
func TestConvertStable(t *testing.T) {
	_, a := convertBundled(t)
	_, b := convertBundled(t)
	for k, m := range a {
		if m.Hash != b[k].Hash {
			t.Errorf("%s: hash differs between two renders", k)
		}
	}
}

// TestFieldsKubernetes: the bundled stack passes the field table on
// Kubernetes (with its warnings), and what is not honoured refuses.
func TestFieldsKubernetes(t *testing.T) {
	st := bundled(t)
	probs, warns := fieldProblems(st.Project)
	if len(probs) != 0 {
		t.Errorf("the bundled stack is refused on kubernetes: %v", probs)
	}
	if len(warns) == 0 {
		t.Errorf("pids_limit and restart on-failure are not warned about")
	}
	st2, err := deployer.Load(context.Background(), deployer.LoadOptions{Files: []string{writeCompose(t, "services:\n  web:\n    image: x\n    ipc: host\n    volumes: [./d:/d]\n    security_opt: [seccomp=unconfined]\n    x-invdeploy: {health_path: /healthz, backup: off, hosts: [a.example.com], rollout: recreate}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	probs, _ = fieldProblems(st2.Project)
	var got []string
	for _, p := range probs {
		got = append(got, p.Subject)
		if !strings.Contains(p.Message, "kubernetes") {
			t.Errorf("refusal does not name the target: %s", p)
		}
	}
	for _, want := range []string{"services.web.ipc", "services.web.volumes[0]", "services.web.security_opt", "services.web.x-invdeploy.hosts", "services.web.x-invdeploy.rollout"} {
		if !strings.Contains(strings.Join(got, " "), want) {
			t.Errorf("%s not refused: %v", want, got)
		}
	}
	for _, honoured := range []string{"x-invdeploy.health_path", "x-invdeploy.backup"} {
		if strings.Contains(strings.Join(got, " "), honoured) {
			t.Errorf("%s refused: %v", honoured, got)
		}
	}
}

func writeCompose(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := dir + "/compose.yaml"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
