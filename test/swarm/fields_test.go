package swarm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/invdeploy/invdeploy/deployer"
)

// fieldsBase is the stack the field cases are laid over: services that
// sleep, at 0 replicas unless a field says otherwise.
const fieldsBase = "name: swfields\nsecrets:\n  s: {environment: FIELDS_S}\nservices:\n  f0:\n    image: debian:bookworm\n    command: [sleep, infinity]\n    deploy: {replicas: 0}\n"

// testFields holds the field table (deployer.Fields) to the real swarm,
// field by field: each service field Swarm honours, set alone on its own
// service, is read back from the spec the manager stores (it differs from
// the spec of a service without it); each field Swarm refuses makes swarm
// up --dry-run exit 3 naming it and the target.
func testFields(t *testing.T, w *world) {
	mgr := w.bed.Nodes[0].URL()
	dir := t.TempDir()
	files := map[string]string{"web.env": "FROM_FILE=1\n", "web.labels": "from.file=1\n", "f0.env": "FROM_FILE=1\n"}
	var base, over strings.Builder
	base.WriteString(fieldsBase)
	over.WriteString("services:\n")
	byService := map[string]string{}
	n := 0
	for _, f := range deployer.Fields {
		ex := f.Example()
		if ex == "" || !f.Support(deployer.TargetSwarm).Honoured || !strings.HasPrefix(f.Path, "services.*.") || strings.HasPrefix(ex, "services:") {
			continue
		}
		switch {
		case strings.HasPrefix(f.Path, "services.*.build."), strings.HasPrefix(f.Path, "services.*.ports"),
			f.Path == "services.*.image", f.Path == "services.*.profiles":
			// Built here, published by the edge (testUp and testRolling hold
			// them), or no image to run; profiles are applied when loading.
			continue
		}
		n++
		svc := fmt.Sprintf("f%d", n)
		byService[svc] = f.Path
		replicas := "    deploy: {replicas: 0}\n"
		if strings.Contains(ex, "scale:") {
			replicas = "" // compose refuses scale beside a different deploy.replicas
		}
		fmt.Fprintf(&base, "  %s:\n    image: debian:bookworm\n    command: [sleep, infinity]\n%s", svc, replicas)
		fmt.Fprintf(&over, "  %s:\n    %s\n", svc, ex)
	}
	files["compose.yaml"] = base.String()
	files["fields.yaml"] = over.String()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"FIELDS_S=a-field-test-value"}
	t.Cleanup(func() { w.run(t, nil, "swarm", "down", "--host", mgr, "-p", "swfields") })
	w.must(t, 0, env, "swarm", "up", "--host", mgr, "-p", "swfields", "-f", filepath.Join(dir, "compose.yaml"), "-f", filepath.Join(dir, "fields.yaml"), "-q")

	spec := func(svc string) string {
		s, _, err := w.node(t, 0).ServiceInspectWithRaw(context.Background(), "swfields_"+svc, dswarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatalf("inspect %s: %v", svc, err)
		}
		sp := s.Spec
		sp.Name = ""
		sp.Labels = nil
		if cs := sp.TaskTemplate.ContainerSpec; cs != nil {
			delete(cs.Labels, deployer.LabelService)
		}
		b, err := json.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	plain := spec("f0")
	for svc, path := range byService {
		if spec(svc) == plain {
			t.Errorf("%s (service %s) is honoured on swarm by the table, but the service spec the manager stores does not show it", path, svc)
		}
	}
	t.Logf("%d honoured fields read back from the manager's service specs", len(byService))

	refused := 0
	for _, f := range deployer.Fields {
		if f.Example() == "" || f.Support(deployer.TargetSwarm).Honoured {
			continue
		}
		ex := filepath.Join(dir, "refused.yaml")
		if err := os.WriteFile(ex, []byte(strings.ReplaceAll(f.ExampleFile(), "web", "f0")), 0o600); err != nil {
			t.Fatal(err)
		}
		r := w.must(t, 3, append(env, "S=x"), "swarm", "up", "--host", mgr, "-p", "swfields", "-f", filepath.Join(dir, "compose.yaml"), "-f", ex, "--dry-run")
		last := f.Path[strings.LastIndex(f.Path, ".")+1:]
		if !strings.Contains(r.stderr, "not honoured on swarm") || !strings.Contains(r.stderr, last) {
			t.Errorf("%s: exit 3 without naming the field and the target:\n%s", f.Path, r.stderr)
		}
		refused++
	}
	t.Logf("%d refused fields: swarm up exit 3 naming each", refused)
}
