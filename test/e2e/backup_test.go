package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
)

// invoiceAPI is the bundled API at base, for the backup tests.
type invoiceAPI struct {
	t    *testing.T
	base string
}

type invoice struct {
	ID     string  `json:"id"`
	Number *string `json:"number"`
	Total  int64   `json:"total"`
	Status string  `json:"status"`
	Lines  []struct {
		Quantity   string `json:"quantity"`
		UnitAmount int64  `json:"unit_amount"`
		Amount     int64  `json:"amount"`
	} `json:"line_items"`
	Subtotal int64 `json:"subtotal"`
}

const newInvoice = `{"currency":"EUR","customer":{"name":"Backup Test"},"line_items":[{"description":"a","quantity":2,"unit_amount":1250},{"description":"b","quantity":"1.5","unit_amount":999,"tax_rate":"20"}]}`

// create posts an invoice and, when finalize, finalizes it; it returns
// the invoice as acknowledged.
func (a invoiceAPI) create(c *http.Client, finalize bool) (invoice, error) {
	var inv invoice
	resp, err := c.Post(a.base+"/v1/invoices", "application/json", strings.NewReader(newInvoice))
	if err != nil {
		return inv, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return inv, fmt.Errorf("create: %s %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		return inv, err
	}
	if !finalize {
		return inv, nil
	}
	return a.finalize(c, inv.ID)
}

// finalize finalizes invoice id and returns it as acknowledged.
func (a invoiceAPI) finalize(c *http.Client, id string) (invoice, error) {
	var inv invoice
	resp, err := c.Post(a.base+"/v1/invoices/"+id+"/finalize", "application/json", nil)
	if err != nil {
		return inv, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return inv, fmt.Errorf("finalize: %s %s", resp.Status, b)
	}
	return inv, json.Unmarshal(b, &inv)
}

// all lists every invoice, following the cursor.
func (a invoiceAPI) all() map[string]invoice {
	a.t.Helper()
	out := map[string]invoice{}
	url := a.base + "/v1/invoices?limit=100"
	for {
		code, _, body := httpDo(a.t, "GET", url, "")
		if code != http.StatusOK {
			a.t.Fatalf("list invoices: %d %s", code, body)
		}
		var page struct {
			Data       []invoice `json:"data"`
			HasMore    bool      `json:"has_more"`
			NextCursor *string   `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			a.t.Fatal(err)
		}
		for _, inv := range page.Data {
			out[inv.ID] = inv
		}
		if !page.HasMore || page.NextCursor == nil {
			return out
		}
		url = a.base + "/v1/invoices?limit=100&starting_after=" + *page.NextCursor
	}
}

// checkIntact asserts the restored invoices are whole: totals as the
// server computes them (2 x 1250 + round(1.5 x 999) = 4000.5 -> 1499, tax
// 20 % of 1499 = 300: total 4299) and finalized numbers INV-000001..N with
// no gap and no duplicate.
func checkIntact(t *testing.T, got map[string]invoice) {
	t.Helper()
	var nums []int
	for _, inv := range got {
		if inv.Total != 4299 || inv.Subtotal != 3999 {
			t.Errorf("invoice %s: subtotal %d total %d, want 3999 and 4299", inv.ID, inv.Subtotal, inv.Total)
		}
		if inv.Number != nil {
			n, err := strconv.Atoi(strings.TrimPrefix(*inv.Number, "INV-"))
			if err != nil {
				t.Errorf("invoice %s: number %q", inv.ID, *inv.Number)
			}
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	for i, n := range nums {
		if n != i+1 {
			t.Fatalf("finalized numbers are not 1..%d without gaps: position %d holds %d", len(nums), i, n)
		}
	}
}

// backupEnv is a localEnv whose backups and keys live in the test's dirs.
func backupEnv(t *testing.T, extra ...string) (*localEnv, string, invoiceAPI) {
	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	if _, err := os.Stat(filepath.Join(localRoot(), "Dockerfile")); err != nil {
		t.Fatal("the repository's Dockerfile is missing")
	}
	proj := project(t, "bk")
	port := freePort(t)
	e.extra = append([]string{"INVOICING_API_PORT=" + strconv.Itoa(port), "XDG_DATA_HOME=" + t.TempDir()}, extra...)
	e.cleanup(proj)
	e.mustRun(localRoot(), "up", "-p", proj)
	return e, proj, invoiceAPI{t: t, base: "http://127.0.0.1:" + strconv.Itoa(port)}
}

// TestBackupContinuousProtection: continuous protection on (one variable
// of the bundled stack); a point in time between two batches restores
// exactly the first; then under 16 clients creating and finalizing
// invoices the database container is SIGKILLed and its volume deleted, and
// restore --to latest brings back every acknowledged invoice (RPO and RTO
// measured and reported), totals and gapless numbers intact.
func TestBackupContinuousProtection(t *testing.T) {
	t.Parallel()
	e, proj, api := backupEnv(t, "INVOICING_DB_BACKUP=continuous")
	sts := e.statusWhenHealthy(localRoot(), proj)
	sidecar := false
	for _, s := range sts {
		if s.Service == "db-backup" && s.Health == "healthy" {
			sidecar = true
		}
	}
	if !sidecar {
		t.Fatalf("status has no healthy db-backup: %+v", sts)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	waitBaseBackup(t, e, proj)

	// Point in time.
	first := map[string]bool{}
	for i := 0; i < 20; i++ {
		inv, err := api.create(c, i%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		first[inv.ID] = true
	}
	time.Sleep(1500 * time.Millisecond)
	between := time.Now().UTC()
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < 10; i++ {
		if _, err := api.create(c, true); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(api.all()); n != 30 {
		t.Fatalf("%d invoices before the restore, want 30", n)
	}
	r := e.mustRun(localRoot(), "restore", "-p", proj, "--to", between.Format(time.RFC3339Nano))
	t.Logf("restore --to %s: %s", between.Format(time.RFC3339Nano), strings.TrimSpace(r.stdout))
	got := api.all()
	if len(got) != len(first) {
		t.Fatalf("after restore --to a time between the batches: %d invoices, want the first batch's %d", len(got), len(first))
	}
	for id := range first {
		if _, ok := got[id]; !ok {
			t.Fatalf("invoice %s of the first batch is missing", id)
		}
	}
	checkIntact(t, got)
	if !strings.Contains(r.stdout, "kept in volume") {
		t.Fatalf("restore does not say where the data from before is:\n%s", r.stdout)
	}

	// Crash under load. The sidecar streams the restored database's new
	// timeline: wait until it is healthy again.
	e.statusWhenHealthy(localRoot(), proj)
	type ack struct {
		at  time.Time
		inv invoice
	}
	var mu sync.Mutex
	var acks []ack
	var killedAt time.Time
	var before, after int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			lc := &http.Client{Timeout: 5 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				inv, err := api.create(lc, n%2 == 0)
				now := time.Now()
				mu.Lock()
				if err != nil {
					if killedAt.IsZero() {
						before++
						t.Errorf("client %d: %v (before the kill)", i, err)
					} else {
						after++
					}
				} else if killedAt.IsZero() || now.Before(killedAt) {
					acks = append(acks, ack{now, inv})
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(i)
	}
	time.Sleep(8 * time.Second)
	ctx := context.Background()
	db := e.containerIDs(proj)[proj+"-db-1"]
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := e.docker.ContainerKill(ctx, db, "KILL"); err != nil {
		t.Fatal(err)
	}
	if err := e.docker.ContainerRemove(ctx, db, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.docker.VolumeRemove(ctx, proj+"_db-data", false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	start := time.Now()
	r = e.mustRun(localRoot(), "restore", "-p", proj, "--to", "latest")
	rto := time.Since(start)
	got = api.all()
	var missing []ack
	for _, a := range acks {
		if _, ok := got[a.inv.ID]; !ok {
			missing = append(missing, a)
		}
	}
	rpo := time.Duration(0)
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].at.Before(missing[j].at) })
		rpo = killedAt.Sub(missing[0].at)
	}
	t.Logf("crash under 16 clients: %d acknowledged writes (invoices) before the SIGKILL, %d failed requests before it, %d after it; restore --to latest: %d acknowledged missing (RPO %.3f s of writes), RTO %.1f s (restore command to the stack healthy)",
		len(acks), before, after, len(missing), rpo.Seconds(), rto.Seconds())
	t.Logf("restore: %s", strings.TrimSpace(r.stdout))
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "promoted") || strings.Contains(l, "Switched") || strings.Contains(l, "Stack up on") {
			t.Logf("  %s", strings.TrimSpace(l))
		}
	}
	if len(acks) < 100 {
		t.Fatalf("only %d acknowledged writes under load", len(acks))
	}
	if before != 0 {
		t.Fatalf("%d requests failed before the kill", before)
	}
	if rpo > 5*time.Second {
		t.Fatalf("RPO %.1f s: %d acknowledged invoices missing, the oldest acknowledged %s before the kill", rpo.Seconds(), len(missing), rpo)
	}
	// Everything acknowledged a second before the kill was streamed.
	for _, m := range missing {
		if killedAt.Sub(m.at) > time.Second {
			t.Fatalf("invoice %s acknowledged %s before the kill is missing", m.inv.ID, killedAt.Sub(m.at))
		}
	}
	for _, a := range acks {
		if g, ok := got[a.inv.ID]; ok && (g.Total != a.inv.Total || (a.inv.Number != nil && (g.Number == nil || *g.Number != *a.inv.Number))) {
			t.Fatalf("invoice %s restored as total %d number %v, acknowledged as %d %v", a.inv.ID, g.Total, g.Number, a.inv.Total, a.inv.Number)
		}
	}
	checkIntact(t, got)
	if rto > 60*time.Second {
		t.Fatalf("RTO %.1f s, want under 60 s", rto.Seconds())
	}

	// A time after the last archived transaction is the state at that
	// time: the end of the WAL.
	e.statusWhenHealthy(localRoot(), proj)
	waitBaseBackup(t, e, proj)
	time.Sleep(2 * time.Second)
	r = e.mustRun(localRoot(), "restore", "-p", proj, "--to", time.Now().UTC().Format(time.RFC3339Nano))
	if again := api.all(); len(again) != len(got) {
		t.Fatalf("restore --to now (idle since the last one): %d invoices, want %d\n%s", len(again), len(got), r.stderr)
	}
}

// waitBaseBackup waits until continuous protection's first base backup has
// finished (a point in time before it has nothing to start from).
func waitBaseBackup(t *testing.T, e *localEnv, proj string) {
	t.Helper()
	waitBaseBackupIn(t, func() string { return e.mustRun(localRoot(), "backups", "-p", proj, "-o", "json").stdout })
}

// waitBaseBackupIn waits until list (backups -o json) shows a finished
// base backup of continuous protection.
func waitBaseBackupIn(t *testing.T, list func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		stdout := list()
		var out struct {
			Archive *struct {
				Bases []struct {
					Finished time.Time `json:"finished"`
				} `json:"base_backups"`
			} `json:"archive"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("backups -o json: %v\n%s", err, stdout)
		}
		if out.Archive != nil && len(out.Archive.Bases) > 0 && !out.Archive.Bases[0].Finished.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished base backup 2 minutes after up:\n%s", stdout)
		}
		time.Sleep(time.Second)
	}
}

