package deployer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// deliveryRecord remembers, on the deploying machine only, which values
// this machine delivered to which container, so an up that changes nothing
// need not read every secret back from every container (a read costs the
// engine a mount of the container's filesystems, ~100 ms each under load).
// It holds, per container id, an HMAC of the delivered files and values
// under a random key that never leaves the config directory (both files
// mode 0600, beside the generated secrets themselves): nothing derived from
// a secret reaches the engine, a label or a log. Without a record (another
// machine deployed, the file is gone) the values are read back as before.
type deliveryRecord struct {
	path string
	key  []byte

	mu   sync.Mutex
	seen map[string]string // container id -> hex HMAC
	// dirty: seen changed since load.
	dirty bool
}

const deliveryRecordFile = "delivered.json"

// loadDeliveryRecord opens the record in dir; a missing or unreadable one
// starts empty (and is rewritten on save).
func loadDeliveryRecord(dir string) *deliveryRecord {
	r := &deliveryRecord{path: filepath.Join(dir, deliveryRecordFile), seen: map[string]string{}}
	var f struct {
		Key  string            `json:"key"`
		Seen map[string]string `json:"seen"`
	}
	if b, err := os.ReadFile(r.path); err == nil && json.Unmarshal(b, &f) == nil {
		if k, err := hex.DecodeString(f.Key); err == nil && len(k) == 32 {
			r.key = k
			if f.Seen != nil {
				r.seen = f.Seen
			}
		}
	}
	if r.key == nil {
		r.key = make([]byte, 32)
		_, _ = rand.Read(r.key)
		r.dirty = true
	}
	return r
}

// mac is the record of files delivered with values.
func (r *deliveryRecord) mac(files []deliveredFile, values map[string][]byte) string {
	h := hmac.New(sha256.New, r.key)
	fs := append([]deliveredFile(nil), files...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Target < fs[j].Target })
	for _, f := range fs {
		v := values[valueKey(f.Kind, f.Name)]
		h.Write([]byte(f.Target))
		h.Write([]byte{0})
		var n [8]byte
		for i := 0; i < 8; i++ {
			n[i] = byte(len(v) >> (8 * i))
		}
		h.Write(n[:])
		h.Write(v)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// matches reports whether this machine delivered exactly these values to
// container id.
func (r *deliveryRecord) matches(id string, files []deliveredFile, values map[string][]byte) bool {
	if r == nil {
		return false
	}
	m := r.mac(files, values)
	r.mu.Lock()
	defer r.mu.Unlock()
	return hmac.Equal([]byte(r.seen[id]), []byte(m))
}

// remember records that container id holds these values.
func (r *deliveryRecord) remember(id string, files []deliveredFile, values map[string][]byte) {
	if r == nil {
		return
	}
	m := r.mac(files, values)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[id] != m {
		r.seen[id], r.dirty = m, true
	}
}

// save writes the record (0600) when it changed, keeping only containers
// that still exist (live: ids of the project's containers now).
func (r *deliveryRecord) save(live map[string]bool) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.seen {
		if live != nil && !live[id] {
			delete(r.seen, id)
			r.dirty = true
		}
	}
	if !r.dirty {
		return nil
	}
	b, err := json.Marshal(map[string]any{"key": hex.EncodeToString(r.key), "seen": r.seen})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	r.dirty = false
	return nil
}
