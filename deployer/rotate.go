package deployer

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
)

// RotateOptions control RotateSecret.
type RotateOptions struct {
	// ConfigDir holds generated secrets; "" means ConfigDir(project).
	ConfigDir string
	// WaitTimeout bounds the up that follows; 0 means 3 min.
	WaitTimeout time.Duration
	// Lock holds the project's deploy lock for the whole rotation.
	Lock bool
	// ProxyBinary: see UpOptions.
	ProxyBinary string
}

// RotateSecret gives a generated PostgreSQL password secret (the bundled
// stack's db_password) a new value: a new password is generated, set in the
// database with ALTER ROLE (psql run in the database container as its own
// user, the password sent as a SCRAM verifier on stdin, so neither it nor
// the plain value is in an argument, the environment or the server's
// statement log), stored, and up then recreates the containers that use
// the secret.
//
// The database container is not restarted: its delivered copy of the
// secret is rewritten in place (PostgreSQL reads it only when it creates
// its data directory). The services that use the secret are then rolled by
// up (zero downtime behind the rollout proxy; recreated in place
// otherwise). Connections the old API opened before ALTER ROLE stay valid;
// one it opens between ALTER ROLE and the switch would be refused, so the
// window is kept to the roll's few seconds.
func (d *Deployer) RotateSecret(ctx context.Context, st *Stack, name string, o RotateOptions) (*UpResult, error) {
	p := st.Project
	if o.Lock {
		l, err := d.Lock(ctx, p.Name, LockOptions{Command: "secret rotate " + name})
		if err != nil {
			return nil, err
		}
		defer l.Unlock(ctx)
		d, _ = d.fenced(nil, l)
	}
	r, err := d.prepareRotation(ctx, p, name, o.ConfigDir)
	if err != nil {
		return nil, err
	}
	// The rotation's own operations (rotationOps), then up's plan.
	if err := d.setNewPassword(ctx, r); err != nil {
		return nil, err
	}
	d.rewriteDatabaseCopy(ctx, p, r, o.ConfigDir)
	d.out.Event("Secret %s rotated: role %s has the new password; rolling the services that use it onto it", name, r.role)
	return d.Up(ctx, st, UpOptions{ConfigDir: o.ConfigDir, WaitTimeout: o.WaitTimeout, ProxyBinary: o.ProxyBinary})
}

// rotation is one secret rotate: the secret, where this machine keeps it,
// the database service, its running container and role, and the new value
// (for a plan, a stand-in that is never shown or stored).
type rotation struct {
	project, name, db, role string
	src                     secretSource
	dbc                     container.Summary
	next                    []byte
}

// PlanRotate is what RotateSecret would do (secret rotate --dry-run): its
// own operations (the new password set in the database and stored, the
// database's delivered copy rewritten in place), then the plan of the up
// that follows, computed with a stand-in for the new value: which
// consumers are rolled or recreated onto it. It changes nothing.
func (d *Deployer) PlanRotate(ctx context.Context, st *Stack, name string, o RotateOptions) (*Plan, error) {
	r, err := d.prepareRotation(ctx, st.Project, name, o.ConfigDir)
	if err != nil {
		return nil, err
	}
	r.next = []byte(randomHex(24)) // only compared with what containers hold
	pl, err := d.Plan(ctx, st, UpOptions{ConfigDir: o.ConfigDir, ProxyBinary: o.ProxyBinary, rotating: r})
	if err != nil {
		return pl, err
	}
	pl.Ops = append(rotationOps(r), pl.Ops...)
	return pl, nil
}

// rotationOps are the operations of a rotation before up's: what
// setNewPassword and rewriteDatabaseCopy do.
func rotationOps(r *rotation) []Op {
	return []Op{
		{Kind: OpSecretRotate, Service: r.db, Target: r.name, Reason: fmt.Sprintf(
			"a new value: ALTER ROLE %s in %s, then kept on this machine (%s) and on the engine", r.role, containerName(r.dbc), r.src.Stored)},
		{Kind: OpSecretRewrite, Service: r.db, Target: containerName(r.dbc), Reason: "its copy of " + r.name + " is rewritten in place: the database is not restarted"},
	}
}

