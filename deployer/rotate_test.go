package deployer

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRotateSecretSetsVerifierStoresAndRolls(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	stored := filepath.Join(cfgDir, "db_password")
	old, _ := os.ReadFile(stored)

	res, err := d.RotateSecret(ctx, st, "db_password", RotateOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	now, _ := os.ReadFile(stored)
	if fi, err := os.Stat(stored); err != nil || fi.Mode().Perm() != 0o600 || len(now) < 32 || string(now) == string(old) {
		t.Fatalf("stored value not replaced by a new 0600 one (%v)", err)
	}
	if _, err := os.Stat(stored + ".new"); err == nil {
		t.Fatal("the .new file was left behind")
	}
	in := f.execInput.String()
	if !strings.HasPrefix(in, `ALTER ROLE "invoicing" PASSWORD 'SCRAM-SHA-256$4096:`) || strings.Contains(in, string(now)) {
		t.Fatalf("psql input is not an ALTER ROLE with a SCRAM verifier (or holds the password)")
	}
	for _, c := range f.mutations() {
		if strings.Contains(c, string(now)) || strings.Contains(c, string(old)) {
			t.Fatal("a password appears in an engine call")
		}
	}
	if f.countCalls("exec inv-db-1 psql") != 1 {
		t.Fatalf("psql not run once in the db container: %v", f.mutations())
	}
	// The database keeps running with its copy rewritten in place; the
	// API (no proxy here) is recreated for the changed secret.
	for _, s := range res.Steps {
		want := map[string]Action{"db": ActionKeep, "api": ActionRecreate}[s.Service]
		if s.Action != want || (s.Service == "api" && !strings.HasPrefix(s.Reason, "secret db_password changed")) {
			t.Fatalf("step %+v, want the db kept and the api recreated for the changed secret", s)
		}
	}
	if f.countCalls("stop inv-db-1") != 0 || f.countCalls("remove inv-db-1") != 0 {
		t.Fatalf("the database was restarted: %v", f.mutations())
	}
	for _, c := range f.containers {
		if c.cfg.Labels[LabelService] == "" {
			continue // the engine's store of generated secrets
		}
		if file, _ := f.delivered(c, "/run/secrets/db_password"); file.content != string(now) {
			t.Fatalf("%s did not get the new password", c.name)
		}
	}
	if got, _ := d.readState(ctx, "inv"); string(got["db_password"]) != string(now) {
		t.Fatal("the engine does not keep the rotated password")
	}
}

func TestRotateSecretRefusals(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.RotateSecret(ctx, st, "db_password", RotateOptions{ConfigDir: cfgDir}); err == nil || !strings.Contains(err.Error(), "run up first") {
		t.Fatalf("rotate before up: %v", err)
	}
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	stored := filepath.Join(cfgDir, "db_password")
	old, _ := os.ReadFile(stored)
	f.execExit = 2
	if _, err := d.RotateSecret(ctx, st, "db_password", RotateOptions{ConfigDir: cfgDir}); err == nil || !strings.Contains(err.Error(), "the password is unchanged") {
		t.Fatalf("failing psql: %v", err)
	}
	if now, _ := os.ReadFile(stored); string(now) != string(old) {
		t.Fatal("a failed ALTER ROLE changed the stored password")
	}
	if _, err := os.Stat(stored + ".new"); err == nil {
		t.Fatal("the .new file was left behind")
	}
	if _, err := d.RotateSecret(ctx, st, "nope", RotateOptions{ConfigDir: cfgDir}); err == nil {
		t.Fatal("unknown secret: no error")
	}
	set, _ := bundledStack(t, "INVOICING_DB_PASSWORD=a-chosen-strong-password-1", "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	if _, err := d.RotateSecret(ctx, set, "db_password", RotateOptions{ConfigDir: cfgDir}); err == nil || !strings.Contains(err.Error(), "unset INVOICING_DB_PASSWORD") {
		t.Fatalf("rotate with the variable set: %v", err)
	}
}

// TestRotateSecretReachesEveryConsumer: a consumer of the secret whose
// profile is not enabled (postgres-exporter, started by an earlier up
// --profile monitoring) would keep the old password: rotate refuses before
// changing anything and names it and the flag; with the profile, both are
// rolled onto the new value.
func TestRotateSecretReachesEveryConsumer(t *testing.T) {
	ctx := context.Background()
	port := "INVOICING_API_PORT=" + strconv.Itoa(freePort(t))
	prom := "INVOICING_PROMETHEUS_PORT=" + strconv.Itoa(freePort(t))
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":    "FROM golang:1.26-bookworm AS build\nARG VERSION\nFROM scratch\nCOPY --from=build /x /x\n",
		".dockerignore": ".env\n",
	})
	load := func(profiles ...string) *Stack {
		t.Helper()
		st, err := Load(ctx, LoadOptions{WorkingDir: dir, ProjectName: "inv", Env: []string{port, prom}, Profiles: profiles})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	cfgDir := t.TempDir()
	f := fakeWithImages()
	for _, img := range []string{"invoicing-prometheus:latest", "prometheuscommunity/postgres-exporter:v0.11.1"} {
		f.images[img] = "sha256:" + img
	}
	d := New(f, nil)
	if _, err := d.Up(ctx, load("monitoring"), UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up --profile monitoring: %v", err)
	}
	stored := filepath.Join(cfgDir, "db_password")
	old, _ := os.ReadFile(stored)
	before := len(f.mutations())

	_, err := d.RotateSecret(ctx, load(), "db_password", RotateOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	if !IsPreflight(err) || !strings.Contains(err.Error(), "service postgres-exporter also uses it") || !strings.Contains(err.Error(), "rotate with --profile monitoring") {
		t.Fatalf("rotate without the consumer's profile: %v, want a refusal naming postgres-exporter and --profile monitoring", err)
	}
	if now, _ := os.ReadFile(stored); string(now) != string(old) || len(f.mutations()) != before || f.execInput.Len() != 0 {
		t.Fatalf("the refused rotation changed something: %v", f.mutations()[before:])
	}

	if _, err := d.RotateSecret(ctx, load("monitoring"), "db_password", RotateOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("rotate --profile monitoring: %v", err)
	}
	now, _ := os.ReadFile(stored)
	for _, c := range f.containers {
		if svc := c.cfg.Labels[LabelService]; svc != "postgres-exporter" && svc != "api" {
			continue
		}
		if file, _ := f.delivered(c, "/run/secrets/db_password"); file.content != string(now) {
			t.Fatalf("%s did not get the new password", c.name)
		}
	}
}

// TestCheckRotate: a secret that only a service of a disabled profile uses
// is named with that profile (the loader drops it from the project, so it
// used to be "not defined"); a non-PostgreSQL secret is refused as such;
// every refusal is an invalid request (exit 2).
func TestCheckRotate(t *testing.T) {
	ctx := context.Background()
	st, _ := bundledStack(t)
	for _, tc := range []struct{ name, want string }{
		{"grafana_admin", "secret grafana_admin (used by services.grafana, profile dashboards) is not a PostgreSQL password"},
		{"nope", "secret nope is not defined under top-level secrets of inv"},
	} {
		if err := CheckRotate(st, tc.name); !IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckRotate(%s): want an invalid request containing %q, got %v", tc.name, tc.want, err)
		}
	}
	if err := CheckRotate(st, "db_password"); err != nil {
		t.Errorf("CheckRotate(db_password): %v", err)
	}
	all, err := Load(ctx, LoadOptions{WorkingDir: st.Project.WorkingDir, ProjectName: "inv", Profiles: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRotate(all, "grafana_admin"); !IsInvalid(err) || !strings.Contains(err.Error(), "secret grafana_admin is not a PostgreSQL password") {
		t.Errorf("CheckRotate(grafana_admin) with every profile: %v", err)
	}

	// A PostgreSQL of a profile: the error names the --profile that enables it.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": `name: side
services:
  web:
    image: nginx
  reportdb:
    image: postgres:15
    profiles: [reports]
    environment:
      POSTGRES_PASSWORD_FILE: /run/secrets/report_pw
    secrets: [report_pw]
secrets:
  report_pw:
    environment: REPORT_PW
    x-invdeploy-generate: true
`})
	side, err := Load(ctx, LoadOptions{WorkingDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRotate(side, "report_pw"); !IsInvalid(err) || !strings.Contains(err.Error(), "secret report_pw is used only by services.reportdb, whose profile reports is not enabled: add --profile reports") {
		t.Errorf("CheckRotate(report_pw) without its profile: %v", err)
	}
	side, err = Load(ctx, LoadOptions{WorkingDir: dir, Profiles: []string{"reports"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRotate(side, "report_pw"); err != nil {
		t.Errorf("CheckRotate(report_pw) with --profile reports: %v", err)
	}
}

// TestPlanRotateIsWhatRotateDoes: secret rotate --dry-run changes nothing
// and lists the rotation's own operations, then up's operations computed
// with the new value; the rotation then performs those same operations
// (the database's copy rewritten in place and kept, the API recreated).
func TestPlanRotateIsWhatRotateDoes(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	stored := filepath.Join(cfgDir, "db_password")
	old, _ := os.ReadFile(stored)
	before := len(f.mutations())
	pl, err := New(f, nil).PlanRotate(ctx, st, "db_password", RotateOptions{ConfigDir: cfgDir})
	if err != nil {
		t.Fatalf("plan rotate: %v", err)
	}
	if now, _ := os.ReadFile(stored); string(now) != string(old) || len(f.mutations()) != before || f.execInput.Len() != 0 {
		t.Fatalf("the dry run changed something: %v", f.mutations()[before:])
	}
	if len(pl.Ops) < 3 || pl.Ops[0].Kind != OpSecretRotate || pl.Ops[1].Kind != OpSecretRewrite || pl.Ops[1].Target != "inv-db-1" {
		t.Fatalf("the plan does not start with the rotation: %+v", pl.Ops)
	}
	kinds := func(ops []Op) []string {
		var out []string
		for _, op := range ops {
			out = append(out, string(op.Kind)+" "+op.Target+": "+op.Reason)
		}
		return out
	}
	want := kinds(pl.Ops[2:])
	if len(want) != 1 || !strings.Contains(want[0], "inv-api-1: secret db_password changed") {
		t.Fatalf("up's part of the plan: %v, want the api alone, for the secret", want)
	}
	for _, sp := range pl.Services {
		if sp.Service == "db" && sp.Action != ActionKeep {
			t.Fatalf("the database is planned to %s, want keep (rewritten in place)", sp.Action)
		}
	}
	res, err := New(f, nil).RotateSecret(ctx, st, "db_password", RotateOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if got := kinds(res.Ops); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rotate performed\n%s\nthe dry run showed\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
