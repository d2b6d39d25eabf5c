package backup

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/invdeploy/invdeploy/deployer"
)

// Continuous is continuous protection of one PostgreSQL service, turned on
// by one line on the service:
//
//	x-invdeploy:
//	  backup: continuous                 # or {every: 24h, keep: 7}
//
// A sidecar service <service>-backup on the same image then streams WAL
// with pg_receivewal through a replication slot and takes a base backup
// with pg_basebackup every Every, keeping the newest Keep, all in the
// volume <project>_<service>-backup on the database's host.
type Continuous struct {
	// Every is the interval between base backups (default 24h).
	Every time.Duration
	// Keep is how many base backups are kept (default 7); WAL older than
	// the oldest kept is removed.
	Keep int
}

const (
	defaultEvery = 24 * time.Hour
	defaultKeep  = 7
	// extBackup is the key under the service's x-invdeploy.
	extBackup = "backup"
	// SlotName is the replication slot the sidecar streams through: the
	// database keeps WAL until the sidecar has it, so none is lost while
	// the sidecar is down (alert InvoicingBackupArchiveBehind says when).
	SlotName = "invdeploy_backup"
	// archiveMount is where the restore and list helpers mount the archive
	// volume (the sidecar mounts it where the image keeps its data).
	archiveMount = "/backup"
)

// LabelArchive marks continuous protection's archive volume; its value is
// the database service.
const LabelArchive = "io.invdeploy.backup-archive"

// SidecarName is the service continuous protection adds for service.
func SidecarName(service string) string { return service + "-backup" }

func archiveKey(service string) string { return service + "-backup" }

// continuousOf reads x-invdeploy.backup of s: ok is false when it is absent.
func continuousOf(s types.ServiceConfig) (c Continuous, ok bool, err error) {
	raw, _ := s.Extensions[deployer.ExtService].(map[string]any)
	v, present := raw[extBackup]
	if !present {
		return c, false, nil
	}
	return ParseContinuous(s.Name, v)
}

// ParseContinuous reads the value of x-invdeploy.backup: "continuous",
// true, or a mapping with every (a duration, 1m..720h) and keep (1..1000).
// false, "false", "off" and "" turn it off (so an interpolated
// ${VAR:-off} works).
func ParseContinuous(service string, v any) (Continuous, bool, error) {
	c := Continuous{Every: defaultEvery, Keep: defaultKeep}
	where := fmt.Sprintf("services.%s.%s.%s", service, deployer.ExtService, extBackup)
	switch x := v.(type) {
	case bool:
		return c, x, nil
	case string:
		switch x {
		case "continuous", "true":
			return c, true, nil
		case "false", "off", "":
			return c, false, nil
		}
		return c, false, fmt.Errorf("%s: want continuous or a mapping {every: 24h, keep: 7}, not %q", where, x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			val := x[k]
			switch k {
			case "every":
				str, _ := val.(string)
				d, err := time.ParseDuration(str)
				if err != nil || d < time.Minute || d > 720*time.Hour {
					return c, false, fmt.Errorf("%s.every: want a duration from 1m to 720h such as 24h, not %v", where, val)
				}
				c.Every = d
			case "keep":
				n, err := intValue(val)
				if err != nil || n < 1 || n > 1000 {
					return c, false, fmt.Errorf("%s.keep: want a number of base backups from 1 to 1000, not %v", where, val)
				}
				c.Keep = n
			default:
				return c, false, fmt.Errorf("%s: unknown key %q (every, keep)", where, k)
			}
		}
		return c, true, nil
	}
	return c, false, fmt.Errorf("%s: want continuous or a mapping {every: 24h, keep: 7}, not %v", where, v)
}

func intValue(v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case uint64:
		return int(n), nil
	case float64:
		if n != float64(int(n)) {
			return 0, fmt.Errorf("not an integer")
		}
		return int(n), nil
	case string:
		return strconv.Atoi(n)
	}
	return 0, fmt.Errorf("not a number")
}

// AddSidecar adds continuous protection's sidecar service and its archive
// volume to p when its PostgreSQL service asks for it (x-invdeploy backup),
// so up, status, down and the dry run see one model. A project without it
// is left as it is.
func AddSidecar(p *types.Project) error {
	var names []string
	for _, sn := range p.ServiceNames() {
		if _, on, err := continuousOf(p.Services[sn]); err != nil {
			return err
		} else if on {
			names = append(names, sn)
		}
	}
	for _, sn := range names {
		pg, err := FindPostgres(p, sn)
		if err != nil {
			return err
		}
		if _, taken := p.Services[SidecarName(sn)]; taken {
			return fmt.Errorf("services.%s.%s.%s: the service name %s it adds is taken", sn, deployer.ExtService, extBackup, SidecarName(sn))
		}
		db := p.Services[sn]
		side := sidecarService(pg, db)
		if p.Volumes == nil {
			p.Volumes = types.Volumes{}
		}
		p.Volumes[archiveKey(sn)] = types.VolumeConfig{Name: pg.ArchiveVolume(), Labels: types.Labels{LabelArchive: sn}}
		p.Services[side.Name] = side
	}
	return nil
}

