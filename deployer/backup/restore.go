package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/version"
)

// RestoreOptions control Restore.
type RestoreOptions struct {
	// Target is the point to restore to.
	Target Target
	// Store holds the encrypted backups; used when continuous protection
	// has nothing for Target, or when BackupID names one of them.
	Store Store
	// BackupID restores that encrypted backup (its end point).
	BackupID string
	// IdentityPath is the age key that decrypts Store's backups.
	IdentityPath string
	// Up brings the stack up on the restored volume (Lock is ignored:
	// Restore holds the lock).
	Up deployer.UpOptions
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Source is what was restored: "backup <id>" or "archive
	// <generation>/<stamp> + WAL".
	Source string `json:"source"`
	// RecoveredTo is PostgreSQL's "last completed transaction" time, when
	// it logged one.
	RecoveredTo string `json:"recovered_to,omitempty"`
	// LSN is the WAL position the restored database started at.
	LSN string `json:"lsn"`
	// Volume holds the restored data now (the service's volume); Kept the
	// data from before, until the user removes it ("" when there was none).
	Volume string `json:"volume"`
	Kept   string `json:"kept,omitempty"`
	// Elapsed is the whole restore, up to the stack healthy (the RTO).
	Elapsed time.Duration `json:"elapsed_ns"`
}

// source is what a restore starts from, chosen before anything changes.
type source struct {
	manifest *Manifest // an encrypted backup
	dir      string    // in this directory
	identity *age.X25519Identity
	base     *ArchiveBase // or a base backup in the archive
	archive  *Archive
}

// Restore brings pg's data back to o.Target: it checks the chosen backup
// (checksum, key) before anything changes, takes the deploy lock, restores
// into a fresh volume and lets PostgreSQL recover there until it reaches
// consistency and promotes; only then it stops the database, keeps its
// current data in <volume>-before-restore-<time>, puts the restored data
// in the service's volume and brings the stack up, waiting for health (the
// API's readiness included). If the stack does not turn healthy the data
// from before is put back (exit 4).
func (b *Backups) Restore(ctx context.Context, st *deployer.Stack, pg *Postgres, o RestoreOptions) (*RestoreResult, error) {
	start := b.now()
	if err := b.RefuseSwarm(ctx, pg); err != nil {
		return nil, err
	}
	src, err := b.choose(ctx, pg, o)
	if err != nil {
		return nil, err
	}
	if err := b.keepRunningImages(ctx, st); err != nil {
		return nil, err
	}
	// The up after the switch checks the stack first: a refusal there
	// (an image it cannot get, a secret missing) is found now, while
	// nothing has changed, not after the database was stopped.
	if _, err := b.Deployer.Check(ctx, st, deployer.CheckOptions{Remote: o.Up.Remote, ConfigDir: o.Up.ConfigDir, Build: o.Up.Build}); err != nil {
		return nil, err
	}
	l, err := b.Deployer.Lock(ctx, pg.Project, deployer.LockOptions{Command: "restore"})
	if err != nil {
		return nil, err
	}
	defer l.Unlock(context.WithoutCancel(ctx))
	stamp := NewID(start)
	fresh := pg.Volume + "-restore-" + strings.ToLower(stamp)
	res, err := b.recover(ctx, pg, src, o.Target, fresh, stamp)
	if err != nil {
		b.Engine.VolumeRemove(context.WithoutCancel(ctx), fresh, true)
		return nil, err
	}
	defer b.Engine.VolumeRemove(context.WithoutCancel(ctx), fresh, true)
	res.Volume = pg.Volume
	kept, err := b.switchTo(ctx, pg, fresh, stamp)
	res.Kept = kept
	if err != nil {
		return res, err
	}
	up := o.Up
	up.Lock = false
	switched := b.now()
	_, err = b.Deployer.Up(ctx, st, up)
	if err == nil {
		// A container up kept (the API) still shows the health it had
		// before the switch: wait for a check run on the restored data.
		b.Out.Event("Stack up on the restored data after %.1fs; waiting for a healthcheck of %s on it", b.now().Sub(start).Seconds(), strings.Join(dependents(st, pg.Service), ", "))
		err = b.waitFreshHealth(ctx, pg.Project, dependents(st, pg.Service), switched, up.WaitTimeout)
	}
	if err != nil {
		b.Out.Event("The stack did not turn healthy on the restored data: putting the data from before back")
		if berr := b.putBack(ctx, pg, kept, stamp); berr != nil {
			return res, fmt.Errorf("%w; and putting the data from before back failed: %v (it is in volume %s)", err, berr, kept)
		}
		if _, uerr := b.Deployer.Up(ctx, st, up); uerr != nil {
			return res, fmt.Errorf("%w; the data from before is back in %s but the stack is not healthy: %v", err, pg.Volume, uerr)
		}
		b.Out.Event("The data from before is back in %s and serves", pg.Volume)
		return res, fmt.Errorf("the stack on the restored data: %w", err)
	}
	res.Elapsed = b.now().Sub(start)
	return res, nil
}

