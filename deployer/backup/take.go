package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"

	"github.com/invdeploy/invdeploy/deployer"
)

// TakeOptions control Take.
type TakeOptions struct {
	// Store is where the encrypted backup is written.
	Store Store
	// Identity is the key the backup is encrypted to (its recipient).
	Identity *age.X25519Identity
	// Lock takes the project's deploy lock for the backup.
	Lock bool
}

// Take streams a base backup of pg's running database out of its container
// (pg_basebackup -Ft -X fetch to stdout, through an exec of the Engine
// API), encrypts it to the identity's recipient and writes it with its
// SHA-256 and WAL range into the store. Nothing is written to the
// database's host. An interrupted backup leaves no manifest, so it is
// never listed or restored.
func (b *Backups) Take(ctx context.Context, pg *Postgres, o TakeOptions) (*Manifest, error) {
	if o.Lock {
		l, err := b.Deployer.Lock(ctx, pg.Project, deployer.LockOptions{Command: "backup"})
		if err != nil {
			return nil, err
		}
		defer l.Unlock(context.WithoutCancel(ctx))
	}
	c, err := b.running(ctx, pg.Project, pg.Service)
	if err != nil {
		return nil, err
	}
	started := b.now().UTC()
	m := &Manifest{Format: manifestFormat, ID: NewID(started), Project: pg.Project, Service: pg.Service,
		Started: started, Recipient: o.Identity.Recipient().String()}
	m.File = m.ID + ".tar.age"
	f, err := o.Store.create(m.ID)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	counted := &countWriter{w: io.MultiWriter(f, sum)}
	bw := bufio.NewWriterSize(counted, 1<<20)
	enc, err := age.Encrypt(bw, o.Identity.Recipient())
	if err != nil {
		f.abort()
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	// pg_basebackup over the container's own socket: -X fetch puts the WAL
	// the backup needs into the tar (-X stream cannot write to stdout), -c
	// fast starts at once instead of waiting for the next checkpoint.
	cmd := []string{"pg_basebackup", "-h", "/var/run/postgresql", "-U", pg.Role, "-D", "-", "-Ft", "-X", "fetch", "-c", "fast", "-l", "invdeploy " + m.ID}
	b.Out.Event("Backing up %s of project %s (pg_basebackup in %s)", pg.Service, pg.Project, strings.TrimPrefix(firstName(c.Names), "/"))
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := deployer.RunExec(ctx, b.Engine, c.ID, deployer.Exec{Cmd: cmd, User: pg.User, Stdout: pw})
		pw.CloseWithError(err)
		done <- err
	}()
	info, ierr := inspectTar(io.TeeReader(pr, enc))
	if ierr != nil {
		pr.CloseWithError(ierr)
	}
	eerr := <-done
	if eerr != nil || ierr != nil {
		f.abort()
		return nil, fmt.Errorf("back up %s: %w", pg.Service, errors.Join(eerr, ierr))
	}
	if err := enc.Close(); err != nil {
		f.abort()
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := bw.Flush(); err != nil {
		f.abort()
		return nil, fmt.Errorf("write %s: %w", m.File, err)
	}
	m.Finished = b.now().UTC()
	m.Size, m.SHA256 = counted.n, hex.EncodeToString(sum.Sum(nil))
	m.PostgresVersion, m.SystemID = info.version, info.systemID
	m.Timeline, m.StartLSN, m.EndLSN = info.wal.Timeline, info.wal.StartLSN, info.wal.EndLSN
	if err := f.commit(m); err != nil {
		return nil, err
	}
	return m, nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// tarInfo is what a base backup's tar says about itself.
type tarInfo struct {
	version  string
	systemID string
	wal      walRange
}

// inspectTar reads a pg_basebackup tar to its end, taking PG_VERSION,
// the system identifier from global/pg_control and the WAL range from
// backup_manifest; a tar without them is not a base backup.
func inspectTar(r io.Reader) (tarInfo, error) {
	var info tarInfo
	var manifest []byte
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return info, fmt.Errorf("read the base backup: %w", err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "PG_VERSION":
			b, err := io.ReadAll(io.LimitReader(tr, 64))
			if err != nil {
				return info, err
			}
			info.version = strings.TrimSpace(string(b))
		case "global/pg_control":
			b, err := io.ReadAll(io.LimitReader(tr, 8))
			if err != nil {
				return info, err
			}
			if len(b) == 8 {
				info.systemID = fmt.Sprint(binary.LittleEndian.Uint64(b))
			}
		case "backup_manifest":
			var buf bytes.Buffer
			if _, err := io.Copy(&buf, io.LimitReader(tr, 256<<20)); err != nil {
				return info, err
			}
			manifest = buf.Bytes()
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return info, fmt.Errorf("read the base backup: %w", err)
		}
	}
	// The rest (tar padding) belongs to the file too.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return info, fmt.Errorf("read the base backup: %w", err)
	}
	if info.version == "" || info.systemID == "" || manifest == nil {
		return info, fmt.Errorf("the stream is not a complete base backup (PG_VERSION, global/pg_control or backup_manifest missing)")
	}
	w, err := parseBackupManifest(manifest)
	if err != nil {
		return info, err
	}
	info.wal = w
	return info, nil
}
