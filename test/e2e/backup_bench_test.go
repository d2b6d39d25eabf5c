package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// execPipe runs cmd in container id (as postgres) with stdin, copying stdout
// to out; it fails the test unless cmd exits 0.
func execPipe(t *testing.T, e *localEnv, id string, stdin io.Reader, out io.Writer, cmd ...string) {
	t.Helper()
	ctx := context.Background()
	ex, err := e.docker.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, User: "postgres", AttachStdin: stdin != nil, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	att, err := e.docker.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	if stdin != nil {
		go func() {
			io.Copy(att.Conn, stdin)
			att.CloseWrite()
		}()
	}
	var stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(out, &stderr, att.Reader); err != nil {
		t.Fatal(err)
	}
	for {
		ins, err := e.docker.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !ins.Running {
			if ins.ExitCode != 0 {
				t.Fatalf("%v: exit %d: %s", cmd, ins.ExitCode, stderr.String())
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBenchBackup (make bench-backup): backup and restore throughput of
// invdeploy against pg_dump -Fc / pg_restore of the same databases, run
// directly in the database container in the same run; and the invoice
// load's throughput with continuous protection on vs off (target >= 0.9).
func TestBenchBackup(t *testing.T) {
	if os.Getenv("INVDEPLOY_BENCH_BACKUP") == "" {
		t.Skip("benchmark: make bench-backup")
	}
	scale := 20
	if s, err := strconv.Atoi(os.Getenv("BENCH_SCALE")); err == nil && s > 0 {
		scale = s
	}
	e, proj, api := backupEnv(t)
	db := func() string { return e.containerIDs(proj)[proj+"-db-1"] }
	psql := func(sql string) string {
		var out bytes.Buffer
		execPipe(t, e, db(), nil, &out, "psql", "-X", "-Atq", "-U", "invoicing", "-d", "invoicing", "-c", sql)
		return strings.TrimSpace(out.String())
	}
	execPipe(t, e, db(), nil, io.Discard, "createdb", "-U", "invoicing", "bench")
	execPipe(t, e, db(), nil, io.Discard, "pgbench", "-U", "invoicing", "-i", "-q", "-s", strconv.Itoa(scale), "bench")
	size, _ := strconv.ParseFloat(psql("SELECT sum(pg_database_size(datname)) FROM pg_database"), 64)
	mb := size / (1 << 20)
	fmt.Printf("cluster: %.0f MiB (pgbench scale %d + the invoicing database)\n", mb, scale)

	// invdeploy backup: the whole cluster, encrypted, to this machine.
	start := time.Now()
	r := e.mustRun(localRoot(), "backup", "-p", proj, "-o", "json")
	backupSecs := time.Since(start).Seconds()
	id := jsonField(t, r.stdout, "id")
	// pg_dump -Fc of each database, streamed out of the container the same way.
	dumps := map[string]*bytes.Buffer{}
	start = time.Now()
	for _, name := range []string{"bench", "invoicing"} {
		dumps[name] = &bytes.Buffer{}
		execPipe(t, e, db(), nil, dumps[name], "pg_dump", "-U", "invoicing", "-Fc", name)
	}
	dumpSecs := time.Since(start).Seconds()
	dumpBytes := dumps["bench"].Len() + dumps["invoicing"].Len()
	fmt.Printf("backup:  invdeploy backup %6.1f s (%5.1f MiB/s of database)   pg_dump -Fc %6.1f s (%5.1f MiB/s, %.0f MiB written)   ratio %.2f\n",
		backupSecs, mb/backupSecs, dumpSecs, mb/dumpSecs, float64(dumpBytes)/(1<<20), dumpSecs/backupSecs)

	// pg_restore into fresh databases vs invdeploy restore (decrypt, load,
	// recover, verify, switch, stack up).
	start = time.Now()
	for _, name := range []string{"bench", "invoicing"} {
		execPipe(t, e, db(), nil, io.Discard, "createdb", "-U", "invoicing", name+"_r")
		execPipe(t, e, db(), bytes.NewReader(dumps[name].Bytes()), io.Discard, "pg_restore", "-U", "invoicing", "-d", name+"_r")
	}
	pgRestoreSecs := time.Since(start).Seconds()
	execPipe(t, e, db(), nil, io.Discard, "dropdb", "-U", "invoicing", "bench_r")
	execPipe(t, e, db(), nil, io.Discard, "dropdb", "-U", "invoicing", "invoicing_r")
	start = time.Now()
	e.mustRun(localRoot(), "restore", "-p", proj, "--backup", id)
	restoreSecs := time.Since(start).Seconds()
	fmt.Printf("restore: invdeploy restore %6.1f s (%5.1f MiB/s, to the stack healthy)   pg_restore %6.1f s (%5.1f MiB/s)   ratio %.2f\n",
		restoreSecs, mb/restoreSecs, pgRestoreSecs, mb/pgRestoreSecs, pgRestoreSecs/restoreSecs)
	execPipe(t, e, db(), nil, io.Discard, "dropdb", "-U", "invoicing", "bench")

	// Load with continuous protection off and on, alternating.
	round := 15 * time.Second
	load := func() float64 {
		g := invoiceLoad(api.base, func(string) {})
		time.Sleep(round)
		ok, failed, fails := g.finish()
		if failed > 0 {
			t.Fatalf("%d failed requests under load: %v", failed, fails)
		}
		return float64(ok) / round.Seconds()
	}
	base := e.extra
	var on, off []float64
	for i := 0; i < 2; i++ {
		e.extra = base
		e.mustRun(localRoot(), "up", "-p", proj, "--remove-orphans")
		if psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'invdeploy_backup'") == "1" {
			psql("SELECT pg_drop_replication_slot('invdeploy_backup')")
		}
		off = append(off, load())
		e.extra = append(append([]string{}, base...), "INVOICING_DB_BACKUP=continuous")
		e.mustRun(localRoot(), "up", "-p", proj)
		waitBaseBackup(t, e, proj)
		on = append(on, load())
	}
	mean := func(x []float64) float64 { return (x[0] + x[1]) / 2 }
	fmt.Printf("load (16 clients, half creating invoices, %s per round): protection off %.0f %.0f req/s, on %.0f %.0f req/s, ratio %.3f (target >= 0.9)\n",
		round, off[0], off[1], on[0], on[1], mean(on)/mean(off))
}

func jsonField(t *testing.T, s, key string) string {
	t.Helper()
	i := strings.Index(s, `"`+key+`": "`)
	if i < 0 {
		t.Fatalf("no %s in %s", key, s)
	}
	rest := s[i+len(key)+5:]
	return rest[:strings.Index(rest, `"`)]
}
