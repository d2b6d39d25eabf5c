package deployer

import (
	"testing"

	"github.com/docker/docker/api/types/container"
)

func TestStatusFromListText(t *testing.T) {
	for _, tt := range []struct {
		state, text         string
		ok                  bool
		wantState, wantHlth string
	}{
		{"running", "Up 2 minutes (healthy)", true, "running", "healthy"},
		{"running", "Up 1 second (health: starting)", true, "running", "starting"},
		{"running", "Up 3 hours (unhealthy)", true, "running", "unhealthy"},
		{"running", "Up 5 seconds", true, "running", ""},
		{"running", "Up 5 seconds (Paused)", false, "", ""},
		{"exited", "Exited (0) 3 seconds ago", true, "completed", ""},
		{"exited", "Exited (137) 1 minute ago", true, "exited", ""},
		{"exited", "something else", false, "", ""},
		{"restarting", "Restarting (1) 2 seconds ago", false, "", ""},
		{"created", "Created", true, "created", ""},
	} {
		st := ContainerStatus{State: tt.state}
		ok := fromList(&st, container.Summary{State: tt.state, Status: tt.text})
		if ok != tt.ok || (ok && (st.State != tt.wantState || st.Health != tt.wantHlth)) {
			t.Errorf("%s %q: ok %v state %q health %q", tt.state, tt.text, ok, st.State, st.Health)
		}
	}
}