// prepareRotation checks that secret name can be rotated now and finds
// what the rotation acts on: the secret is a generated PostgreSQL password
// not taken from the environment, this machine keeps it, its database runs,
// and every consumer with containers is enabled.
func (d *Deployer) prepareRotation(ctx context.Context, p *types.Project, name, configDir string) (*rotation, error) {
	src, db, role, err := rotateTarget(p, name, configDir)
	if err != nil {
		return nil, err
	}
	if v := p.Environment[src.Env]; v != "" {
		return nil, fmt.Errorf("secret %s comes from %s, which is set: up would deliver that value, not a rotated one; unset %s (invdeploy then keeps a generated password) or change it and the database password yourself", name, src.Env, src.Env)
	}
	if _, err := os.Stat(src.Stored); err != nil {
		return nil, fmt.Errorf("secret %s has no stored value at %s (run up first): %w", name, src.Stored, err)
	}
	cs, err := d.projectContainers(ctx, p.Name, db)
	if err != nil {
		return nil, err
	}
	r := &rotation{project: p.Name, name: name, db: db, role: role, src: src}
	for _, c := range cs {
		if c.State == "running" {
			r.dbc = c
		}
	}
	if r.dbc.ID == "" {
		return nil, fmt.Errorf("service %s of %s is not running; run up first", db, p.Name)
	}
	if err := d.checkConsumersReachable(ctx, p, name); err != nil {
		return nil, err
	}
	return r, nil
}

// setNewPassword is OpSecretRotate: a new value is generated, set in the
// database, stored on this machine and on the engine.
func (d *Deployer) setNewPassword(ctx context.Context, r *rotation) error {
	// The new value waits next to the stored one until the database has
	// it, so a failure on either side leaves a consistent pair.
	next := r.src.Stored + ".new"
	if err := os.Remove(next); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove a stale %s: %w", next, err)
	}
	value, err := generateSecret(next)
	if err != nil {
		return err
	}
	verifier, err := scramVerifier(value)
	if err != nil {
		os.Remove(next)
		return err
	}
	stmt := fmt.Sprintf("ALTER ROLE %s PASSWORD '%s';\n", quoteIdent(r.role), verifier)
	if err := RunExec(ctx, d.engine, r.dbc.ID, Exec{Cmd: []string{"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-U", r.role, "-d", "postgres"},
		Stdin: strings.NewReader(stmt), Redact: func(s string) string { return strings.ReplaceAll(s, verifier, "<verifier>") }}); err != nil {
		os.Remove(next)
		return fmt.Errorf("set the new password of role %s in %s (the password is unchanged): %w", r.role, r.db, err)
	}
	if err := os.Rename(next, r.src.Stored); err != nil {
		return fmt.Errorf("the database now has the new password, kept in %s: move it to %s, then run up: %w", next, r.src.Stored, err)
	}
	// The engine keeps the value too, so another machine deploys it.
	if err := d.writeState(ctx, r.project, map[string][]byte{r.name: value}); err != nil {
		return fmt.Errorf("the database has the new password, kept in %s, but the engine's copy is the old one (another machine would deploy that): run secret rotate %s again: %w", r.src.Stored, r.name, err)
	}
	return nil
}

// rewriteDatabaseCopy is OpSecretRewrite: the database keeps its password
// in its data directory, so its copy of the secret is rewritten in place
// rather than the database restarted. A failure is a warning: up then
// recreates it.
func (d *Deployer) rewriteDatabaseCopy(ctx context.Context, p *types.Project, r *rotation, configDir string) {
	values, err := deliveryValues(p, configDir)
	if err == nil {
		err = d.redeliver(ctx, p, p.Services[r.db], r.dbc, values)
	}
	if err != nil {
		d.out.Event("warning: %s keeps the old value of %s in its files (%v): up recreates it", containerName(r.dbc), r.name, err)
	}
}

// checkConsumersReachable refuses a rotation that would leave a consumer of
// the secret with the old value: a service whose profile is not enabled is
// not rolled by the up that follows, but its containers (started by an
// earlier up with that profile) still log in with the old password and
// fail at their next restart. It names the service and the --profile that
// brings it along.
func (d *Deployer) checkConsumersReachable(ctx context.Context, p *types.Project, name string) error {
	var problems []Problem
	for _, sn := range slices.Sorted(maps.Keys(p.DisabledServices)) {
		s := p.DisabledServices[sn]
		files, err := deliveryFiles(s)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(files, func(f deliveredFile) bool { return f.Kind == kindSecret && f.Name == name }) {
			continue
		}
		cs, err := d.projectContainers(ctx, p.Name, sn)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			continue // created later with the stored (new) value
		}
		flags := ""
		for _, pr := range s.Profiles {
			flags += " --profile " + pr
		}
		problems = append(problems, Problem{Rule: "secret", Subject: name, Message: fmt.Sprintf(
			"service %s also uses it and has containers, but its profile is not enabled, so it would keep the old password: rotate with%s (or remove its containers first)", sn, flags)})
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}

// CheckRotate reports whether RotateSecret can rotate secret name of st,
// without asking the engine: nil, or an invalid request (exit 2) that says
// why not: the secret is not defined, is used only by services of a profile
// that is not enabled (the error names the --profile to add), is not a
// PostgreSQL password, or is not generated by invdeploy.
func CheckRotate(st *Stack, name string) error {
	_, _, _, err := rotateTarget(st.Project, name, "")
	return err
}

