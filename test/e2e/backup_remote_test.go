package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// created is one invoice create of the load, with when it was sent and
// acknowledged, and its finalize when the client finalized it.
type created struct {
	start, ack    time.Time
	inv           invoice
	finAck        time.Time
	number        string
	finalizeTried bool
}

// loadRecord is what the remote restore's load saw.
type loadRecord struct {
	mu      sync.Mutex
	creates []*created
	// failed are the start times of failed requests.
	failed []time.Time
}

func (l *loadRecord) failedBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, f := range l.failed {
		if !f.Before(from) && f.Before(to) {
			n++
		}
	}
	return n
}

// runLoad runs clients creating invoices (every other one finalized) until
// stop is closed.
func runLoad(api invoiceAPI, clients int, rec *loadRecord, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				inv, err := api.create(c, false)
				if err != nil {
					rec.mu.Lock()
					rec.failed = append(rec.failed, start)
					rec.mu.Unlock()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				cr := &created{start: start, ack: time.Now(), inv: inv}
				rec.mu.Lock()
				rec.creates = append(rec.creates, cr)
				rec.mu.Unlock()
				if n%2 != 0 {
					continue
				}
				fstart := time.Now()
				f, err := api.finalize(c, inv.ID)
				rec.mu.Lock()
				cr.finalizeTried = true
				if err != nil {
					rec.failed = append(rec.failed, fstart)
				} else if f.Number != nil {
					cr.finAck, cr.number = time.Now(), *f.Number
				}
				rec.mu.Unlock()
			}
		}()
	}
	return &wg
}

