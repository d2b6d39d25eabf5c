package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// composeCompatFile is a small stack on debian:bookworm: web always, tools
// only with the tools profile, and old, which a later version of the file
// drops (its container becomes an orphan).
const composeCompatFile = `services:
  web:
    image: debian:bookworm
    command: ["sleep", "infinity"]
    init: true
  tools:
    image: debian:bookworm
    command: ["sleep", "infinity"]
    init: true
    profiles: [tools]
%s`

const composeCompatOld = `  old:
    image: debian:bookworm
    command: ["sleep", "infinity"]
    init: true
`

// services lists the services of the project's containers (not the rollout
// proxies), sorted.
func (e *localEnv) services(project string) string {
	e.t.Helper()
	var names []string
	for name := range e.containerIDs(project) {
		if strings.HasSuffix(name, "-proxy") {
			continue // a rolled service's proxy, not a service
		}
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(name, project+"-"), "-1"))
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// TestProfilesAndOrphans: profiles and orphans on the real engine, as docker
// compose does them (issue 10 items 5 and 6).
func TestProfilesAndOrphans(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	proj := fmt.Sprintf("wcmp%d", time.Now().UnixNano()%1000000)
	e.cleanup(proj)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	write := func(content string) {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(composeCompatFile, composeCompatOld))

	// A service with a profile starts only when the profile is enabled.
	r := e.mustRun(dir, "up", "-p", proj)
	if got := e.services(proj); got != "old web" {
		t.Fatalf("up without profiles: containers of %q, want old web", got)
	}
	if !strings.Contains(r.stderr, "Deploying project "+proj+" (compose.yaml in "+dir+"; name from -p)") {
		t.Fatalf("up does not say which project and why:\n%s", r.stderr)
	}
	e.mustRun(dir, "up", "-p", proj, "--profile", "tools")
	if got := e.services(proj); got != "old tools web" {
		t.Fatalf("up --profile tools: containers of %q, want old tools web", got)
	}
	e.extra = []string{"COMPOSE_PROFILES=tools"}
	r = e.mustRun(dir, "up", "-p", proj)
	e.extra = nil
	if !strings.Contains(r.stderr, proj+"-tools-1 unchanged") {
		t.Fatalf("COMPOSE_PROFILES=tools: tools not part of the up:\n%s", r.stderr)
	}

	// old leaves the file: up warns and names it; tools (profile not
	// enabled) is no orphan.
	write(fmt.Sprintf(composeCompatFile, ""))
	r = e.mustRun(dir, "up", "-p", proj)
	want := "Found orphan containers ([" + proj + "-old-1]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up."
	if !strings.Contains(r.stderr, "warning: "+want) {
		t.Fatalf("up does not warn about the orphan:\n%s", r.stderr)
	}
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, "orphan") && strings.Contains(line, "tools") {
			t.Fatalf("a profile-disabled service was called an orphan: %s", line)
		}
	}
	if got := e.services(proj); got != "old tools web" {
		t.Fatalf("up without --remove-orphans changed containers: %q", got)
	}

	// status names it too.
	r = e.mustRun(dir, "status", "-p", proj)
	if !strings.Contains(r.stderr, "warning: "+want) {
		t.Fatalf("status does not name the orphan:\n%s", r.stderr)
	}

	// down with the file keeps the orphan and names it ...
	r = e.mustRun(dir, "down", "-p", proj)
	if got := e.services(proj); got != "old" {
		t.Fatalf("down: containers of %q left, want old", got)
	}
	if !strings.Contains(r.stdout, "orphan containers "+proj+"-old-1 kept") {
		t.Fatalf("down does not name the kept orphan:\n%s", r.stdout)
	}
	// ... and up --remove-orphans removes it.
	e.mustRun(dir, "up", "-p", proj, "--remove-orphans")
	if got := e.services(proj); got != "web" {
		t.Fatalf("up --remove-orphans: containers of %q, want web", got)
	}
	e.mustRun(dir, "down", "-p", proj, "--remove-orphans")
	if n := e.objects(proj); n != 0 {
		t.Fatalf("down --remove-orphans left %d objects", n)
	}
}

// TestCheckPullsNothing: check asks the registry through the engine's
// distribution endpoint instead of pulling, and refuses an image no
// registry has (issue 10 item 7).
func TestCheckPullsNothing(t *testing.T) {
	e := newLocalEnv(t, "debian:bookworm")
	proj := fmt.Sprintf("wcmp%d", time.Now().UnixNano()%1000000)
	dir := t.TempDir()
	// A loopback registry nobody listens on: the answer comes at once.
	compose := "services:\n  web:\n    image: debian:bookworm\n  gone:\n    image: 127.0.0.1:9/wcmp-missing:1\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run(dir, "check", "-p", proj)
	if r.code != 3 {
		t.Fatalf("check: exit %d, want 3\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "image 127.0.0.1:9/wcmp-missing:1: services.gone: image is not present and cannot be pulled: the registry does not have it or cannot be reached") {
		t.Fatalf("check does not name the missing image:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "Pulling") || strings.Contains(r.stderr, "services.web") {
		t.Fatalf("check pulled, or refused the present image:\n%s", r.stderr)
	}
	if n := e.objects(proj); n != 0 {
		t.Fatalf("check created %d objects", n)
	}
}
