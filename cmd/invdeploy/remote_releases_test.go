package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestRemoteRollbackPublishesLikeRemoteUp checks that remote rollback loads
// the bundled stack exactly as remote up does: the API on all interfaces of
// the host at --port, so a rollback never moves the API to loopback or to
// another port.
func TestRemoteRollbackPublishesLikeRemoteUp(t *testing.T) {
	t.Setenv("INVOICING_API_BIND", "")
	t.Setenv("INVOICING_API_PORT", "")
	t.Chdir(t.TempDir()) // no compose file here: the bundled stack
	g := &globalOptions{}
	ro := &remoteOptions{}
	published := func(name string, args ...string) string {
		t.Helper()
		var cmd = newRemoteUpCommand(g, ro)
		if name == "rollback" {
			cmd = newRemoteRollbackCommand(g, ro)
		}
		cmd.SetContext(t.Context())
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		port, err := cmd.Flags().GetInt("port")
		if err != nil {
			t.Fatalf("remote %s has no --port: %v", name, err)
		}
		var stack stackOptions
		st, err := loadRemoteStack(cmd, &stack, port)
		if err != nil {
			t.Fatalf("remote %s: load: %v", name, err)
		}
		for _, p := range st.Project.Services["api"].Ports {
			if p.Target == 8000 {
				return p.HostIP + ":" + p.Published
			}
		}
		t.Fatalf("remote %s: api publishes no port: %+v", name, st.Project.Services["api"].Ports)
		return ""
	}
	for _, args := range [][]string{nil, {"--port", "8123"}} {
		up, rb := published("up", args...), published("rollback", args...)
		if up != rb {
			t.Errorf("args %v: remote up publishes the API at %s, remote rollback at %s", args, up, rb)
		}
		want := "0.0.0.0:8000"
		if args != nil {
			want = "0.0.0.0:8123"
		}
		if rb != want {
			t.Errorf("args %v: remote rollback publishes the API at %s, want %s", args, rb, want)
		}
	}
	// INVOICING_API_PORT is honoured when --port is not given, by both.
	t.Setenv("INVOICING_API_PORT", "8999")
	if up, rb := published("up"), published("rollback"); up != "0.0.0.0:8999" || rb != up {
		t.Errorf("INVOICING_API_PORT=8999: remote up at %s, remote rollback at %s", up, rb)
	}
	rb := newRemoteRollbackCommand(g, ro)
	rb.SetContext(t.Context())
	if _, err := loadRemoteStack(rb, &stackOptions{}, 0); err == nil {
		t.Error("port 0 accepted")
	}
}

// TestReleasesSayDirty: releases (local and remote print the same table)
// marks a release built from uncommitted changes, also one recorded before
// the dirty field (its revision's suffix), and JSON carries the field.
func TestReleasesSayDirty(t *testing.T) {
	var out bytes.Buffer
	g := &globalOptions{stdout: &out}
	printReleases(g, []deployer.Release{
		{Number: 3, Revision: "0123456789ab", Dirty: true, Services: map[string]deployer.ReleaseService{}},
		{Number: 2, Revision: "0123456789ab-dirty-abcdefabcdef", Services: map[string]deployer.ReleaseService{}},
		{Number: 1, Revision: "0123456789ab", Services: map[string]deployer.ReleaseService{}},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("releases table:\n%s", out.String())
	}
	for i, want := range []bool{true, true, false} {
		if got := strings.Contains(lines[i+1], "(uncommitted changes)"); got != want {
			t.Errorf("release %d: says uncommitted changes %v, want %v\n%s", 3-i, got, want, lines[i+1])
		}
	}
	b, _ := json.Marshal(deployer.Release{Dirty: true})
	if !strings.Contains(string(b), `"dirty":true`) {
		t.Errorf("release JSON %s lacks dirty", b)
	}
}
