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

// TestGeneratedSecretsBelongToTheTarget: the first up stores the generated
// password on the engine as well as in this machine's mirror; a machine
// with an empty config directory (a second laptop, a lost one) deploys the
// same value from the engine while the stack is down; without the engine's
// copy and with the database volume kept, up refuses (exit 3) with the
// ways out instead of generating a password the database never had, and
// changes nothing.
func TestGeneratedSecretsBelongToTheTarget(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	mine, err := os.ReadFile(filepath.Join(cfgDir, "db_password"))
	if err != nil || len(mine) < 32 {
		t.Fatalf("no generated password stored here (%v)", err)
	}
	onEngine, err := d.readState(ctx, "inv")
	if err != nil {
		t.Fatal(err)
	}
	if string(onEngine["db_password"]) != string(mine) {
		t.Fatalf("the engine keeps %d bytes for db_password, not this machine's value", len(onEngine["db_password"]))
	}
	f.mu.Lock()
	_, ok := f.byIDOrName(stateContainer("inv"))
	f.mu.Unlock()
	if !ok {
		t.Fatalf("no state container %s", stateContainer("inv"))
	}
	// A second up makes no call for the secrets: mirrored and confirmed.
	reads := f.reads
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("second up: %v", err)
	}
	if f.reads != reads {
		t.Fatalf("a no-op up read %d files back from the engine", f.reads-reads)
	}

	// Down (data kept), then up from a machine with no config directory.
	if _, err := d.Down(ctx, "inv", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: other, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up from an empty config dir: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(other, "db_password")); string(got) != string(mine) {
		t.Fatal("the second machine did not deploy the engine's value")
	}
	for _, c := range f.containers {
		if file, ok := f.delivered(c, "/run/secrets/db_password"); ok && file.content != string(mine) {
			t.Fatalf("%s got another password", c.name)
		}
	}

	// The engine's copy lost (an engine upgraded from an older invdeploy),
	// the stack down, the database volume kept: refused, nothing changed.
	if _, err := d.Down(ctx, "inv", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	if removed, err := d.removeState(ctx, "inv"); err != nil || !removed {
		t.Fatalf("remove the state container: %v %v", removed, err)
	}
	before := len(f.mutations())
	third := t.TempDir()
	_, err = New(f, nil).Up(ctx, st, UpOptions{ConfigDir: third, WaitTimeout: 5 * time.Second})
	if !IsPreflight(err) || !strings.Contains(err.Error(), "volume inv_db-data already exists") || !strings.Contains(err.Error(), "INVOICING_DB_PASSWORD") || !strings.Contains(err.Error(), "down -p inv --volumes") {
		t.Fatalf("up with the data kept and no value anywhere: %v, want a refusal with the ways out", err)
	}
	if _, err := os.Stat(filepath.Join(third, "db_password")); err == nil {
		t.Fatal("a new password was generated anyway")
	}
	for _, m := range f.mutations()[before:] {
		if strings.HasPrefix(m, "create ") || strings.HasPrefix(m, "start ") {
			t.Fatalf("the refused up changed the stack: %v", f.mutations()[before:])
		}
	}

	// down --volumes takes the engine's copy with the data.
	if _, err := d.Down(ctx, "inv", DownOptions{Volumes: true, ConfigDir: cfgDir}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	_, ok = f.byIDOrName(stateContainer("inv"))
	f.mu.Unlock()
	if ok {
		t.Fatal("down --volumes kept the state container")
	}
}

// TestUnconfirmedMirrorMigratesToTheEngine: a value this machine kept
// before the engine stored one (an older invdeploy) is stored on the
// engine by the next up; when the engine keeps another value (rotated from
// another machine), the engine's wins.
func TestUnconfirmedMirrorMigratesToTheEngine(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	if err := os.WriteFile(filepath.Join(cfgDir, "db_password"), []byte("kept-by-an-older-invdeploy-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := fakeWithImages()
	d := New(f, nil)
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if got, _ := d.readState(ctx, "inv"); string(got["db_password"]) != "kept-by-an-older-invdeploy-0123456789abcdef" {
		t.Fatal("the mirrored value was not stored on the engine")
	}
	if err := d.writeState(ctx, "inv", map[string][]byte{"db_password": []byte("rotated-elsewhere-0123456789abcdef0123")}); err != nil {
		t.Fatal(err)
	}
	forgetConfirmed(cfgDir)
	if _, err := d.Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(cfgDir, "db_password")); string(got) != "rotated-elsewhere-0123456789abcdef0123" {
		t.Fatalf("the engine's value did not win over an unconfirmed copy: %q", got)
	}
}

func TestTargetConfigDir(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	got, err := TargetConfigDir("shop", "203.0.113.7_22")
	if err != nil || got != "/cfg/invdeploy/shop/targets/203.0.113.7_22" {
		t.Fatalf("TargetConfigDir = %q, %v", got, err)
	}
	if got, err := TargetConfigDir("shop", "../x/y"); err != nil || strings.Contains(strings.TrimPrefix(got, "/cfg/invdeploy/shop/targets/"), "/") {
		t.Fatalf("TargetConfigDir(../x/y) = %q, %v: escapes its directory", got, err)
	}
	if _, err := TargetConfigDir("shop", ".."); err == nil {
		t.Fatal("TargetConfigDir(..) accepted")
	}
}

// TestStaleConfirmedMirrorTakesTheEngineValue: this machine's mirror was
// confirmed, then another machine rotated the secret (the engine keeps the
// new value, the consumers were recreated with it). The next plan here
// reads the consumers back, finds the other value, and takes the engine's
// rather than recreating them with the stale copy; after a down (nothing
// left to read back), the up that creates the consumers delivers the
// engine's value too.
func TestStaleConfirmedMirrorTakesTheEngineValue(t *testing.T) {
	ctx := context.Background()
	st, cfgDir := bundledStack(t, "INVOICING_API_PORT="+strconv.Itoa(freePort(t)))
	f := fakeWithImages()
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	stale, _ := os.ReadFile(filepath.Join(cfgDir, "db_password"))
	if !confirmed(cfgDir)["db_password"] {
		t.Fatal("the mirror was not confirmed")
	}
	other := t.TempDir()
	rotate := func(value string) {
		t.Helper()
		// Another machine rotates: the engine's store and the running
		// consumers get the new value.
		if err := os.WriteFile(filepath.Join(other, "db_password"), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := New(f, nil).writeState(ctx, "inv", map[string][]byte{"db_password": []byte(value)}); err != nil {
			t.Fatal(err)
		}
		if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: other, WaitTimeout: 5 * time.Second, readState: true}); err != nil {
			t.Fatalf("the other machine's up: %v", err)
		}
	}
	check := func(want string) {
		t.Helper()
		if got, _ := os.ReadFile(filepath.Join(cfgDir, "db_password")); string(got) != want {
			t.Fatalf("the mirror keeps another value (%d bytes)", len(got))
		}
		n := 0
		for _, c := range f.containers {
			if file, ok := f.delivered(c, "/run/secrets/db_password"); ok && c.state == "running" {
				n++
				if file.content == string(stale) || file.content != want {
					t.Fatalf("%s got the stale password", c.name)
				}
			}
		}
		if n == 0 {
			t.Fatal("no running container has the secret delivered")
		}
	}
	adopts := func(pl *Plan) bool {
		for _, op := range pl.Ops {
			if op.Kind == OpSecretAdopt && op.Target == "db_password" && strings.Contains(op.Reason, "rotated from another machine") {
				return true
			}
		}
		return false
	}

	rotate("rotated-from-another-machine-0123456789abcdef")
	pl, err := New(f, nil).Plan(ctx, st, UpOptions{ConfigDir: cfgDir})
	if err != nil {
		t.Fatal(err)
	}
	if !adopts(pl) {
		t.Fatalf("the plan does not take the engine's value: %+v", pl.Ops)
	}
	for _, sp := range pl.Services {
		if sp.Action != ActionKeep {
			t.Fatalf("services.%s: %s, want keep (they run the engine's value already)", sp.Service, sp.Action)
		}
	}
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	check("rotated-from-another-machine-0123456789abcdef")

	// Rotated again elsewhere, then down there: nothing runs to read back.
	stale, _ = os.ReadFile(filepath.Join(cfgDir, "db_password"))
	rotate("rotated-again-then-down-0123456789abcdef012")
	if _, err := New(f, nil).Down(ctx, "inv", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	pl, err = New(f, nil).Plan(ctx, st, UpOptions{ConfigDir: cfgDir})
	if err != nil || !adopts(pl) {
		t.Fatalf("the plan after a down does not take the engine's value (%v): %+v", err, pl.Ops)
	}
	if _, err := New(f, nil).Up(ctx, st, UpOptions{ConfigDir: cfgDir, WaitTimeout: 5 * time.Second}); err != nil {
		t.Fatalf("up: %v", err)
	}
	check("rotated-again-then-down-0123456789abcdef012")
}
