package deployer

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fieldExampleFiles are the files the examples name.
var fieldExampleFiles = map[string]string{
	"web.env":    "FROM_FILE=1\n",
	"web.labels": "from.file=1\n",
	"Dockerfile": "FROM scratch\n",
}

// LoadFieldExample loads FieldExampleBase with f's example over it (nil
// example: the base alone).
func loadFieldExample(t *testing.T, f *Field) *Stack {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"compose.yaml": FieldExampleBase}
	for k, v := range fieldExampleFiles {
		files[k] = v
	}
	paths := []string{filepath.Join(dir, "compose.yaml")}
	if f != nil {
		files["example.yaml"] = f.ExampleFile()
		paths = append(paths, filepath.Join(dir, "example.yaml"))
	}
	writeFiles(t, dir, files)
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir, Files: paths, Env: []string{"S=one", "T=two", "COMPOSE_PROFILES=extra"}})
	if err != nil {
		t.Fatalf("load %s: %v\n%s", f.Path, err, files["example.yaml"])
	}
	return st
}

// localView is everything the local target makes of a stack: each
// service's container spec, scale and pull rule, each network's and
// volume's create request, the delivered secret and config values.
func localView(t *testing.T, st *Stack) string {
	t.Helper()
	p := st.Project
	v := map[string]any{"disabled": p.DisabledServiceNames()}
	for name, s := range p.Services {
		spec, err := convert(p, s, 1, "h")
		if err != nil {
			v[name] = "error: " + err.Error()
			continue
		}
		v[name] = spec
		v[name+" scale"] = s.GetScale()
		v[name+" pulls always"] = pullsAlways(s)
	}
	for key, nc := range p.Networks {
		v["network "+key] = []any{nc.Name, bool(nc.External), networkCreateOptions(p, key, nc)}
	}
	for key, vc := range p.Volumes {
		v["volume "+key] = []any{bool(vc.External), volumeCreateOptions(p, key)}
	}
	values, err := deliveryValues(p, t.TempDir())
	if err != nil {
		v["delivery"] = "error: " + err.Error()
	} else {
		v["delivery"] = values
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// observedElsewhere are rows read before the runtime spec: build.* by the
// builder (TestBuildTagsAndArgs and the build tests hold them), profiles by
// compose-go when the stack is loaded (the service is not in the project).
func observedElsewhere(path string) bool {
	return strings.HasPrefix(path, "services.*.build.") || path == "services.*.profiles"
}

// TestFieldTable holds the field table to the local converter: every row
// honoured locally changes what the local target makes of a stack when its
// example is set, every row refused is named by preflight with the target,
// and every field an example sets is either honoured or refused.
func TestFieldTable(t *testing.T) {
	base := localView(t, loadFieldExample(t, nil))
	for i := range Fields {
		f := &Fields[i]
		if f.Example() == "" {
			if f.Support(TargetLocal).Honoured || f.Support(TargetSwarm).Honoured {
				t.Errorf("%s is honoured somewhere but has no example", f.Path)
			}
			continue
		}
		t.Run(f.Path, func(t *testing.T) {
			st := loadFieldExample(t, f)
			set, err := SetFields(st.Project)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, s := range set {
				found = found || s.Path == f.Path
			}
			if !found {
				t.Fatalf("the example does not set %s; set: %v", f.Path, set)
			}
			probs, err := FieldProblems(st.Project, TargetLocal)
			if err != nil {
				t.Fatal(err)
			}
			named := false
			for _, p := range probs {
				named = named || (strings.Contains(p.Message, "not honoured on local") && strings.HasPrefix(p.Subject, strings.SplitN(f.Path, ".", 2)[0]))
			}
			if f.Support(TargetLocal).Honoured {
				// No third case: what the example sets is honoured or refused,
				// and a refusal names its field.
				for _, p := range probs {
					if _, ok := fieldIndex[pathOf(set, p.Subject)]; !ok {
						t.Errorf("refusal of a field not in the table: %v", p)
					}
				}
				if observedElsewhere(f.Path) {
					return
				}
				if got := localView(t, st); got == base {
					t.Errorf("%s is marked honoured on local but setting it changes nothing the local target makes", f.Path)
				}
				return
			}
			if !named {
				t.Errorf("%s is refused on local but preflight does not refuse it: %v", f.Path, probs)
			}
		})
	}
}

func pathOf(set []SetField, where string) string {
	for _, s := range set {
		if s.Where == where {
			return s.Path
		}
	}
	return ""
}

// TestFieldTableUnknownFieldRefused: a field no row knows refuses on every
// target, named.
func TestFieldTableUnknownFieldRefused(t *testing.T) {
	st := loadStack(t, "services:\n  web:\n    image: x\n    ipc: host\n    oom_kill_disable: true\n", nil)
	for _, target := range []Target{TargetLocal, TargetSwarm} {
		probs, err := FieldProblems(st.Project, target)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range probs {
			if !strings.Contains(p.Message, string(target)) || !strings.Contains(p.Message, "service web") {
				t.Errorf("%s: refusal does not name the target and service: %s", target, p)
			}
			got = append(got, p.Subject)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != "services.web.ipc,services.web.oom_kill_disable" {
			t.Errorf("%s: refused %v", target, got)
		}
	}
}

// TestFieldTableSorted keeps the table easy to read and merge: sorted by
// path, one row per path.
func TestFieldTableSorted(t *testing.T) {
	for i := 1; i < len(Fields); i++ {
		if Fields[i-1].Path >= Fields[i].Path {
			t.Errorf("rows out of order or twice: %s before %s", Fields[i-1].Path, Fields[i].Path)
		}
	}
	for p := range fieldExamples {
		if _, ok := fieldIndex[p]; !ok {
			t.Errorf("example for %s, which is no row", p)
		}
	}
}

// TestBundledStackHonouredLocally: the bundled stack sets only fields the
// local target honours.
func TestBundledStackHonouredLocally(t *testing.T) {
	st, _ := bundledStack(t, "INVOICING_API_PORT=18123")
	probs, err := FieldProblems(st.Project, TargetLocal)
	if err != nil || len(probs) != 0 {
		t.Fatalf("bundled stack refused locally: %v %v", probs, err)
	}
}

// TestKubernetesColumnRows: every row the kubernetes column names exists in
// the table (a typo would leave a field refused without anyone noticing).
func TestKubernetesColumnRows(t *testing.T) {
	for path := range kubernetesColumn {
		if _, ok := fieldIndex[path]; !ok {
			t.Errorf("kubernetes column names %s, which is not a row of Fields", path)
		}
	}
}
