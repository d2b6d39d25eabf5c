package swarm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
)

// loadFieldExample loads deployer.FieldExampleBase with f's example laid
// over it (nil: the base alone).
func loadFieldExample(t *testing.T, f *deployer.Field) *deployer.Stack {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"compose.yaml": deployer.FieldExampleBase, "web.env": "FROM_FILE=1\n", "web.labels": "from.file=1\n", "Dockerfile": "FROM scratch\n"}
	paths := []string{filepath.Join(dir, "compose.yaml")}
	if f != nil {
		files["example.yaml"] = f.ExampleFile()
		paths = append(paths, filepath.Join(dir, "example.yaml"))
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := deployer.Load(context.Background(), deployer.LoadOptions{WorkingDir: dir, Files: paths, Env: []string{"S=one", "T=two", "COMPOSE_PROFILES=extra"}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

// swarmView is everything swarm up makes of a stack: each service's spec
// (its edge's too), each network's create request, the swarm secrets.
func swarmView(t *testing.T, st *deployer.Stack) string {
	t.Helper()
	p := st.Project
	v := map[string]any{}
	values, err := deployer.PeekSecretValues(st, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]secretRef{}
	for name, val := range values {
		refs[name] = secretRef{Name: SecretName(p.Name, name, val)}
	}
	v["secrets"] = refs
	order, err := deployer.ServiceOrder(p)
	if err != nil {
		t.Fatal(err)
	}
	v["order"] = order
	for name, s := range p.Services {
		spec, _, err := serviceSpec(p, s, specInput{ImageID: "sha256:1", Secrets: refs, User: "1:1", Edge: needsEdge(s)})
		if err != nil {
			v[name] = "error: " + err.Error()
			continue
		}
		v[name] = spec
		if needsEdge(s) {
			es, err := edgeSpec(p, s, "sha256:2")
			if err != nil {
				t.Fatal(err)
			}
			v[name+" edge"] = es
		}
	}
	for key, nc := range p.Networks {
		v["network "+key] = []any{nc.Name, bool(nc.External), networkSpec(p.Name, key, nc.Driver, nc.Internal, nc.Labels, nc.DriverOpts)}
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFieldTableSwarm holds the swarm column of the field table to the
// swarm converter: a field marked honoured changes what swarm up makes of
// a stack when its example is set and converts without error; a field
// marked refused is refused by Check's field rule, naming the target.
func TestFieldTableSwarm(t *testing.T) {
	base := swarmView(t, loadFieldExample(t, nil))
	for i := range deployer.Fields {
		f := &deployer.Fields[i]
		if f.Example() == "" {
			continue
		}
		t.Run(f.Path, func(t *testing.T) {
			st := loadFieldExample(t, f)
			probs, err := deployer.FieldProblems(st.Project, deployer.TargetSwarm)
			if err != nil {
				t.Fatal(err)
			}
			if !f.Support(deployer.TargetSwarm).Honoured {
				named := false
				for _, p := range probs {
					named = named || strings.Contains(p.Message, "not honoured on swarm")
				}
				if !named {
					t.Errorf("%s is refused on swarm but Check does not refuse it: %v", f.Path, probs)
				}
				return
			}
			if len(probs) > 0 {
				t.Fatalf("the example of an honoured field is refused: %v", probs)
			}
			if strings.HasPrefix(f.Path, "services.*.build.") || f.Path == "services.*.profiles" || f.Path == "networks.*.attachable" {
				// Read by the build and the loader (see deployer's
				// TestFieldTable); stack networks are always attachable.
				return
			}
			got := swarmView(t, st)
			if strings.Contains(got, `"error: `) {
				t.Fatalf("conversion failed: %s", got)
			}
			if got == base {
				t.Errorf("%s is marked honoured on swarm but setting it changes nothing swarm up makes", f.Path)
			}
		})
	}
}
