package backup

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/invdeploy/invdeploy/deployer"
)

func validManifest() *Manifest {
	t0 := time.Date(2026, 12, 7, 10, 42, 0, 0, time.UTC)
	return &Manifest{Format: 1, ID: NewID(t0), Project: "invoicing", Service: "db", Started: t0, Finished: t0.Add(3 * time.Second),
		File: NewID(t0) + ".tar.age", Size: 1234, SHA256: strings.Repeat("ab", 32),
		Recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", PostgresVersion: "15", SystemID: "7716624514927399009",
		Timeline: 1, StartLSN: "0/2000028", EndLSN: "0/2000100"}
}

func TestManifestRoundTrip(t *testing.T) {
	m := validManifest()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *m {
		t.Fatalf("round trip: got %+v, want %+v", got, m)
	}
}

func TestManifestRefusals(t *testing.T) {
	for name, edit := range map[string]func(m *Manifest){
		"format":       func(m *Manifest) { m.Format = 2 },
		"path in file": func(m *Manifest) { m.File = "../" + m.File },
		"other file":   func(m *Manifest) { m.File = "20000101T000000Z.tar.age" },
		"bad id":       func(m *Manifest) { m.ID = "latest"; m.File = "latest.tar.age" },
		"short sha":    func(m *Manifest) { m.SHA256 = "abc" },
		"upper sha":    func(m *Manifest) { m.SHA256 = strings.Repeat("AB", 32) },
		"size":         func(m *Manifest) { m.Size = 0 },
		"recipient":    func(m *Manifest) { m.Recipient = "ssh-ed25519 AAAA" },
		"lsn":          func(m *Manifest) { m.EndLSN = "0/zz" },
		"time order":   func(m *Manifest) { m.Finished = m.Started.Add(-time.Second) },
		"timeline":     func(m *Manifest) { m.Timeline = 0 },
		"no project":   func(m *Manifest) { m.Project = "" },
	} {
		t.Run(name, func(t *testing.T) {
			m := validManifest()
			edit(m)
			if _, err := m.Marshal(); err == nil {
				t.Fatal("Marshal accepted it")
			}
		})
	}
	good, _ := validManifest().Marshal()
	for name, b := range map[string]string{
		"unknown field": strings.Replace(string(good), `"format": 1,`, `"format": 1, "extra": true,`, 1),
		"two documents": string(good) + string(good),
		"truncated":     string(good[:len(good)/2]),
		"empty":         "",
	} {
		if _, err := ParseManifest([]byte(b)); err == nil {
			t.Errorf("%s: ParseManifest accepted it", name)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	good, _ := validManifest().Marshal()
	f.Add(good)
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		// Whatever parses names a file in its own directory and
		// survives a round trip unchanged.
		if filepath.Base(m.File) != m.File || strings.ContainsAny(m.File, `/\`) {
			t.Fatalf("file %q escapes the directory", m.File)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed manifest does not marshal: %v", err)
		}
		m2, err := ParseManifest(again)
		if err != nil || !m2.Started.Equal(m.Started) || m2.SHA256 != m.SHA256 || m2.File != m.File {
			t.Fatalf("round trip changed it: %v", err)
		}
	})
}

func TestParseTarget(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	loc := time.FixedZone("CET", 3600)
	for in, want := range map[string]string{
		"latest":                      "latest",
		"2026-12-07T10:42:00Z":        "2026-12-07T10:42:00Z",
		"2026-12-07T10:42:00.123456Z": "2026-12-07T10:42:00.123456Z",
		"2026-12-07T11:42:00+01:00":   "2026-12-07T10:42:00Z",
		"2026-12-07 11:42":            "2026-12-07T10:42:00Z",
		"2026-12-07 11:42:05":         "2026-12-07T10:42:05Z",
		"2026-12-07T11:42:05.5":       "2026-12-07T10:42:05.5Z",
		"-15m":                        "2026-12-07T11:45:00Z",
		"-1h30m":                      "2026-12-07T10:30:00Z",
		"  latest ":                   "latest",
	} {
		got, err := ParseTarget(in, now, loc)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got.String() != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"", "now", "yesterday", "-0s", "--5m", "-+5m", "2026-12-08T00:00:00Z", "1999-01-01T00:00:00Z", "2026-13-01 10:00", "15m"} {
		if got, err := ParseTarget(in, now, loc); err == nil {
			t.Errorf("%q: accepted as %s", in, got)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"latest", "2026-12-07T10:42:00Z", "-15m", "2026-12-07 10:42", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s, now, time.UTC)
		if err != nil {
			return
		}
		if got.Latest {
			return
		}
		if got.Time.After(now) || got.Time.Year() < 2000 || got.Time.Location() != time.UTC {
			t.Fatalf("%q -> %v", s, got.Time)
		}
		// The canonical form parses to the same instant.
		again, err := ParseTarget(got.String(), now, time.UTC)
		if err != nil || !again.Time.Equal(got.Time) {
			t.Fatalf("%q -> %s does not parse back: %v", s, got, err)
		}
		if p := pgTime(got.Time); !strings.HasSuffix(p, "+00") {
			t.Fatalf("pgTime %q", p)
		}
	})
}

const listing = `base 7716624514927399009-2 20261207T181113Z 2026-12-07T18:11:14Z 32097893 0/4000028 0/4000100
base 7716624514927399009-2 20261207T090000Z - 1000 0/3000028 0/3000100
wal 7716624514927399009-2 000000020000000000000004 000000020000000000000005.partial 1796667081 33554432
`

func TestParseArchiveList(t *testing.T) {
	a, err := parseArchiveList(listing)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Bases) != 2 || a.Bases[0].Stamp != "20261207T090000Z" || a.Bases[1].Size != 32097893 || len(a.WAL) != 1 {
		t.Fatalf("%+v", a)
	}
	if w := a.walOf("7716624514927399009-2"); w == nil || w.Last != "000000020000000000000005.partial" {
		t.Fatalf("walOf: %+v", w)
	}
	// An unfinished base backup is never picked; a time before every
	// finished one picks none.
	if b := a.pick(Target{Latest: true}); b == nil || b.Stamp != "20261207T181113Z" {
		t.Fatalf("pick latest: %+v", b)
	}
	if b := a.pick(Target{Time: time.Date(2026, 12, 7, 18, 11, 14, 0, time.UTC)}); b != nil {
		t.Fatalf("pick at the finish: %+v", b)
	}
	if b := a.pick(Target{Time: time.Date(2026, 12, 7, 18, 11, 15, 0, time.UTC)}); b == nil {
		t.Fatal("pick after the finish: none")
	}
	for _, bad := range []string{"base x", "wal a b c d e", "base 1-2 20261207T181113Z - -5 0/1 0/2", "base 1-2 x - 5 0/1 0/2", "rm -rf /", "wal 1-2 ../../etc 000000020000000000000005 1 1"} {
		if _, err := parseArchiveList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseArchiveList(f *testing.F) {
	f.Add(listing)
	f.Add("base\n")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseArchiveList(s)
		if err != nil {
			return
		}
		for _, b := range a.Bases {
			if !genPattern.MatchString(b.Generation) || strings.Contains(b.Stamp, "/") {
				t.Fatalf("unsafe names %+v", b)
			}
		}
		for _, w := range a.WAL {
			if !segPattern.MatchString(w.First) || !segPattern.MatchString(w.Last) {
				t.Fatalf("unsafe names %+v", w)
			}
		}
	})
}

func TestParseContinuous(t *testing.T) {
	for _, tc := range []struct {
		in    any
		on    bool
		every time.Duration
		keep  int
	}{
		{"continuous", true, 24 * time.Hour, 7},
		{true, true, 24 * time.Hour, 7},
		{"off", false, 24 * time.Hour, 7},
		{"", false, 24 * time.Hour, 7},
		{false, false, 24 * time.Hour, 7},
		{map[string]any{"every": "6h", "keep": 14}, true, 6 * time.Hour, 14},
		{map[string]any{"keep": "3"}, true, 24 * time.Hour, 3},
	} {
		c, on, err := ParseContinuous("db", tc.in)
		if err != nil || on != tc.on || (on && (c.Every != tc.every || c.Keep != tc.keep)) {
			t.Errorf("%v: %+v %v %v", tc.in, c, on, err)
		}
	}
	for _, bad := range []any{"yes", 3, map[string]any{"every": "10s"}, map[string]any{"keep": 0}, map[string]any{"keep": 1.5}, map[string]any{"evry": "1h"}} {
		if _, _, err := ParseContinuous("db", bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func dbProject(ext any) *types.Project {
	str := func(s string) *string { return &s }
	db := types.ServiceConfig{Name: "db"}
	db.Image = "postgres:15"
	db.User = "postgres"
	db.Environment = types.MappingWithEquals{"POSTGRES_USER": str("invoicing"), "POSTGRES_DB": str("invoicing"), "POSTGRES_PASSWORD_FILE": str("/run/secrets/db_password")}
	db.Secrets = []types.ServiceSecretConfig{{Source: "db_password"}}
	db.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeVolume, Source: "db-data", Target: "/var/lib/postgresql/data"}}
	db.Networks = map[string]*types.ServiceNetworkConfig{"default": nil}
	if ext != nil {
		db.Extensions = types.Extensions{"x-invdeploy": map[string]any{"backup": ext}}
	}
	api := types.ServiceConfig{Name: "api"}
	api.Image = "invoicing-api:latest"
	return &types.Project{Name: "shop", Services: types.Services{"db": db, "api": api},
		Volumes: types.Volumes{"db-data": {Name: "shop_db-data"}}}
}

func TestAddSidecar(t *testing.T) {
	p := dbProject(nil)
	if err := AddSidecar(p); err != nil || len(p.Services) != 2 {
		t.Fatalf("without the line: %v, %d services", err, len(p.Services))
	}
	p = dbProject("continuous")
	if err := AddSidecar(p); err != nil {
		t.Fatal(err)
	}
	s, ok := p.Services["db-backup"]
	if !ok {
		t.Fatal("no db-backup service")
	}
	if s.Image != "postgres:15" || s.User != "postgres" || s.DependsOn["db"].Condition != types.ServiceConditionHealthy {
		t.Fatalf("sidecar: %+v", s)
	}
	if v := p.Volumes["db-backup"]; v.Name != "shop_db-backup" || s.Volumes[0].Source != "db-backup" || s.Volumes[0].Target != "/var/lib/postgresql/data" {
		t.Fatalf("archive volume: %+v %+v", v, s.Volumes)
	}
	if *s.Environment["PGHOST"] != "db" || *s.Environment["PGUSER"] != "invoicing" || *s.Environment["PASSWORD_FILE"] != "/run/secrets/db_password" || len(s.Secrets) != 1 {
		t.Fatalf("connection: %v %v", s.Environment, s.Secrets)
	}
	for k, v := range s.Environment {
		if strings.Contains(strings.ToLower(k), "password") && k != "PASSWORD_FILE" {
			t.Fatalf("a password in the environment: %s=%v", k, *v)
		}
	}
	if _, ok := s.Networks["default"]; !ok || !s.ReadOnly || s.HealthCheck == nil {
		t.Fatalf("networks %v, read_only %v, healthcheck %v", s.Networks, s.ReadOnly, s.HealthCheck)
	}
	pg, err := FindPostgres(p, "")
	if err != nil || pg.Service != "db" || pg.Volume != "shop_db-data" || pg.Role != "invoicing" || pg.Continuous == nil {
		t.Fatalf("FindPostgres: %+v %v", pg, err)
	}
	// A second AddSidecar (the name is taken) is refused, not doubled.
	if err := AddSidecar(p); err == nil {
		t.Fatal("second AddSidecar accepted")
	}
}

func TestFindPostgresRefusals(t *testing.T) {
	p := dbProject(nil)
	db := p.Services["db"]
	db.Volumes = nil
	p.Services["db"] = db
	if _, err := FindPostgres(p, ""); err == nil || !strings.Contains(err.Error(), "no named volume") {
		t.Fatalf("no volume: %v", err)
	}
	if _, err := FindPostgres(dbProject(nil), "api"); err == nil {
		t.Fatal("api accepted as the database")
	}
	for ref, want := range map[string]bool{"postgres:15": true, "docker.io/library/postgres@sha256:ab": true, "reg:5000/x/postgres": true, "postgres-exporter:1": false, "mypostgres": false} {
		if isPostgresImage(ref) != want {
			t.Errorf("isPostgresImage(%q) != %v", ref, want)
		}
	}
}

// baseTar is a minimal tar with what inspectTar reads.
func baseTar(t testing.TB, withManifest bool) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Uid: 999, Gid: 999, Uname: "postgres"}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	add("PG_VERSION", []byte("15\n"))
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl, 7716624514927399009)
	add("global/pg_control", ctl)
	if withManifest {
		add("backup_manifest", []byte(`{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [], "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]}`))
	}
	tw.Close()
	return buf.Bytes()
}

func TestInspectTar(t *testing.T) {
	info, err := inspectTar(bytes.NewReader(baseTar(t, true)))
	if err != nil {
		t.Fatal(err)
	}
	if info.version != "15" || info.systemID != "7716624514927399009" || info.wal != (walRange{1, "0/2000028", "0/2000100"}) {
		t.Fatalf("%+v", info)
	}
	if _, err := inspectTar(bytes.NewReader(baseTar(t, false))); err == nil {
		t.Fatal("a tar without backup_manifest accepted")
	}
	b := baseTar(t, true)
	if _, err := inspectTar(bytes.NewReader(b[:700])); err == nil {
		t.Fatal("a truncated tar accepted")
	}
}

func FuzzParseBackupManifest(f *testing.F) {
	f.Add([]byte(`{"PostgreSQL-Backup-Manifest-Version": 1, "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseBackupManifest(b)
		if err == nil && (r.Timeline < 1 || !lsnPattern.MatchString(r.StartLSN) || !lsnPattern.MatchString(r.EndLSN)) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func TestNumericOwners(t *testing.T) {
	var out bytes.Buffer
	if err := numericOwners(&out, bytes.NewReader(baseTar(t, true))); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	n := 0
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		n++
		if h.Uname != "" || h.Gname != "" || h.Uid != 999 || h.Gid != 999 {
			t.Fatalf("%s: %q/%q %d:%d", h.Name, h.Uname, h.Gname, h.Uid, h.Gid)
		}
	}
	if n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
}

func TestDependents(t *testing.T) {
	p := dbProject("continuous")
	api := p.Services["api"]
	api.DependsOn = types.DependsOnConfig{"db": {Condition: types.ServiceConditionHealthy}}
	p.Services["api"] = api
	worker := types.ServiceConfig{Name: "worker"}
	worker.DependsOn = types.DependsOnConfig{"api": {}}
	p.Services["worker"] = worker
	p.Services["other"] = types.ServiceConfig{Name: "other"}
	if err := AddSidecar(p); err != nil {
		t.Fatal(err)
	}
	got := dependents(&deployer.Stack{Project: p}, "db")
	if strings.Join(got, ",") != "api,worker" {
		t.Fatalf("dependents of db: %v, want api and worker (not the sidecar, not other)", got)
	}
}
