package deployer

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeliveryRecordKeepsNoKey: the record holds the HMACs, and its key is
// in the state directory, not beside it: from the record alone a guessed
// value cannot be confirmed, and a record read with another key (another
// machine's state) matches nothing.
func TestDeliveryRecordKeepsNoKey(t *testing.T) {
	cfg, state := t.TempDir(), filepath.Join(t.TempDir(), "invdeploy")
	files := []deliveredFile{{Kind: kindSecret, Name: "pw", Target: "/run/secrets/pw"}}
	values := map[string][]byte{valueKey(kindSecret, "pw"): []byte("guessable")}
	r := loadDeliveryRecord(cfg, state)
	r.remember("c1", files, values)
	if err := r.save(nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(cfg, deliveryRecordFile))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk map[string]json.RawMessage
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if _, ok := onDisk["key"]; ok || strings.Contains(string(b), hex.EncodeToString(r.key)) {
		t.Fatalf("the record holds its key: %s", b)
	}
	entries, _ := os.ReadDir(cfg)
	if len(entries) != 1 {
		t.Fatalf("config dir holds %d files, want the record only", len(entries))
	}
	for path, want := range map[string]os.FileMode{filepath.Join(state, deliveryKeyFile): 0o600, state: 0o700} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want mode %o", path, fi, err, want)
		}
	}
	if !loadDeliveryRecord(cfg, state).matches("c1", files, values) {
		t.Fatal("the same machine's record does not match what it delivered")
	}
	if loadDeliveryRecord(cfg, filepath.Join(t.TempDir(), "other")).matches("c1", files, values) {
		t.Fatal("a record matched under another key")
	}
}

// TestDeliveryRecordOldFormatDiscarded: a record of the older format (key
// inside) is dropped silently: nothing matches, and the next save rewrites
// it without the key.
func TestDeliveryRecordOldFormatDiscarded(t *testing.T) {
	cfg, state := t.TempDir(), t.TempDir()
	files := []deliveredFile{{Kind: kindSecret, Name: "pw", Target: "/run/secrets/pw"}}
	values := map[string][]byte{valueKey(kindSecret, "pw"): []byte("value-123456")}
	oldKey := make([]byte, 32)
	old := &deliveryRecord{key: oldKey}
	b, _ := json.Marshal(map[string]any{"key": hex.EncodeToString(oldKey), "seen": map[string]string{"c1": old.mac(files, values)}})
	if err := os.WriteFile(filepath.Join(cfg, deliveryRecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := loadDeliveryRecord(cfg, state)
	if r.matches("c1", files, values) {
		t.Fatal("an old-format record was trusted")
	}
	if err := r.save(nil); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(cfg, deliveryRecordFile))
	if strings.Contains(string(b), `"key"`) || strings.Contains(string(b), "c1") {
		t.Fatalf("the old record was kept: %s", b)
	}
}

// FuzzLoadDeliveryRecord: whatever delivered.json holds (a broken file, an
// older format, a hostile one), loading never panics and never makes a
// record that vouches for values it was not told of.
func FuzzLoadDeliveryRecord(f *testing.F) {
	f.Add([]byte(`{"version":2,"seen":{"c1":"00"}}`))
	f.Add([]byte(`{"key":"00","seen":{"c1":"00"}}`))
	f.Add([]byte(`{"version":2,"seen":null}`))
	f.Add([]byte(`not json`))
	state := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := t.TempDir()
		if err := os.WriteFile(filepath.Join(cfg, deliveryRecordFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		r := loadDeliveryRecord(cfg, state)
		files := []deliveredFile{{Kind: kindSecret, Name: "pw", Target: "/run/secrets/pw"}}
		if r.matches("c1", files, map[string][]byte{valueKey(kindSecret, "pw"): []byte("v")}) {
			t.Fatalf("record %q vouches for a value", b)
		}
		if err := r.save(map[string]bool{}); err != nil {
			t.Fatal(err)
		}
	})
}