// rotateTarget is the source of secret name, the service whose PostgreSQL
// reads it as its password and that role, or an invalid request saying why
// rotate cannot give it a new value.
func rotateTarget(p *types.Project, name, configDir string) (src secretSource, db, role string, err error) {
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return src, "", "", err
	}
	src, defined := srcs[name]
	db, role, ok, err := postgresUsing(p.Services, name)
	if err != nil {
		return src, "", "", err
	}
	if !ok {
		return src, "", "", notRotatable(p, name, defined)
	}
	if !src.Generate {
		return src, "", "", Invalidf("secret %s is not generated by invdeploy (%s: true); change its source yourself, set the new password in the database (ALTER ROLE), then run up", name, ExtGenerate)
	}
	return src, db, role, nil
}

// notRotatable is the error for a secret that no enabled service reads as
// its PostgreSQL password (defined: p defines the secret). When a service
// of a profile that is not enabled uses it (the bundled stack's loader then
// drops the secret, as docker compose does), the error names that profile.
func notRotatable(p *types.Project, name string, defined bool) error {
	var users, profiles []string
	for _, sn := range slices.Sorted(maps.Keys(p.DisabledServices)) {
		s := p.DisabledServices[sn]
		for _, ref := range s.Secrets {
			if ref.Source == name {
				users = append(users, "services."+sn)
				for _, pr := range s.Profiles {
					if !slices.Contains(profiles, pr) {
						profiles = append(profiles, pr)
					}
				}
			}
		}
	}
	switch {
	case len(users) == 0 && !defined:
		return Invalidf("secret %s is not defined under top-level secrets of %s", name, p.Name)
	case len(users) == 0:
		return Invalidf("secret %s is not a PostgreSQL password (no service reads it through POSTGRES_PASSWORD_FILE); rotate supports those only", name)
	}
	if _, _, ok, _ := postgresUsing(p.DisabledServices, name); !ok {
		return Invalidf("secret %s (used by %s, profile %s) is not a PostgreSQL password (no service reads it through POSTGRES_PASSWORD_FILE); rotate supports those only", name, strings.Join(users, ", "), strings.Join(profiles, ", "))
	}
	return Invalidf("secret %s is used only by %s, whose profile %s is not enabled: add --profile %s", name, strings.Join(users, ", "), strings.Join(profiles, " or "), profiles[0])
}

// postgresUsing finds, among services, the one whose PostgreSQL reads its
// superuser password from secret name (POSTGRES_PASSWORD_FILE at the
// secret's target) and that role's name (POSTGRES_USER, default postgres);
// ok is false when there is none.
func postgresUsing(services types.Services, name string) (service, role string, ok bool, err error) {
	for _, sn := range slices.Sorted(maps.Keys(services)) {
		s := services[sn]
		files, err := deliveryFiles(s)
		if err != nil {
			return "", "", false, err
		}
		pwFile := s.Environment["POSTGRES_PASSWORD_FILE"]
		for _, f := range files {
			if f.Kind == kindSecret && f.Name == name && pwFile != nil && *pwFile == f.Target {
				role = "postgres"
				if u := s.Environment["POSTGRES_USER"]; u != nil && *u != "" {
					role = *u
				}
				return sn, role, true, nil
			}
		}
	}
	return "", "", false, nil
}

// scramVerifier is PostgreSQL's stored form of a SCRAM-SHA-256 password
// (RFC 5802/7677, as pg_authid keeps it): ALTER ROLE accepts it as is.
func scramVerifier(password []byte) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram verifier: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// redeliver rewrites the delivered secrets and configs of a running
// container in its files volume (through a loader container, as at
// create), so the container sees the new values without a restart.
func (d *Deployer) redeliver(ctx context.Context, p *types.Project, s types.ServiceConfig, c container.Summary, values map[string][]byte) error {
	files, err := deliveryFiles(s)
	if err != nil || len(files) == 0 {
		return err
	}
	list, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelDeliveryFor+"="+deliveryKey(c)))})
	if err != nil {
		return err
	}
	vol := ""
	for _, v := range list.Volumes {
		if strings.HasSuffix(v.Name, "-files") {
			vol = v.Name
		}
	}
	if vol == "" {
		return fmt.Errorf("no delivery volume")
	}
	hash, err := ConfigHash(s)
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(c.Labels[LabelContainerNumber])
	spec, err := convert(p, s, max(n, 1), hash)
	if err != nil {
		return err
	}
	if err := d.loadDelivery(ctx, p, s, spec, vol, files, values); err != nil {
		return err
	}
	d.delivered.remember(c.ID, files, values)
	return nil
}