// keepRunningImages pins each service of st whose running container runs
// an image its compose image reference no longer names (a build or a new
// tag since the deploy) to the image it runs, without build or pull: a
// restore brings data back and deploys no new code (nor builds any, on a
// host that cannot). Services named as they run are left as they are, so
// up keeps their containers.
func (b *Backups) keepRunningImages(ctx context.Context, st *deployer.Stack) error {
	for _, name := range st.Project.ServiceNames() {
		s := st.Project.Services[name]
		cs, err := b.serviceContainers(ctx, st.Project.Name, name)
		if err != nil {
			return err
		}
		running := ""
		for _, c := range cs {
			if c.State == "running" && c.Labels[labelHelper] == "" && c.Labels[deployer.LabelRole] == "" {
				running = c.ImageID
				break
			}
		}
		if running == "" {
			continue
		}
		ref := deployer.ImageRef(st.Project.Name, s)
		if ins, err := b.Engine.ImageInspect(ctx, ref); err == nil && ins.ID == running {
			continue
		}
		b.Out.Event("services.%s keeps the image it runs (%s): %s is another image now, and a restore deploys no new code", name, shortID(running), ref)
		s.Image, s.Build, s.PullPolicy = running, nil, types.PullPolicyNever
		st.Project.Services[name] = s
	}
	return nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// labelSwarmTask is the label the engine puts on a Swarm task's container.
const labelSwarmTask = "com.docker.swarm.task.id"

// RefuseSwarm refuses a restore of a database that runs as a Swarm
// service: its orchestrator would restart the task the switch stops, and
// the up after it would start plain containers beside the service.
func (b *Backups) RefuseSwarm(ctx context.Context, pg *Postgres) error {
	cs, err := b.serviceContainers(ctx, pg.Project, pg.Service)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.Labels[labelSwarmTask] != "" {
			return refuse(pg.Service, "service %s of project %s runs as a Swarm service on this engine: restore acts on plain containers and would race the orchestrator; see docs/guides/backups.md, \"On Swarm\" (nothing was changed)", pg.Service, pg.Project)
		}
	}
	return nil
}

