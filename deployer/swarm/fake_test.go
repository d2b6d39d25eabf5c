package swarm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// fakeSwarm is a manager engine kept in memory: nodes, networks, secrets,
// services (their tasks always run and converge), configs. calls records
// each change as "<op kind> <target>", the vocabulary of Plan.Ops.
type fakeSwarm struct {
	ManagerEngine
	mu       sync.Mutex
	nodes    []swarm.Node
	networks map[string]bool
	secrets  map[string]swarm.Secret
	services map[string]swarm.Service
	configs  map[string]swarm.Config
	calls    []string
	seq      int
}

func newFakeSwarm() *fakeSwarm {
	f := &fakeSwarm{networks: map[string]bool{}, secrets: map[string]swarm.Secret{}, services: map[string]swarm.Service{}, configs: map[string]swarm.Config{}}
	for i, h := range []string{"sw1", "sw2", "sw3"} {
		n := swarm.Node{ID: fmt.Sprintf("node%d", i+1), Description: swarm.NodeDescription{Hostname: h},
			Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: fmt.Sprintf("10.0.0.%d", i+1)}}
		n.Spec.Availability = swarm.NodeAvailabilityActive
		f.nodes = append(f.nodes, n)
	}
	return f
}

func (f *fakeSwarm) id() string { f.seq++; return fmt.Sprintf("id%d", f.seq) }

func (f *fakeSwarm) record(kind, target string) { f.calls = append(f.calls, kind+" "+target) }

func (f *fakeSwarm) Info(context.Context) (system.Info, error) {
	var i system.Info
	i.Swarm.ControlAvailable, i.Swarm.NodeID, i.Swarm.LocalNodeState = true, "node1", swarm.LocalNodeStateActive
	return i, nil
}

func (f *fakeSwarm) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]swarm.Node(nil), f.nodes...), nil
}

func (f *fakeSwarm) NodeUpdate(_ context.Context, id string, _ swarm.Version, spec swarm.NodeSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.nodes {
		if f.nodes[i].ID == id {
			f.nodes[i].Spec = spec
			f.record(OpNodeLabel, f.nodes[i].Description.Hostname)
		}
	}
	return nil
}

func (f *fakeSwarm) NetworkList(context.Context, network.ListOptions) ([]network.Summary, error) {
	var out []network.Summary
	for n := range f.networks {
		out = append(out, network.Summary{Name: n})
	}
	return out, nil
}

func (f *fakeSwarm) NetworkCreate(_ context.Context, name string, _ network.CreateOptions) (network.CreateResponse, error) {
	f.networks[name] = true
	f.record(OpNetworkCreate, name)
	return network.CreateResponse{ID: f.id()}, nil
}

func (f *fakeSwarm) SecretList(context.Context, swarm.SecretListOptions) ([]swarm.Secret, error) {
	var out []swarm.Secret
	for _, s := range f.secrets {
		out = append(out, s)
	}
	return out, nil
}

func (f *fakeSwarm) SecretCreate(_ context.Context, spec swarm.SecretSpec) (swarm.SecretCreateResponse, error) {
	s := swarm.Secret{ID: f.id(), Spec: spec}
	f.secrets[s.ID] = s
	f.record(OpSecretCreate, spec.Name)
	return swarm.SecretCreateResponse{ID: s.ID}, nil
}

func (f *fakeSwarm) SecretRemove(_ context.Context, id string) error {
	s, ok := f.secrets[id]
	if !ok {
		return cerrdefs.ErrNotFound
	}
	delete(f.secrets, id)
	f.record(OpSecretRemove, s.Spec.Name)
	return nil
}

func (f *fakeSwarm) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	var out []swarm.Service
	for _, s := range f.services {
		out = append(out, s)
	}
	return out, nil
}

// checkSecretIDs fails a spec naming a secret the swarm does not have.
func (f *fakeSwarm) checkSecretIDs(spec swarm.ServiceSpec) error {
	for _, r := range spec.TaskTemplate.ContainerSpec.Secrets {
		if s, ok := f.secrets[r.SecretID]; !ok || s.Spec.Name != r.SecretName {
			return fmt.Errorf("secret %s (%s) not found", r.SecretName, r.SecretID)
		}
	}
	return nil
}

func (f *fakeSwarm) ServiceCreate(_ context.Context, spec swarm.ServiceSpec, _ swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error) {
	if err := f.checkSecretIDs(spec); err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	s := swarm.Service{ID: f.id(), Spec: spec}
	f.services[spec.Name] = s
	f.record(OpServiceCreate, spec.Name)
	return swarm.ServiceCreateResponse{ID: s.ID}, nil
}