// TestBackupEncryptedRefusedWhenDamaged: backup writes an encrypted file
// and a manifest; a flipped byte or a truncated file is refused with exit 3
// and nothing changes (same database container, same volumes, same data);
// the intact backup restores to its own point, keeping the data from before.
func TestBackupEncryptedRefusedWhenDamaged(t *testing.T) {
	t.Parallel()
	e, proj, api := backupEnv(t)
	c := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 5; i++ {
		if _, err := api.create(c, true); err != nil {
			t.Fatal(err)
		}
	}
	r := e.mustRun(localRoot(), "backup", "-p", proj, "-o", "json")
	var m struct {
		ID, File, SHA256 string
		Size             int64
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("backup -o json: %v\n%s", err, r.stdout)
	}
	var dataHome string
	for _, kv := range e.extra {
		if v, ok := strings.CutPrefix(kv, "XDG_DATA_HOME="); ok {
			dataHome = v
		}
	}
	path := filepath.Join(dataHome, "invdeploy", proj, "backups", m.File)
	orig, err := os.ReadFile(path)
	if err != nil || int64(len(orig)) != m.Size {
		t.Fatalf("backup file %s: %d bytes, %v; manifest says %d", path, len(orig), err, m.Size)
	}
	if strings.Contains(string(orig), "Backup Test") || !strings.HasPrefix(string(orig), "age-encryption.org/v1") {
		t.Fatal("the backup file is not age-encrypted")
	}
	list := e.mustRun(localRoot(), "backups", "-p", proj)
	if !strings.Contains(list.stdout, m.ID) {
		t.Fatalf("backups does not list %s:\n%s", m.ID, list.stdout)
	}
	for i := 0; i < 3; i++ {
		if _, err := api.create(c, true); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	volumes := func() []string {
		vs, err := e.docker.VolumeList(ctx, volume.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, v := range vs.Volumes {
			if strings.HasPrefix(v.Name, proj) {
				names = append(names, v.Name)
			}
		}
		sort.Strings(names)
		return names
	}
	idsBefore, volsBefore := e.containerIDs(proj), volumes()
	flipped := append([]byte(nil), orig...)
	flipped[len(flipped)/2] ^= 0x40
	for name, content := range map[string][]byte{"a flipped byte": flipped, "truncated": orig[:len(orig)*3/4]} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.run(localRoot(), "restore", "-p", proj, "--backup", m.ID)
		if r.code != 3 || !strings.Contains(r.stderr, "nothing was changed") {
			t.Fatalf("%s: restore exit %d, want 3 and nothing changed:\n%s", name, r.code, r.stderr)
		}
		if ids := e.containerIDs(proj); fmt.Sprint(ids) != fmt.Sprint(idsBefore) {
			t.Fatalf("%s: containers changed: %v -> %v", name, idsBefore, ids)
		}
		if vs := volumes(); fmt.Sprint(vs) != fmt.Sprint(volsBefore) {
			t.Fatalf("%s: volumes changed: %v -> %v", name, volsBefore, vs)
		}
		if n := len(api.all()); n != 8 {
			t.Fatalf("%s: %d invoices after the refused restore, want 8", name, n)
		}
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.mustRun(localRoot(), "restore", "-p", proj, "--backup", m.ID)
	got := api.all()
	if len(got) != 5 {
		t.Fatalf("restore of backup %s: %d invoices, want the 5 it holds\n%s", m.ID, len(got), r.stdout)
	}
	checkIntact(t, got)
	kept := false
	for _, v := range volumes() {
		kept = kept || strings.HasPrefix(v, proj+"_db-data-before-restore-")
	}
	if !kept {
		t.Fatalf("no volume keeps the data from before: %v", volumes())
	}

	// down --volumes of a project with backups, without a terminal:
	// refused (exit 2) with where the last backup is and the --yes hint;
	// nothing stopped.
	ids := e.containerIDs(proj)
	r = e.run(localRoot(), "down", "-p", proj, "--volumes")
	if r.code != 2 || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "--volumes --yes") {
		t.Fatalf("down --volumes without a terminal: exit %d, want 2 naming %s and --yes:\n%s", r.code, path, r.stderr)
	}
	if now := e.containerIDs(proj); fmt.Sprint(now) != fmt.Sprint(ids) {
		t.Fatalf("the refused down changed the containers: %v -> %v", ids, now)
	}
}

// TestRemoteBackupRestoresLocally: the bundled stack on a simulated EC2
// host; remote backup streams its database over one SSH connection into a
// directory here (encrypted, checksummed); restore --backup ID brings those
// invoices into a local stack.
func TestRemoteBackupRestoresLocally(t *testing.T) {
	h := startRemoteHost(t, 0)
	cfg, data := t.TempDir(), t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg, "XDG_DATA_HOME=" + data, "INVDEPLOY_PROXY_BINARY=none"}
	mustCode(t, remoteRun(t, h, env, "up"), 0, "remote up")
	remoteAPI := invoiceAPI{t: t, base: "http://" + h.Addr + ":8000"}
	c := &http.Client{Timeout: 10 * time.Second}
	want := map[string]bool{}
	for i := 0; i < 7; i++ {
		inv, err := remoteAPI.create(c, i%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		want[inv.ID] = true
	}
	r := remoteRun(t, h, env, "backup", "-o", "json")
	mustCode(t, r, 0, "remote backup")
	if !strings.Contains(r.Stderr, "1 SSH connection to") {
		t.Fatalf("remote backup does not report one SSH connection:\n%s", tail(r.Stderr, 5))
	}
	var m struct{ ID, Project string }
	if err := json.Unmarshal([]byte(r.Stdout), &m); err != nil || m.Project != "invoicing" {
		t.Fatalf("remote backup -o json: %v %+v\n%s", err, m, r.Stdout)
	}
	dir := filepath.Join(data, "invdeploy", "invoicing", "backups")
	if _, err := os.Stat(filepath.Join(dir, m.ID+".tar.age")); err != nil {
		t.Fatalf("the backup is not on this machine: %v", err)
	}
	t.Logf("remote backup: %s", strings.TrimSpace(tail(r.Stderr, 1)))

	e := newLocalEnv(t, "postgres:15", "golang:1.26-bookworm")
	e.xdg = cfg
	key := filepath.Join(cfg, "invdeploy", "invoicing", "backup.agekey")

	// A physical backup brings the cluster's roles and passwords along: in
	// a stack with another database password the API cannot connect, its
	// readiness fails on the restored data, and restore puts the data from
	// before back (exit 4).
	other := project(t, "bko")
	otherPort := freePort(t)
	e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(otherPort), "XDG_DATA_HOME=" + data}
	e.cleanup(other)
	e.mustRun(localRoot(), "up", "-p", other)
	otherAPI := invoiceAPI{t: t, base: "http://127.0.0.1:" + strconv.Itoa(otherPort)}
	for i := 0; i < 2; i++ {
		if _, err := otherAPI.create(c, true); err != nil {
			t.Fatal(err)
		}
	}
	lr := e.run(localRoot(), "restore", "-p", other, "--backup", m.ID, "--dir", dir, "--key", key, "--wait-timeout", "30s")
	if lr.code != 4 || !strings.Contains(lr.stderr, "back") {
		t.Fatalf("restore into a stack with another password: exit %d, want 4 and the data from before back:\n%s", lr.code, tail(lr.stderr, 15))
	}
	if n := len(otherAPI.all()); n != 2 {
		t.Fatalf("after the failed restore: %d invoices, want the 2 from before", n)
	}

	// With the host's password the restore serves the host's invoices.
	// This machine mirrors the host's generated password per target.
	mirrors, _ := filepath.Glob(filepath.Join(cfg, "invdeploy", "invoicing", "targets", "*", "db_password"))
	if len(mirrors) != 1 {
		t.Fatalf("want one mirror of the host's db_password, got %v", mirrors)
	}
	pw, err := os.ReadFile(mirrors[0])
	if err != nil {
		t.Fatal(err)
	}
	proj := project(t, "bkr")
	port := freePort(t)
	e.extra = []string{"INVOICING_API_PORT=" + strconv.Itoa(port), "XDG_DATA_HOME=" + data, "INVOICING_DB_PASSWORD=" + string(pw)}
	e.cleanup(proj)
	e.mustRun(localRoot(), "up", "-p", proj)
	e.mustRun(localRoot(), "restore", "-p", proj, "--backup", m.ID, "--dir", dir, "--key", key)
	got := invoiceAPI{t: t, base: "http://127.0.0.1:" + strconv.Itoa(port)}.all()
	if len(got) != len(want) {
		t.Fatalf("local stack after restoring the remote backup: %d invoices, want %d", len(got), len(want))
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Fatalf("invoice %s of the remote stack is missing", id)
		}
	}
	checkIntact(t, got)
}
