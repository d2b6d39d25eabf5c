// Package backup takes, lists and restores backups of a stack's PostgreSQL
// through the Docker Engine API: base backups streamed out of the running
// database container by pg_basebackup, encrypted with age and checksummed
// on the machine running invdeploy; continuous protection by a sidecar
// service (pg_receivewal + scheduled pg_basebackup) that one line in the
// compose file adds; and restore into a fresh volume, verified before the
// stack is switched to it.
package backup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// manifestFormat is the version of the manifest layout written today.
const manifestFormat = 1

// Manifest describes one encrypted base backup file. It is written beside
// the file as <id>.json once the file is complete, so a backup without a
// manifest is an unfinished one.
type Manifest struct {
	// Format is the manifest layout version (1).
	Format int `json:"format"`
	// ID names the backup: its start time, UTC, 20061225T150405Z.
	ID string `json:"id"`
	// Project and Service are the stack and its PostgreSQL service.
	Project string `json:"project"`
	Service string `json:"service"`
	// Started and Finished bound the backup: it restores to a point
	// at or shortly after Finished.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// File is the encrypted tar (pg_basebackup -Ft), a name in the same
	// directory: <id>.tar.age.
	File string `json:"file"`
	// Size and SHA256 are those of File as written (the ciphertext), so a
	// backup is checked without its key.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Recipient is the age public key File is encrypted to.
	Recipient string `json:"recipient"`
	// PostgresVersion is the major version of the cluster (PG_VERSION).
	PostgresVersion string `json:"postgres_version"`
	// SystemID is the cluster's system identifier (pg_control).
	SystemID string `json:"system_id"`
	// Timeline, StartLSN and EndLSN are the WAL range the backup needs
	// (from its backup_manifest); the WAL is inside the file.
	Timeline int    `json:"timeline"`
	StartLSN string `json:"start_lsn"`
	EndLSN   string `json:"end_lsn"`
}

var (
	idPattern  = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z$`)
	lsnPattern = regexp.MustCompile(`^[0-9A-F]{1,8}/[0-9A-F]{1,8}$`)
	hexPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// idLayout formats a backup's ID from its start time.
const idLayout = "20060102T150405Z"

// NewID is the ID of a backup started at t.
func NewID(t time.Time) string { return t.UTC().Format(idLayout) }

// ParseManifest decodes and checks a manifest: unknown fields, a file name
// with a path in it, or a malformed checksum are errors, so a damaged or
// hand-edited manifest is refused rather than half-trusted.
func ParseManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest: data after the JSON object")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	switch {
	case m.Format != manifestFormat:
		return fmt.Errorf("manifest: format %d, this invdeploy reads %d", m.Format, manifestFormat)
	case !idPattern.MatchString(m.ID):
		return fmt.Errorf("manifest: id %q is not a backup id like 20061225T150405Z", m.ID)
	case m.File != m.ID+".tar.age":
		return fmt.Errorf("manifest %s: file %q, want %s.tar.age", m.ID, m.File, m.ID)
	case m.Size <= 0:
		return fmt.Errorf("manifest %s: size %d", m.ID, m.Size)
	case !hexPattern.MatchString(m.SHA256):
		return fmt.Errorf("manifest %s: sha256 %q is not 64 lower-case hex digits", m.ID, m.SHA256)
	case !strings.HasPrefix(m.Recipient, "age1") || strings.ContainsAny(m.Recipient, " \t\r\n"):
		return fmt.Errorf("manifest %s: recipient %q is not an age public key", m.ID, m.Recipient)
	case m.Finished.Before(m.Started):
		return fmt.Errorf("manifest %s: finished before it started", m.ID)
	case m.Timeline < 1:
		return fmt.Errorf("manifest %s: timeline %d", m.ID, m.Timeline)
	case !lsnPattern.MatchString(m.StartLSN) || !lsnPattern.MatchString(m.EndLSN):
		return fmt.Errorf("manifest %s: WAL range %q..%q is not two LSNs", m.ID, m.StartLSN, m.EndLSN)
	case m.Project == "" || m.Service == "":
		return fmt.Errorf("manifest %s: no project or service", m.ID)
	}
	return nil
}

// Marshal is the manifest as written to disk.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// walRange is the part of pg_basebackup's backup_manifest invdeploy reads.
type walRange struct {
	Timeline int
	StartLSN string
	EndLSN   string
}

// parseBackupManifest reads the WAL range from PostgreSQL's backup_manifest
// (a JSON document with "WAL-Ranges": [{"Timeline", "Start-LSN",
// "End-LSN"}]); a backup taken on one timeline has one range.
func parseBackupManifest(b []byte) (walRange, error) {
	var doc struct {
		Version   int `json:"PostgreSQL-Backup-Manifest-Version"`
		WALRanges []struct {
			Timeline int    `json:"Timeline"`
			StartLSN string `json:"Start-LSN"`
			EndLSN   string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return walRange{}, fmt.Errorf("backup_manifest: %w", err)
	}
	if doc.Version != 1 {
		return walRange{}, fmt.Errorf("backup_manifest: version %d, want 1", doc.Version)
	}
	if len(doc.WALRanges) == 0 {
		return walRange{}, fmt.Errorf("backup_manifest: no WAL-Ranges")
	}
	first, last := doc.WALRanges[0], doc.WALRanges[len(doc.WALRanges)-1]
	r := walRange{Timeline: last.Timeline, StartLSN: first.StartLSN, EndLSN: last.EndLSN}
	if r.Timeline < 1 || !lsnPattern.MatchString(r.StartLSN) || !lsnPattern.MatchString(r.EndLSN) {
		return walRange{}, fmt.Errorf("backup_manifest: WAL range %d %q..%q", r.Timeline, r.StartLSN, r.EndLSN)
	}
	return r, nil
}

var (
	genPattern = regexp.MustCompile(`^[0-9]{1,20}-[0-9]{1,10}$`)
	segPattern = regexp.MustCompile(`^[0-9A-F]{24}(\.partial)?$`)
)