func (f *fakeSwarm) byID(id string) (swarm.Service, bool) {
	for _, s := range f.services {
		if s.ID == id || s.Spec.Name == id {
			return s, true
		}
	}
	return swarm.Service{}, false
}

func (f *fakeSwarm) ServiceUpdate(_ context.Context, id string, _ swarm.Version, spec swarm.ServiceSpec, _ swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	s, ok := f.byID(id)
	if !ok {
		return swarm.ServiceUpdateResponse{}, cerrdefs.ErrNotFound
	}
	if err := f.checkSecretIDs(spec); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	prev := s.Spec
	s.PreviousSpec, s.Spec = &prev, spec
	now := time.Now().Add(time.Second)
	s.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateCompleted, StartedAt: &now}
	f.services[spec.Name] = s
	f.record(OpServiceUpdate, spec.Name)
	return swarm.ServiceUpdateResponse{}, nil
}

func (f *fakeSwarm) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	s, ok := f.byID(id)
	if !ok {
		return s, nil, cerrdefs.ErrNotFound
	}
	return s, nil, nil
}

// TaskList: every service runs all its replicas.
func (f *fakeSwarm) TaskList(_ context.Context, o swarm.TaskListOptions) ([]swarm.Task, error) {
	var out []swarm.Task
	for _, name := range o.Filters.Get("service") {
		s, ok := f.byID(name)
		if !ok {
			continue
		}
		n := uint64(1)
		if r := s.Spec.Mode.Replicated; r != nil {
			n = *r.Replicas
		}
		for i := uint64(0); i < n; i++ {
			out = append(out, swarm.Task{ID: f.id(), NodeID: f.nodes[i%3].ID, Status: swarm.TaskStatus{State: swarm.TaskStateRunning}})
		}
	}
	return out, nil
}

func (f *fakeSwarm) ConfigList(_ context.Context, o swarm.ConfigListOptions) ([]swarm.Config, error) {
	var out []swarm.Config
	for _, c := range f.configs {
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeSwarm) ConfigCreate(_ context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	c := swarm.Config{ID: f.id(), Spec: spec}
	f.configs[spec.Name] = c
	return swarm.ConfigCreateResponse{ID: c.ID}, nil
}

func (f *fakeSwarm) ConfigRemove(_ context.Context, id string) error {
	delete(f.configs, id)
	return nil
}

// fakeImages is this machine's engine and every node's: each image present
// with a fixed ID, so nothing is sent.
type fakeImages struct {
	LocalEngine
	ids map[string]string
}

func (f *fakeImages) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if id, ok := f.ids[ref]; ok {
		return image.InspectResponse{ID: id}, nil
	}
	for _, id := range f.ids {
		if id == ref {
			return image.InspectResponse{ID: id}, nil
		}
	}
	return image.InspectResponse{}, cerrdefs.ErrNotFound
}

