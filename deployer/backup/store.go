package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/invdeploy/invdeploy/deployer"
)

// Store is a directory of encrypted backups: <id>.tar.age, and <id>.json
// (the Manifest) once the file is complete.
type Store struct{ Dir string }

// DefaultDir is where backups of project are kept unless the user names a
// directory: $XDG_DATA_HOME/invdeploy/<project>/backups (default
// ~/.local/share/...), on the machine running invdeploy.
func DefaultDir(project string) (string, error) {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locate the data directory (set XDG_DATA_HOME or HOME, or give --dir): %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "invdeploy", project, "backups"), nil
}

// List returns the complete backups of project in the store, oldest first.
// A manifest that does not parse is reported in bad, not dropped silently.
func (s Store) List(project string) (list []*Manifest, bad []error, err error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list backups in %s: %w", s.Dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			bad = append(bad, err)
			continue
		}
		m, err := ParseManifest(b)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		if m.ID+".json" != e.Name() {
			bad = append(bad, fmt.Errorf("%s: holds the manifest of %s", e.Name(), m.ID))
			continue
		}
		if project == "" || m.Project == project {
			list = append(list, m)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list, bad, nil
}

// Verify checks the backup file against its manifest: size and SHA-256 of
// every byte. It reads the file; it changes nothing. A mismatch is a
// refusal (deployer.PreflightError, exit 3).
func (s Store) Verify(m *Manifest) error {
	path := filepath.Join(s.Dir, m.File)
	f, err := os.Open(path)
	if err != nil {
		return refuse(m.ID, "the backup file %s cannot be read: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return refuse(m.ID, "read %s: %v", path, err)
	}
	if n != m.Size {
		return refuse(m.ID, "%s is %d bytes, its manifest says %d: the file is truncated or damaged; nothing was changed", path, n, m.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return refuse(m.ID, "%s has SHA-256 %s, its manifest says %s: the file is damaged; nothing was changed", path, got, m.SHA256)
	}
	return nil
}

func refuse(subject, format string, args ...any) error {
	return &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "backup", Subject: subject, Message: fmt.Sprintf(format, args...)}}}
}

// create opens a new backup file for writing under a temporary name;
// commit renames it and writes the manifest (file first, manifest last,
// each fsynced), abort removes it.
func (s Store) create(id string) (*pendingFile, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the backup directory %s: %w", s.Dir, err)
	}
	tmp := filepath.Join(s.Dir, "."+id+".tar.age.partial")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	return &pendingFile{File: f, store: s, tmp: tmp}, nil
}

type pendingFile struct {
	*os.File
	store Store
	tmp   string
}

func (p *pendingFile) abort() {
	p.File.Close()
	os.Remove(p.tmp)
}

func (p *pendingFile) commit(m *Manifest) error {
	mb, err := m.Marshal()
	if err != nil {
		p.abort()
		return err
	}
	if err := p.Sync(); err != nil {
		p.abort()
		return fmt.Errorf("write %s: %w", p.tmp, err)
	}
	if err := p.Close(); err != nil {
		os.Remove(p.tmp)
		return fmt.Errorf("write %s: %w", p.tmp, err)
	}
	final := filepath.Join(p.store.Dir, m.File)
	if err := os.Rename(p.tmp, final); err != nil {
		os.Remove(p.tmp)
		return fmt.Errorf("store %s: %w", final, err)
	}
	mp := filepath.Join(p.store.Dir, m.ID+".json")
	tmp := mp + ".partial"
	if err := writeSynced(tmp, mb); err != nil {
		return err
	}
	if err := os.Rename(tmp, mp); err != nil {
		return fmt.Errorf("store %s: %w", mp, err)
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