func sidecarService(pg *Postgres, db types.ServiceConfig) types.ServiceConfig {
	str := func(s string) *string { return &s }
	env := types.MappingWithEquals{
		"PGHOST":        str(pg.Service),
		"PGUSER":        str(pg.Role),
		"BACKUP_EVERY":  str(strconv.Itoa(int(pg.Continuous.Every / time.Second))),
		"BACKUP_KEEP":   str(strconv.Itoa(pg.Continuous.Keep)),
		"BACKUP_SLOT":   str(SlotName),
		"BACKUP_MAXLAG": str(strconv.Itoa(maxLagBytes)),
		"ARCHIVE":       str(pg.Mount),
	}
	if v := db.Environment["POSTGRES_DB"]; v != nil && *v != "" {
		env["PGDATABASE"] = str(*v)
	} else {
		env["PGDATABASE"] = str(pg.Role)
	}
	// The password, as the database service reads it: a secret file (the
	// secrets come along), else the variable.
	if v := db.Environment["POSTGRES_PASSWORD_FILE"]; v != nil && *v != "" {
		env["PASSWORD_FILE"] = str(*v)
	} else if v := db.Environment["POSTGRES_PASSWORD"]; v != nil {
		env["PGPASSWORD"] = str(*v)
	}
	nets := map[string]*types.ServiceNetworkConfig{}
	for k := range db.Networks {
		nets[k] = nil
	}
	if len(nets) == 0 {
		nets = nil
	}
	s := types.ServiceConfig{Name: SidecarName(pg.Service)}
	s.Image = db.Image
	s.User = db.User
	s.Entrypoint = types.ShellCommand{"bash", "-c", sidecarScript, "invdeploy-backup"}
	s.Environment = env
	s.Secrets = db.Secrets
	s.Networks = nets
	s.Volumes = []types.ServiceVolumeConfig{{
		// Where the database's image has its data directory: the empty
		// volume takes that directory's owner (the database's user), and
		// the image's VOLUME there gets no anonymous volume.
		Type: types.VolumeTypeVolume, Source: archiveKey(pg.Service), Target: pg.Mount,
	}}
	s.DependsOn = types.DependsOnConfig{pg.Service: {Condition: types.ServiceConditionHealthy, Required: true}}
	s.HealthCheck = &types.HealthCheckConfig{
		Test:        types.HealthCheckTest{"CMD", "bash", "-c", sidecarHealth},
		Interval:    duration(5 * time.Second),
		Timeout:     duration(3 * time.Second),
		Retries:     ptr(uint64(3)),
		StartPeriod: duration(5 * time.Minute),
	}
	s.ReadOnly = true
	s.Tmpfs = types.StringList{"/tmp:size=16m", "/var/run/postgresql:size=1m"}
	s.CapDrop = []string{"ALL"}
	s.SecurityOpt = []string{"no-new-privileges:true"}
	s.MemLimit = types.UnitBytes(256 << 20)
	s.PidsLimit = 128
	s.Restart = "unless-stopped"
	s.StopGracePeriod = duration(20 * time.Second)
	s.Labels = types.Labels{"io.invdeploy.backup-for": pg.Service}
	return s
}

func duration(d time.Duration) *types.Duration { x := types.Duration(d); return &x }

func ptr[T any](v T) *T { return &v }

// maxLagBytes is how far archiving may fall behind the database's WAL
// before the sidecar reports itself unhealthy: one WAL segment.
const maxLagBytes = 16 << 20

// sidecarHealth is healthy while the sidecar's watch loop saw the slot
// active and within maxLagBytes in the last 30 s.
const sidecarHealth = `f=/tmp/archive-ok; [ -f $f ] && [ $(( $(date +%s) - $(stat -c %Y $f) )) -lt 30 ]`

