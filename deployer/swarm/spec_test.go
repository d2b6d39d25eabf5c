package swarm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/invdeploy/invdeploy/deployer"
)

const specCompose = `
name: shop
services:
  api:
    image: shop-api:1
    user: "65532:65532"
    command: ["serve"]
    environment: {PORT: "8000"}
    ports: ["0.0.0.0:18700:8000"]
    secrets: [db_password]
    depends_on: {db: {condition: service_healthy}}
    healthcheck: {test: ["CMD", "/api", "healthcheck"], interval: 2s, retries: 3}
    read_only: true
    tmpfs: ["/tmp:size=16m"]
    cap_drop: [ALL]
    mem_limit: 256m
    pids_limit: 128
    restart: on-failure:5
    deploy:
      replicas: 2
      placement: {constraints: ["node.role==worker"], max_replicas_per_node: 2}
      update_config: {parallelism: 2, delay: 1s}
  db:
    image: postgres:15
    volumes: [data:/var/lib/postgresql/data]
    secrets: [{source: db_password, target: pw, mode: 0440}]
    shm_size: 128m
    deploy: {replicas: 3, update_config: {order: start-first}}
volumes:
  data: {}
secrets:
  db_password: {environment: DB_PASSWORD}
`

func loadSpecStack(t *testing.T) *deployer.Stack {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(f, []byte(specCompose), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := deployer.Load(context.Background(), deployer.LoadOptions{Files: []string{f}, Env: []string{"DB_PASSWORD=not-used-here"}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestServiceSpecStateless(t *testing.T) {
	st := loadSpecStack(t)
	p := st.Project
	secrets := map[string]secretRef{"db_password": {Name: "shop_db_password_abc", ID: "sid"}}
	spec, warns, err := serviceSpec(p, p.Services["api"], specInput{ImageID: "sha256:1111", Secrets: secrets, User: "65532:65532", Edge: true})
	if err != nil {
		t.Fatal(err)
	}
	cs := spec.TaskTemplate.ContainerSpec
	if spec.Name != "shop_api" || cs.Image != "sha256:1111" || spec.Labels[LabelImageRef] != "shop-api:1" {
		t.Errorf("name %q image %q label %q", spec.Name, cs.Image, spec.Labels[LabelImageRef])
	}
	if *spec.Mode.Replicated.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *spec.Mode.Replicated.Replicas)
	}
	if u := spec.UpdateConfig; u.Order != swarm.UpdateOrderStartFirst || u.FailureAction != swarm.UpdateFailureActionRollback || u.Parallelism != 2 || u.Delay != time.Second {
		t.Errorf("update config %+v: want start-first, rollback, parallelism 2, delay 1s", u)
	}
	if spec.EndpointSpec.Mode != swarm.ResolutionModeDNSRR || len(spec.EndpointSpec.Ports) != 0 {
		t.Errorf("endpoint %+v: want dnsrr and no ports (the edge publishes them)", spec.EndpointSpec)
	}
	if !cs.ReadOnly || cs.User != "65532:65532" || strings.Join(cs.CapabilityDrop, ",") != "ALL" {
		t.Errorf("hardening lost: %+v", cs)
	}
	r := spec.TaskTemplate.Resources.Limits
	if r.MemoryBytes != 256<<20 || r.Pids != 128 {
		t.Errorf("limits %+v", r)
	}
	if rp := spec.TaskTemplate.RestartPolicy; rp.Condition != swarm.RestartPolicyConditionOnFailure || rp.MaxAttempts == nil || *rp.MaxAttempts != 5 {
		t.Errorf("restart policy %+v", rp)
	}
	if len(cs.Mounts) != 1 || cs.Mounts[0].Target != "/tmp" || cs.Mounts[0].TmpfsOptions.SizeBytes != 16<<20 {
		t.Errorf("tmpfs %+v", cs.Mounts)
	}
	if len(cs.Secrets) != 1 || cs.Secrets[0].File.Name != "db_password" || cs.Secrets[0].File.UID != "65532" || cs.Secrets[0].File.Mode != 0o400 || cs.Secrets[0].SecretID != "sid" {
		t.Errorf("secret %+v", cs.Secrets[0].File)
	}
	pl := spec.TaskTemplate.Placement
	if strings.Join(pl.Constraints, ";") != "node.role==worker" || pl.MaxReplicas != 2 {
		t.Errorf("placement %+v", pl)
	}
	if spec.Labels[deployer.LabelDependsOn] != "db:service_healthy" {
		t.Errorf("depends_on label %q", spec.Labels[deployer.LabelDependsOn])
	}
	if len(warns) != 0 {
		t.Errorf("warnings %q: want none", warns)
	}

	// Without the edge the service publishes host-mode and stops first.
	spec, _, err = serviceSpec(p, p.Services["api"], specInput{ImageID: "sha256:1111", Secrets: secrets, User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}
	if ports := spec.EndpointSpec.Ports; len(ports) != 1 || ports[0].PublishMode != swarm.PortConfigPublishModeHost || ports[0].PublishedPort != 18700 {
		t.Errorf("ports %+v: want 18700 host mode", ports)
	}
	if spec.UpdateConfig.Order != swarm.UpdateOrderStopFirst {
		t.Errorf("host-mode ports with start-first: order %s", spec.UpdateConfig.Order)
	}
}

func TestServiceSpecStateful(t *testing.T) {
	st := loadSpecStack(t)
	p := st.Project
	secrets := map[string]secretRef{"db_password": {Name: "x", ID: "sid"}}
	spec, warns, err := serviceSpec(p, p.Services["db"], specInput{ImageID: "sha256:2222", Secrets: secrets, User: "999:999", PinTo: PinLabel("shop", "db")})
	if err != nil {
		t.Fatal(err)
	}
	if *spec.Mode.Replicated.Replicas != 1 {
		t.Errorf("a service with a named volume runs %d replicas", *spec.Mode.Replicated.Replicas)
	}
	if spec.UpdateConfig.Order != swarm.UpdateOrderStopFirst {
		t.Errorf("stateful order %s, want stop-first", spec.UpdateConfig.Order)
	}
	if c := spec.TaskTemplate.Placement.Constraints; len(c) != 1 || c[0] != "node.labels.io.invdeploy.pin.shop.db==true" {
		t.Errorf("constraints %v", c)
	}
	m := spec.TaskTemplate.ContainerSpec.Mounts
	if len(m) != 2 || m[0].Source != "shop_data" || m[0].Type != "volume" || m[0].VolumeOptions.Labels[deployer.LabelVolume] != "data" {
		t.Errorf("mounts %+v", m)
	}
	if len(m) == 2 && (m[1].Target != "/dev/shm" || m[1].TmpfsOptions.SizeBytes != 128<<20) {
		t.Errorf("shm_size: mount %+v, want a 128 MiB tmpfs at /dev/shm", m[1])
	}
	if f := spec.TaskTemplate.ContainerSpec.Secrets[0].File; f.Name != "pw" || f.Mode != 0o440 || f.UID != "999" {
		t.Errorf("secret file %+v", f)
	}
	joined := strings.Join(warns, "\n")
	for _, want := range []string{"1 replica", "start-first"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings lack %q:\n%s", want, joined)
		}
	}
}

func TestSecretNameIsContentAddressed(t *testing.T) {
	a, b := SecretName("shop", "pw", []byte("one")), SecretName("shop", "pw", []byte("two"))
	if a == b || !strings.HasPrefix(a, "shop_pw_") || len(a) != len("shop_pw_")+12 {
		t.Errorf("names %q %q", a, b)
	}
	if SecretName("shop", "pw", []byte("one")) != a {
		t.Error("not deterministic")
	}
	if strings.Contains(a, "one") {
		t.Error("the name holds the value")
	}
}