// TestRemoteRestore: the bundled stack with continuous protection on a
// simulated EC2 host. Under 16 clients creating and finalizing invoices,
// remote restore --to a time in the middle of the load, over one SSH
// connection: every invoice acknowledged before that time is back (same
// total, same number), none created after it before the restore began,
// the stack serves again afterwards, numbers stay gapless, the data from
// before is kept in a volume on the host. Then remote backup copies the
// database here; a damaged copy is refused by remote restore with exit 3
// and nothing on the host changes; the intact one restores on the host to
// exactly what it held.
func TestRemoteRestore(t *testing.T) {
	h := startRemoteHost(t, 0)
	cfg, data := t.TempDir(), t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg, "XDG_DATA_HOME=" + data, "INVDEPLOY_PROXY_BINARY=none", "INVOICING_DB_BACKUP=continuous"}
	mustCode(t, remoteRun(t, h, env, "up"), 0, "remote up")
	api := invoiceAPI{t: t, base: "http://" + h.Addr + ":8000"}
	waitBaseBackupIn(t, func() string {
		r := remoteRun(t, h, env, "backups", "-o", "json")
		mustCode(t, r, 0, "remote backups")
		return r.Stdout
	})

	rec := &loadRecord{}
	stop := make(chan struct{})
	wg := runLoad(api, 16, rec, stop)
	time.Sleep(5 * time.Second)
	point := time.Now().UTC()
	time.Sleep(5 * time.Second)
	restoreStart := time.Now()
	r := remoteRun(t, h, env, "restore", "--to", point.Format(time.RFC3339Nano))
	restoreEnd := time.Now()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	mustCode(t, r, 0, "remote restore --to "+point.Format(time.RFC3339Nano))
	if !strings.Contains(r.Stderr, "1 SSH connection to") {
		t.Fatalf("remote restore does not report one SSH connection:\n%s", tail(r.Stderr, 5))
	}
	if !strings.Contains(r.Stdout, "kept in volume") {
		t.Fatalf("remote restore does not say where the data from before is:\n%s", r.Stdout)
	}
	got := api.all()
	var before, beforeFinal, afterPoint, afterRestore, missing, extra, wrong int
	for _, cr := range rec.creates {
		g, ok := got[cr.inv.ID]
		switch {
		case cr.ack.Before(point):
			before++
			if !ok {
				missing++
				t.Errorf("invoice %s acknowledged %s before the restore point is missing", cr.inv.ID, point.Sub(cr.ack))
				continue
			}
			if g.Total != cr.inv.Total {
				wrong++
				t.Errorf("invoice %s: total %d, acknowledged %d", cr.inv.ID, g.Total, cr.inv.Total)
			}
			if cr.number != "" && cr.finAck.Before(point) {
				beforeFinal++
				if g.Number == nil || *g.Number != cr.number {
					wrong++
					t.Errorf("invoice %s: number %v, acknowledged %s before the restore point", cr.inv.ID, g.Number, cr.number)
				}
			}
		case cr.start.After(point) && cr.ack.Before(restoreStart):
			afterPoint++
			if ok {
				extra++
				t.Errorf("invoice %s created %s after the restore point is in the restored data", cr.inv.ID, cr.start.Sub(point))
			}
		case cr.start.After(restoreEnd):
			afterRestore++
			if !ok {
				t.Errorf("invoice %s created after the restore is missing", cr.inv.ID)
			}
		}
	}
	failedBefore := rec.failedBetween(time.Time{}, restoreStart)
	failedDuring := rec.failedBetween(restoreStart, restoreEnd)
	failedAfter := rec.failedBetween(restoreEnd, time.Now().Add(time.Hour))
	t.Logf("remote restore --to the middle of 16 clients' load: %d invoices acknowledged before the point (%d finalized), %d missing, %d wrong; %d created after it before the restore, %d of them restored; %d created after the restore; failed requests %d before, %d during (%.1f s, the switch), %d after",
		before, beforeFinal, missing, wrong, afterPoint, extra, afterRestore, failedBefore, failedDuring, restoreEnd.Sub(restoreStart).Seconds(), failedAfter)
	t.Logf("remote restore: %s", strings.TrimSpace(r.Stdout))
	if before < 100 || afterPoint < 100 || afterRestore == 0 {
		t.Fatalf("too little load to tell: %d before the point, %d after it, %d after the restore", before, afterPoint, afterRestore)
	}
	if failedBefore != 0 || failedAfter != 0 {
		t.Fatalf("%d requests failed before the restore, %d after it returned (want 0 and 0)", failedBefore, failedAfter)
	}
	checkIntact(t, got)
	if vols := h.Docker(t, "volume", "ls", "-q"); !strings.Contains(vols, "invoicing_db-data-before-restore-") {
		t.Fatalf("no volume on the host keeps the data from before:\n%s", vols)
	}

	// An encrypted backup taken over the connection, restored on the host.
	r = remoteRun(t, h, env, "backup", "-o", "json")
	mustCode(t, r, 0, "remote backup")
	var m struct{ ID, File string }
	if err := json.Unmarshal([]byte(r.Stdout), &m); err != nil || m.ID == "" {
		t.Fatalf("remote backup -o json: %v\n%s", err, r.Stdout)
	}
	want := api.all()
	c := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 3; i++ {
		if _, err := api.create(c, true); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(data, "invdeploy", "invoicing", "backups", m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hostState := func() string {
		ids := strings.Fields(h.Docker(t, "ps", "-aq", "--no-trunc"))
		vols := strings.Fields(h.Docker(t, "volume", "ls", "-q"))
		sort.Strings(ids)
		sort.Strings(vols)
		return strings.Join(ids, " ") + " | " + strings.Join(vols, " ")
	}
	stateBefore := hostState()
	flipped := append([]byte(nil), orig...)
	flipped[len(flipped)/2] ^= 0x40
	if err := os.WriteFile(path, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	r = remoteRun(t, h, env, "restore", "--backup", m.ID)
	if r.Code != 3 || !strings.Contains(r.Stderr, "nothing was changed") {
		t.Fatalf("remote restore of a damaged backup: exit %d, want 3 and nothing changed:\n%s", r.Code, tail(r.Stderr, 10))
	}
	if now := hostState(); now != stateBefore {
		t.Fatalf("the refused restore changed the host:\n%s\n->\n%s", stateBefore, now)
	}
	if n := len(api.all()); n != len(want)+3 {
		t.Fatalf("after the refused restore: %d invoices, want %d", n, len(want)+3)
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	r = remoteRun(t, h, env, "restore", "--backup", m.ID)
	mustCode(t, r, 0, "remote restore --backup "+m.ID)
	got = api.all()
	if len(got) != len(want) {
		t.Fatalf("remote restore --backup %s: %d invoices, want the %d it holds", m.ID, len(got), len(want))
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || g.Total != w.Total || (w.Number != nil && (g.Number == nil || *g.Number != *w.Number)) {
			t.Fatalf("invoice %s after remote restore --backup: %+v, backed up as %+v", id, g, w)
		}
	}
	checkIntact(t, got)
	t.Logf("remote restore --backup %s: %s", m.ID, strings.TrimSpace(r.Stdout))
}