// waitFreshHealth waits until every running container of services (not
// their rollout proxies) with a healthcheck has passed one that started
// after since (the switch): the API's readiness on the restored database,
// not a status from before.
func (b *Backups) waitFreshHealth(ctx context.Context, project string, services []string, since time.Time, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	deadline := b.now().Add(timeout)
	cs, err := b.serviceContainers(ctx, project, services...)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.Labels[labelHelper] != "" || c.Labels[deployer.LabelRole] != "" || c.State != "running" {
			continue
		}
		for {
			ins, err := b.Engine.ContainerInspect(ctx, c.ID)
			if err != nil {
				return fmt.Errorf("inspect %s: %w", firstName(c.Names), err)
			}
			if ins.State == nil || ins.State.Health == nil {
				break // no healthcheck
			}
			passed, last := false, ""
			for _, l := range ins.State.Health.Log {
				if l.Start.After(since) {
					passed = passed || l.ExitCode == 0
					last = strings.TrimSpace(l.Output)
				}
			}
			if passed {
				break
			}
			if b.now().After(deadline) {
				return &deployer.UnhealthyError{Container: strings.TrimPrefix(firstName(c.Names), "/"), Service: c.Labels[deployer.LabelService],
					Reason: fmt.Sprintf("no healthcheck passed on the restored data within %s", timeout), HealthLog: nonEmpty(last)}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// dependents are the services that depend on service, directly or not
// (its continuous protection sidecar aside: up waited for it).
func dependents(st *deployer.Stack, service string) []string {
	in := map[string]bool{service: true}
	for changed := true; changed; {
		changed = false
		for _, sn := range st.Project.ServiceNames() {
			if in[sn] || sn == SidecarName(service) {
				continue
			}
			for dep := range st.Project.Services[sn].DependsOn {
				if in[dep] {
					in[sn], changed = true, true
					break
				}
			}
		}
	}
	delete(in, service)
	out := make([]string, 0, len(in))
	for sn := range in {
		out = append(out, sn)
	}
	sort.Strings(out)
	return out
}

// choose picks the source and checks it; it changes nothing.
func (b *Backups) choose(ctx context.Context, pg *Postgres, o RestoreOptions) (*source, error) {
	if o.BackupID == "" {
		a, err := b.ListArchive(ctx, pg)
		if err != nil {
			return nil, err
		}
		if a != nil {
			if base := a.pick(o.Target); base != nil && a.walOf(base.Generation) != nil {
				return &source{base: base, archive: a}, nil
			}
		}
	}
	// A backup named by id may come from another project (remote backup
	// of the host's stack, restored into a local one).
	project := pg.Project
	if o.BackupID != "" {
		project = ""
	}
	list, bad, err := o.Store.List(project)
	if err != nil {
		return nil, err
	}
	for _, e := range bad {
		b.Out.Event("warning: %v", e)
	}
	var m *Manifest
	for i := len(list) - 1; i >= 0; i-- {
		c := list[i]
		if c.Service != pg.Service {
			continue
		}
		if o.BackupID != "" {
			if c.ID == o.BackupID {
				m = c
				break
			}
			continue
		}
		if o.Target.Latest || !c.Finished.After(o.Target.Time) {
			m = c
			break
		}
	}
	if m == nil {
		what := "for --to " + o.Target.String()
		if o.BackupID != "" {
			what = "with id " + o.BackupID
		}
		return nil, refuse(pg.Service, "no backup of %s/%s %s: continuous protection has none and %s holds none (invdeploy backups lists them)", pg.Project, pg.Service, what, o.Store.Dir)
	}
	if err := o.Store.Verify(m); err != nil {
		return nil, err
	}
	id, err := LoadIdentity(o.IdentityPath, false)
	if err != nil {
		return nil, refuse(m.ID, "%v", err)
	}
	if id.Recipient().String() != m.Recipient {
		return nil, refuse(m.ID, "backup %s is encrypted to %s, the key %s is %s: give the right one with --key", m.ID, m.Recipient, o.IdentityPath, id.Recipient())
	}
	if !o.Target.Latest && o.BackupID == "" {
		b.Out.Event("No WAL archive covers %s: restoring backup %s, which ends at %s (continuous protection restores any second)", o.Target, m.ID, m.Finished.Format(time.RFC3339))
	}
	return &source{manifest: m, dir: o.Store.Dir, identity: id}, nil
}

// recover fills volume fresh from src and lets PostgreSQL recover in it.
func (b *Backups) recover(ctx context.Context, pg *Postgres, src *source, t Target, fresh, stamp string) (*RestoreResult, error) {
	labels := map[string]string{deployer.LabelProject: pg.Project, deployer.LabelManagedBy: "invdeploy", deployer.LabelVersion: version.Version, labelHelper: pg.Project}
	if _, err := b.Engine.VolumeCreate(ctx, volume.CreateOptions{Name: fresh, Driver: "local", Labels: labels}); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", fresh, err)
	}
	env := []string{"PGDATA=" + pg.DataDir, "PGUSER=" + pg.Role}
	mounts := mountSpecs{{fresh, pg.Mount, false}}
	res := &RestoreResult{}
	if src.base != nil {
		res.Source = fmt.Sprintf("archive %s/%s + WAL", src.base.Generation, src.base.Stamp)
		gen := archiveMount + "/" + src.base.Generation
		env = append(env, "BASE_DIR="+gen+"/base/"+src.base.Stamp, "WAL_DIR="+gen+"/wal")
		if !t.Latest {
			env = append(env, "TARGET_TIME="+pgTime(t.Time))
		}
	} else {
		res.Source = "backup " + src.manifest.ID
		if pg.DataDir != pg.Mount {
			return nil, fmt.Errorf("restoring an encrypted backup into a PGDATA below its volume (%s in %s) is not supported", pg.DataDir, pg.Mount)
		}
		if err := b.fillFromStore(ctx, fresh, pg, src, stamp); err != nil {
			return nil, err
		}
	}
	if src.archive != nil || src.base != nil {
		mounts = append(mounts, mountSpec{pg.ArchiveVolume(), archiveMount, true})
		env = append(env, "SYSID="+sysidOf(src))
	} else if ok, _ := b.volumeExists(ctx, pg.ArchiveVolume()); ok {
		// New timeline ids must not collide with the archive's history.
		mounts = append(mounts, mountSpec{pg.ArchiveVolume(), archiveMount, true})
		env = append(env, "SYSID="+src.manifest.SystemID)
	}
	b.Out.Event("Restoring %s into the fresh volume %s (the current data is not touched)", res.Source, fresh)
	begin := b.now()
	out, code, err := b.run(ctx, pg.Project, helper{
		Name: fmt.Sprintf("%s-restore-%s", pg.Project, strings.ToLower(stamp)), Image: pg.Image, User: pg.User,
		Env: env, Cmd: []string{"bash", "-c", recoverScript}, Mounts: mounts.mounts(),
	})
	if err != nil {
		return nil, err
	}
	if code == 3 {
		return nil, refuse(res.Source, "%s (nothing was changed)", lastLine(out, "invdeploy-restore:"))
	}
	if code != 0 {
		return nil, fmt.Errorf("recovery of %s failed, nothing was changed (exit %d):\n%s", res.Source, code, tailLines(out, 15))
	}
	m := restoredRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("recovery of %s did not report a result, nothing was changed:\n%s", res.Source, tailLines(out, 15))
	}
	res.LSN = m[1]
	if lt := lastTxRE.FindAllStringSubmatch(out, -1); len(lt) > 0 {
		res.RecoveredTo = lt[len(lt)-1][1]
	}
	b.Out.Event("PostgreSQL reached consistency and promoted at %s in %s (%.1fs)", res.LSN, fresh, b.now().Sub(begin).Seconds())
	return res, nil
}

var (
	restoredRE = regexp.MustCompile(`(?m)^RESTORED ([0-9A-F]+/[0-9A-F]+)$`)
	lastTxRE   = regexp.MustCompile(`last completed transaction was at log time ([0-9: .+\-]+)`)
)

func sysidOf(src *source) string {
	if src.base != nil {
		id, _, _ := strings.Cut(src.base.Generation, "-")
		return id
	}
	return src.manifest.SystemID
}

// fillFromStore decrypts the backup file into volume vol, through a
// never-started container of the image's default user: the engine then
// keeps the owners the files have in the backup (with copyUIDGID and a
// named user it would resolve the name on its own host).
func (b *Backups) fillFromStore(ctx context.Context, vol string, pg *Postgres, src *source, stamp string) error {
	c, err := b.Engine.ContainerCreate(ctx, &container.Config{Image: pg.Image, Entrypoint: []string{"true"},
		Labels: map[string]string{labelHelper: pg.Project, deployer.LabelManagedBy: "invdeploy"}},
		&container.HostConfig{NetworkMode: "none", Mounts: mountSpecs{{vol, pg.Mount, false}}.mounts()}, nil, nil,
		fmt.Sprintf("%s-restore-load-%s", pg.Project, strings.ToLower(stamp)))
	if err != nil {
		return fmt.Errorf("create the loader of %s: %w", vol, err)
	}
	defer b.Engine.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true})
	f, err := os.Open(filepath.Join(src.dir, src.manifest.File))
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := age.Decrypt(f, src.identity)
	if err != nil {
		return refuse(src.manifest.ID, "decrypt backup %s: %v (nothing was changed)", src.manifest.ID, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(numericOwners(pw, r)) }()
	if err := b.Engine.CopyToContainer(ctx, c.ID, pg.DataDir, pr, container.CopyToContainerOptions{CopyUIDGID: true}); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("load backup %s into the fresh volume: %w", src.manifest.ID, err)
	}
	return nil
}