// sidecarScript runs in the sidecar (bash on the postgres image):
//   - allows replication connections for the role from the stack's network
//     (one pg_hba.conf line, added once, then a reload; the official image
//     allows them from loopback only);
//   - streams WAL with pg_receivewal through a physical slot into
//     <archive>/<system id>-<timeline>/wal (a restore starts a new timeline,
//     so a new directory: WAL of different histories never mix);
//   - takes a base backup (pg_basebackup -Ft -X none, SHA-256 beside it)
//     when that directory has none or the newest is older than BACKUP_EVERY,
//     keeps the newest BACKUP_KEEP and removes WAL older than the oldest kept;
//   - every 2 s checks the slot: active and behind by less than
//     BACKUP_MAXLAG bytes -> /tmp/archive-ok (the healthcheck).
const sidecarScript = `set -u
umask 077
log() { printf '%s invdeploy-backup: %s\n' "$(date -u +%FT%TZ)" "$*"; }
if [ -n "${PASSWORD_FILE:-}" ]; then
	printf '*:*:*:*:%s\n' "$(sed -e 's/\\/\\\\/g' -e 's/:/\\:/g' "$PASSWORD_FILE")" > /tmp/pgpass
	export PGPASSFILE=/tmp/pgpass
fi
slot=$BACKUP_SLOT
q() { psql -X -Atq -v ON_ERROR_STOP=1 "$@"; }
until pg_isready -q; do sleep 1; done
q <<'SQL' || log "could not check pg_hba.conf for a replication line"
DO $$
DECLARE f text := current_setting('hba_file'); c text; m text; o oid;
BEGIN
  c := pg_read_file(f);
  IF position('invdeploy-backup' in c) > 0 THEN RETURN; END IF;
  SELECT auth_method INTO m FROM pg_hba_file_rules WHERE type = 'host' AND 'all' = ANY(database) AND error IS NULL ORDER BY line_number DESC LIMIT 1;
  c := c || E'\n# invdeploy-backup: pg_receivewal and pg_basebackup of continuous protection, from the stack network\nhost replication ' || quote_ident(current_user) || ' samenet ' || coalesce(m, 'scram-sha-256') || E'\n';
  o := lo_from_bytea(0, convert_to(c, 'UTF8'));
  PERFORM lo_export(o, f);
  PERFORM lo_unlink(o);
  PERFORM pg_reload_conf();
END $$;
SQL
q -c "SELECT pg_create_physical_replication_slot('$slot', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$slot')" >/dev/null
gen=
recv=
start_receiving() {
	local id
	id=$(psql -X -Atq "replication=true" -c IDENTIFY_SYSTEM 2>&1) || { log "replication connection refused: $id"; return 1; }
	IFS='|' read -r sysid tli _ _ <<<"$id"
	gen=$ARCHIVE/$sysid-$tli
	mkdir -p "$gen/wal" "$gen/base"
	pg_receivewal -D "$gen/wal" -S "$slot" --synchronous -n &
	recv=$!
	log "streaming WAL of timeline $tli into $gen/wal (pid $recv)"
}
newest_base() { ls -1 "$gen/base" 2>/dev/null | grep -v '\.partial$' | sort | tail -n 1; }
base_backup() {
	local stamp dir
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	dir=$gen/base/$stamp
	log "base backup $stamp"
	rm -rf "$dir.partial"
	if pg_basebackup -D "$dir.partial" -Ft -X none -c fast -l "invdeploy $stamp" && (cd "$dir.partial" && sha256sum base.tar > base.tar.sha256 && date -u +%Y-%m-%dT%H:%M:%SZ > finished) && mv "$dir.partial" "$dir"; then
		log "base backup $stamp done ($(du -sb "$dir" | cut -f1) bytes)"
		retain
	else
		log "base backup $stamp failed"
		rm -rf "$dir.partial"
	fi
}
retain() {
	local all n d g oldest wal
	all=$(ls -1d "$ARCHIVE"/*/base/*/ 2>/dev/null | grep -v '\.partial/$' | awk -F/ '{print $(NF-1) " " $0}' | sort | cut -d' ' -f2-)
	n=$(printf '%s\n' "$all" | grep -c . || true)
	printf '%s\n' "$all" | head -n $(( n > BACKUP_KEEP ? n - BACKUP_KEEP : 0 )) | while read -r d; do
		[ -n "$d" ] && rm -rf "$d" && log "removed base backup $d (keep $BACKUP_KEEP)"
	done
	for g in "$ARCHIVE"/*/; do
		g=${g%/}
		oldest=$(ls -1 "$g/base" 2>/dev/null | grep -v '\.partial$' | sort | head -n 1)
		if [ -z "$oldest" ]; then
			[ "$g" != "$gen" ] && rm -rf "$g" && log "removed $g: no base backup left"
			continue
		fi
		wal=$(tar -xOf "$g/base/$oldest/base.tar" backup_label | sed -n 's/^START WAL LOCATION: .* (file \(.*\))$/\1/p')
		[ -n "$wal" ] && pg_archivecleanup "$g/wal" "$wal"
	done
}
watch() {
	local lag
	while :; do
		lag=$(q -c "SELECT coalesce((SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '$slot' AND active), -1)" 2>/dev/null) || lag=-1
		if [ "$lag" -ge 0 ] && [ "$lag" -lt "$BACKUP_MAXLAG" ]; then
			printf '%s\n' "$lag" > /tmp/archive-ok
		fi
		sleep 2
	done
}
watch &
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
while :; do
	if [ -z "$recv" ] || ! kill -0 "$recv" 2>/dev/null; then
		[ -n "$recv" ] && { wait "$recv"; log "pg_receivewal exited ($?); restarting"; }
		recv=
		q -c "SELECT pg_create_physical_replication_slot('$slot', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$slot')" >/dev/null 2>&1
		start_receiving || { sleep 2; continue; }
		sleep 1
	fi
	last=$(newest_base)
	if [ -z "$last" ] || [ $(( $(date -u +%s) - $(date -u -d "$(sed -E 's/(....)(..)(..)T(..)(..)(..)Z/\1-\2-\3 \4:\5:\6/' <<<"$last") UTC" +%s) )) -ge "$BACKUP_EVERY" ]; then
		base_backup
	fi
	sleep 2 & wait $!
done
`
