package remote

import (
	"context"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestRemoteRulesNeverOpenMonitoring: the bundled stack with both monitoring
// profiles, as remote up loads it (the API on all interfaces): the printed
// security-group rules open the API and SSH only, never Prometheus or
// Grafana, which stay on the host's 127.0.0.1 (remote tunnel reaches them).
func TestRemoteRulesNeverOpenMonitoring(t *testing.T) {
	t.Setenv("COMPOSE_PROFILES", "")
	st, err := deployer.Load(context.Background(), deployer.LoadOptions{
		WorkingDir: t.TempDir(), Profiles: []string{"monitoring", "dashboards"},
		Env: []string{"INVOICING_API_BIND=0.0.0.0", "INVOICING_DB_PASSWORD=a-strong-enough-password-1234", "INVOICING_GRAFANA_ADMIN_PASSWORD=another-strong-password-5678"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Project.Services["grafana"]; !ok {
		t.Fatalf("services %v: the profiles are not enabled", st.Project.ServiceNames())
	}
	f, err := Preflight(context.Background(), &fakeHost{}, st, PreflightOptions{AppCIDR: "198.51.100.0/24", SSHPort: 22})
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, r := range f.Rules {
		rules = append(rules, r.AWSCommand())
	}
	got := strings.Join(rules, "\n")
	if len(f.Rules) != 2 || !strings.Contains(got, "--port 8000 ") || !strings.Contains(got, "--port 22 ") {
		t.Fatalf("rules, want the API's 8000 and SSH only:\n%s", got)
	}
	for _, p := range f.Problems {
		if strings.Contains(p.Subject, "prometheus") || strings.Contains(p.Subject, "grafana") {
			t.Errorf("problem with a monitoring port: %+v", p)
		}
	}
}