// numericOwners copies the tar in r to w without user and group names:
// the engine maps names through the host's own user database (measured on
// engine 20.10: postgres became the host's uid 101), while the ids in the
// header are the database's, which the container has.
func numericOwners(w io.Writer, r io.Reader) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// recoverScript runs in the restore helper (bash on the database's image,
// no network): extract the archive's base backup after checking its
// SHA-256 (exit 3 on a mismatch), or use the one loaded from an encrypted
// backup; recover with recovery.signal (a new timeline, so continuous
// protection starts a new archive directory) to TARGET_TIME or to the end
// of the WAL, wait for the promotion (consistency reached), print
// "RESTORED <lsn>", shut down cleanly.
const recoverScript = `set -eu
log() { echo "invdeploy-restore: $*"; }
if [ -n "${BASE_DIR:-}" ]; then
	(cd "$BASE_DIR" && sha256sum -c --status base.tar.sha256) || { log "the SHA-256 of $BASE_DIR/base.tar does not match base.tar.sha256: the base backup is damaged"; exit 3; }
	tar -xf "$BASE_DIR/base.tar" -C "$PGDATA"
fi
[ -f "$PGDATA/PG_VERSION" ] || { log "no cluster in $PGDATA after loading the backup"; exit 1; }
chmod 700 "$PGDATA"
cat > /tmp/fetch.sh <<'EOS'
f=$1; p=$2
case $f in
*.history)
	for d in /backup/"${SYSID:-none}"-*/wal; do [ -f "$d/$f" ] && exec cp "$d/$f" "$p"; done
	exit 1;;
esac
[ -n "${WAL_DIR:-}" ] && [ -f "$WAL_DIR/$f" ] && exec cp "$WAL_DIR/$f" "$p"
exit 1
EOS
if [ -n "${WAL_DIR:-}" ]; then
	for p in "$WAL_DIR"/*.partial; do
		[ -e "$p" ] && cp "$p" "$PGDATA/pg_wal/$(basename "$p" .partial)"
	done
fi
: > "$PGDATA/recovery.signal"
args=(-D "$PGDATA" -c listen_addresses= -c "restore_command=bash /tmp/fetch.sh %f %p" -c recovery_target_timeline=current -c recovery_target_action=promote -c archive_mode=off)
recover() {
	postgres "$@" 2> >(tee -a /tmp/pg.log >&2) &
	pid=$!
	r=
	for i in $(seq 1 3000); do
		if ! kill -0 $pid 2>/dev/null; then
			wait $pid || return 1
			return 1
		fi
		r=$(psql -X -Atq -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null || true)
		[ "$r" = f ] && return 0
		sleep 0.2
	done
	log "recovery did not finish in 10 minutes"; kill -INT $pid; exit 1
}
if [ -n "${TARGET_TIME:-}" ]; then
	if ! recover "${args[@]}" -c "recovery_target_time=$TARGET_TIME"; then
		# Every transaction the WAL holds committed before TARGET_TIME:
		# its end is the state at that time.
		grep -q "recovery ended before configured recovery target was reached" /tmp/pg.log || { log "PostgreSQL stopped during recovery"; exit 1; }
		log "the WAL ends before $TARGET_TIME: recovering to its end, the state at that time"
		recover "${args[@]}" || { log "PostgreSQL stopped during recovery"; exit 1; }
	fi
else
	recover "${args[@]}" || { log "PostgreSQL stopped during recovery"; exit 1; }
fi
psql -X -Atq -d postgres -c "CHECKPOINT" -c "SELECT 'RESTORED ' || pg_current_wal_lsn()"
kill -INT $pid
wait $pid || true
log "clean shutdown"
`