// loadSwarmStack loads compose (project "shop") with env.
func loadSwarmStack(t *testing.T, compose string, env ...string) *deployer.Stack {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(f, []byte(compose), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := deployer.Load(context.Background(), deployer.LoadOptions{Files: []string{f}, ProjectName: "shop", Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func opLines(ops []Op) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Kind+" "+op.Target)
	}
	return out
}

// TestPlanIsWhatSwarmUpDoes: over a sequence of changes to a stack (first
// up, no change, a new env value, a new secret value, a scale, a service
// added and a new image), the plan --dry-run prints is what swarm up then
// applies, operation for operation, and the engine saw exactly those
// changes.
func TestPlanIsWhatSwarmUpDoes(t *testing.T) {
	const compose = `
services:
  api:
    image: shop-api:1
    user: "1000:1000"
    environment: {MODE: "${MODE}"}
    secrets: [pw]
    depends_on: {db: {condition: service_healthy}}
    deploy:
      replicas: ${REPLICAS}
  db:
    image: postgres:15
    user: "999:999"
    volumes: [data:/var/lib/postgresql/data]
    secrets: [pw]
  worker:
    image: shop-api:1
    profiles: [extra]
volumes:
  data: {}
secrets:
  pw: {environment: PW}
`
	fs := newFakeSwarm()
	local := &fakeImages{ids: map[string]string{"shop-api:1": "sha256:aaa", "postgres:15": "sha256:ppp", "shop-api:2": "sha256:bbb"}}
	o := UpOptions{Local: local, ConfigDir: t.TempDir(), WaitTimeout: 5 * time.Second,
		DialNode: func(context.Context, string) (remote.ImageEngine, error) { return local, nil }}
	steps := []struct {
		name string
		env  []string
		want []string // op kinds expected, in order (a sanity check of the planner)
	}{
		{"first up", []string{"MODE=a", "PW=one", "REPLICAS=2"}, []string{OpNodeLabel, OpImagesSend, OpImagesSend, OpImagesSend, OpNetworkCreate, OpSecretCreate, OpServiceCreate, OpServiceCreate}},
		{"no change", []string{"MODE=a", "PW=one", "REPLICAS=2"}, []string{OpImagesSend, OpImagesSend, OpImagesSend}},
		{"env", []string{"MODE=b", "PW=one", "REPLICAS=2"}, []string{OpImagesSend, OpImagesSend, OpImagesSend, OpServiceUpdate}},
		{"secret", []string{"MODE=b", "PW=two", "REPLICAS=2"}, []string{OpImagesSend, OpImagesSend, OpImagesSend, OpSecretCreate, OpServiceUpdate, OpServiceUpdate}},
		// db's previous spec still names the first value: kept for a rollback.
		{"scale", []string{"MODE=b", "PW=two", "REPLICAS=3"}, []string{OpImagesSend, OpImagesSend, OpImagesSend, OpServiceUpdate}},
		{"secret again", []string{"MODE=b", "PW=three", "REPLICAS=3"}, []string{OpImagesSend, OpImagesSend, OpImagesSend, OpSecretCreate, OpServiceUpdate, OpServiceUpdate, OpSecretRemove}},
		{"profile", []string{"MODE=b", "PW=three", "REPLICAS=3", "COMPOSE_PROFILES=extra"}, []string{OpImagesSend, OpImagesSend, OpImagesSend, OpServiceCreate}},
	}
	for _, step := range steps {
		st := loadSwarmStack(t, compose, step.env...)
		ctx := context.Background()
		pl, err := DryRun(ctx, fs, st, o)
		if err != nil {
			t.Fatalf("%s: dry run: %v", step.name, err)
		}
		var kinds []string
		for _, op := range pl.Ops {
			kinds = append(kinds, op.Kind)
		}
		if !reflect.DeepEqual(kinds, step.want) {
			t.Errorf("%s: planned %v, want kinds %v", step.name, opLines(pl.Ops), step.want)
		}
		fs.calls = nil
		rep, err := Up(ctx, fs, st, o, nil)
		if err != nil {
			t.Fatalf("%s: up: %v", step.name, err)
		}
		if got, want := opLines(rep.Applied), opLines(pl.Ops); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: up applied\n  %v\nthe dry run printed\n  %v", step.name, got, want)
		}
		var changes []string
		for _, l := range opLines(pl.Ops) {
			if !strings.HasPrefix(l, OpImagesSend) {
				changes = append(changes, l)
			}
		}
		sort.Strings(changes)
		calls := append([]string(nil), fs.calls...)
		sort.Strings(calls)
		if strings.Join(calls, "\n") != strings.Join(changes, "\n") {
			t.Errorf("%s: the engine saw\n  %v\nthe plan said\n  %v", step.name, calls, changes)
		}
		if rep.Release == nil {
			t.Errorf("%s: no release recorded", step.name)
		}
	}
	rels, err := Releases(context.Background(), fs, "shop")
	if err != nil {
		t.Fatal(err)
	}
	// Six releases (no change adds none), five kept.
	if len(rels) != deployer.KeepReleases || rels[0].Number != 6 || rels[0].Services["worker"].ImageID != "sha256:aaa" {
		t.Errorf("releases %+v", rels)
	}
}

// TestDryRunBeforeASecretIsGenerated: a secret generated on the first up
// does not exist before it; the dry run shows its creation instead of
// failing, and creates nothing.
func TestDryRunBeforeASecretIsGenerated(t *testing.T) {
	st := loadSwarmStack(t, `
services:
  api:
    image: shop-api:1
    user: "1000:1000"
    secrets: [pw]
secrets:
  pw:
    environment: PW
    x-invdeploy-generate: true
`)
	fs := newFakeSwarm()
	local := &fakeImages{ids: map[string]string{"shop-api:1": "sha256:aaa"}}
	pl, err := DryRun(context.Background(), fs, st, UpOptions{Local: local, ConfigDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, op := range pl.Ops {
		found = found || (op.Kind == OpSecretCreate && op.Target == "shop_pw_<generated>" && op.MayChange)
	}
	if !found || len(fs.calls) != 0 {
		t.Fatalf("plan %v (want the generated secret's creation), engine calls %v (want none)", opLines(pl.Ops), fs.calls)
	}
}
