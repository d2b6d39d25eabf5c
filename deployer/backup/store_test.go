package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/invdeploy/invdeploy/deployer"
)

// writeBackup stores body encrypted to id as a backup, the way Take does.
func writeBackup(t *testing.T, s Store, id *age.X25519Identity, body []byte) *Manifest {
	t.Helper()
	m := validManifest()
	m.Recipient = id.Recipient().String()
	f, err := s.create(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	enc, err := age.Encrypt(cw, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(body)
	enc.Close()
	m.Size, m.SHA256 = cw.n, hex.EncodeToString(h.Sum(nil))
	if err := f.commit(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStoreVerifyRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadIdentity(filepath.Join(dir, "key", IdentityFile), true)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "key", IdentityFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	again, err := LoadIdentity(filepath.Join(dir, "key", IdentityFile), false)
	if err != nil || again.Recipient().String() != id.Recipient().String() {
		t.Fatalf("reloaded key: %v", err)
	}
	s := Store{Dir: filepath.Join(dir, "backups")}
	m := writeBackup(t, s, id, bytes.Repeat([]byte("invoice "), 10000))
	list, bad, err := s.List("invoicing")
	if err != nil || len(bad) != 0 || len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("List: %v %v %v", list, bad, err)
	}
	if err := s.Verify(m); err != nil {
		t.Fatalf("Verify of an intact backup: %v", err)
	}
	path := filepath.Join(s.Dir, m.File)
	orig, _ := os.ReadFile(path)
	flipped := append([]byte(nil), orig...)
	flipped[len(flipped)/2] ^= 1
	for name, content := range map[string][]byte{"one bit flipped": flipped, "truncated": orig[:len(orig)-100], "empty": nil} {
		os.WriteFile(path, content, 0o600)
		err := s.Verify(m)
		if !deployer.IsPreflight(err) {
			t.Errorf("%s: Verify = %v, want a refusal (exit 3)", name, err)
		} else if !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%s: %v does not say nothing changed", name, err)
		}
	}
	os.WriteFile(path, orig, 0o600)
	// A damaged manifest is reported, not listed.
	os.WriteFile(filepath.Join(s.Dir, "20000101T000000Z.json"), []byte(`{"format":1`), 0o600)
	list, bad, _ = s.List("")
	if len(list) != 1 || len(bad) != 1 {
		t.Fatalf("with a damaged manifest: %d listed, %d bad", len(list), len(bad))
	}
}