func lastLine(out, prefix string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], prefix) {
			return strings.TrimSpace(strings.TrimPrefix(lines[i], prefix))
		}
	}
	return strings.TrimSpace(out)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// serviceContainers are the containers of services in project (not helpers).
func (b *Backups) serviceContainers(ctx context.Context, project string, services ...string) ([]container.Summary, error) {
	var out []container.Summary
	for _, s := range services {
		cs, err := b.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", deployer.LabelProject+"="+project), filters.Arg("label", deployer.LabelService+"="+s))})
		if err != nil {
			return nil, fmt.Errorf("list the containers of %s: %w", s, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// stopDatabase stops and removes the database's and its sidecar's
// containers (up creates them again).
func (b *Backups) stopDatabase(ctx context.Context, pg *Postgres) error {
	cs, err := b.serviceContainers(ctx, pg.Project, pg.Service, SidecarName(pg.Service))
	if err != nil {
		return err
	}
	for _, c := range cs {
		timeout := 30
		if err := b.Engine.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeout}); err != nil {
			return fmt.Errorf("stop %s: %w", firstName(c.Names), err)
		}
		if err := b.Engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil {
			return fmt.Errorf("remove %s: %w", firstName(c.Names), err)
		}
		// Its secret delivery volumes go with it, as with down.
		name := strings.TrimPrefix(firstName(c.Names), "/")
		vols, err := b.Engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", deployer.LabelDeliveryFor+"="+name))})
		if err != nil {
			return fmt.Errorf("list the delivery volumes of %s: %w", name, err)
		}
		for _, v := range vols.Volumes {
			if err := b.Engine.VolumeRemove(ctx, v.Name, false); err != nil {
				return fmt.Errorf("remove volume %s: %w", v.Name, err)
			}
		}
	}
	return nil
}

// copyScript copies between the volumes of the switch (as root, so owners
// and modes are kept): the current data to /kept when KEEP is set, then
// the restored data over /data.
const copyScript = `set -eu
if [ -n "${KEEP:-}" ]; then cp -a /data/. /kept/; chown --reference=/data /kept; chmod --reference=/data /kept; fi
find /data -mindepth 1 -delete
cp -a /restored/. /data/
chown --reference=/restored /data
chmod --reference=/restored /data
`

// switchTo stops the database and puts fresh's data into the service's
// volume, keeping the current data (if any) in a new volume it returns.
func (b *Backups) switchTo(ctx context.Context, pg *Postgres, fresh, stamp string) (string, error) {
	had, err := b.volumeExists(ctx, pg.Volume)
	if err != nil {
		return "", err
	}
	b.Out.Event("Stopping %s to switch it to the restored data", pg.Service)
	if err := b.stopDatabase(ctx, pg); err != nil {
		return "", err
	}
	labels := map[string]string{deployer.LabelProject: pg.Project, deployer.LabelVolume: pg.VolumeKey, deployer.LabelManagedBy: "invdeploy", deployer.LabelVersion: version.Version}
	if !had {
		if _, err := b.Engine.VolumeCreate(ctx, volume.CreateOptions{Name: pg.Volume, Driver: "local", Labels: labels}); err != nil {
			return "", fmt.Errorf("create volume %s: %w", pg.Volume, err)
		}
	}
	kept := ""
	mounts := mountSpecs{{fresh, "/restored", true}, {pg.Volume, "/data", false}}
	env := []string{}
	if had {
		kept = pg.Volume + "-before-restore-" + strings.ToLower(stamp)
		kl := map[string]string{deployer.LabelProject: pg.Project, deployer.LabelManagedBy: "invdeploy", "io.invdeploy.kept-by-restore": stamp}
		if _, err := b.Engine.VolumeCreate(ctx, volume.CreateOptions{Name: kept, Driver: "local", Labels: kl}); err != nil {
			return "", fmt.Errorf("create volume %s: %w", kept, err)
		}
		mounts = append(mounts, mountSpec{kept, "/kept", false})
		env = append(env, "KEEP=1")
	}
	out, code, err := b.run(ctx, pg.Project, helper{
		Name: fmt.Sprintf("%s-restore-switch-%s", pg.Project, strings.ToLower(stamp)), Image: pg.Image, User: "0:0",
		Env: env, Cmd: []string{"bash", "-c", copyScript}, Mounts: mounts.mounts(),
	})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit %d: %s", code, tailLines(out, 5))
	}
	if err != nil {
		return kept, fmt.Errorf("switch %s to the restored data: %w (the data from before is in %s)", pg.Volume, err, orNone(kept))
	}
	if kept != "" {
		b.Out.Event("The data from before is kept in volume %s (remove it when you no longer need it)", kept)
	}
	b.Out.Event("Switched %s to the restored data", pg.Volume)
	return kept, nil
}

func orNone(s string) string {
	if s == "" {
		return "no volume: there was none"
	}
	return s
}

// putBack restores the data from before (kept) into the service's volume.
func (b *Backups) putBack(ctx context.Context, pg *Postgres, kept, stamp string) error {
	ctx = context.WithoutCancel(ctx)
	if err := b.stopDatabase(ctx, pg); err != nil {
		return err
	}
	if kept == "" {
		return errors.Join(b.Engine.VolumeRemove(ctx, pg.Volume, true))
	}
	out, code, err := b.run(ctx, pg.Project, helper{
		Name: fmt.Sprintf("%s-restore-back-%s", pg.Project, strings.ToLower(stamp)), Image: pg.Image, User: "0:0",
		Cmd: []string{"bash", "-c", copyScript}, Mounts: mountSpecs{{kept, "/restored", true}, {pg.Volume, "/data", false}}.mounts(),
	})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit %d: %s", code, tailLines(out, 5))
	}
	return err
}

// nonEmpty is s as a one-line health log, none when empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
