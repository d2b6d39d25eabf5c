package deployer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// deliveryRecord remembers, on the deploying machine only, which values
// this machine delivered to which container, so an up that changes nothing
// need not read every secret back from every container (a read costs the
// engine a mount of the container's filesystems, ~100 ms each under load).
// It holds, per container id, an HMAC of the delivered files and values.
// Nothing derived from a secret reaches the engine, a label or a log.
// Without a record (another machine deployed, the file is gone) the values
// are read back as before.
//
// The HMAC key is not kept beside the HMACs: the record (delivered.json,
// 0600) is in the project's config directory, the key in this user's state
// directory ($XDG_STATE_HOME/invdeploy/delivery.key, else
// ~/.local/state/invdeploy/; 0600 in a 0700 directory), one key for all
// projects. A copy of the config directory (a dotfiles repository, a
// backup, a synced folder: config is what people carry between machines,
// state is what the XDG spec says not to) then confirms no guessed value
// offline. The key is not derived from anything in the record or the
// values (a key made from what is stored beside it would be beside it).
// Records of the older format, which held their key, are discarded.
type deliveryRecord struct {
	path string
	key  []byte

	mu   sync.Mutex
	seen map[string]string // container id -> hex HMAC
	// dirty: seen changed since load.
	dirty bool
}

const (
	deliveryRecordFile = "delivered.json"
	// deliveryRecordVersion 2: no key in the record.
	deliveryRecordVersion = 2
	deliveryKeyFile       = "delivery.key"
)

// StateDir is where invdeploy keeps this machine's own state, which is
// not configuration: $XDG_STATE_HOME/invdeploy, else
// ~/.local/state/invdeploy.
func StateDir() (string, error) {
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "invdeploy"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate the state directory (set XDG_STATE_HOME or HOME): %w", err)
	}
	return filepath.Join(home, ".local", "state", "invdeploy"), nil
}

// recordKey returns this user's delivery-record key from stateDir,
// creating it (32 random bytes, 0600) the first time.
func recordKey(stateDir string) ([]byte, error) {
	path := filepath.Join(stateDir, deliveryKeyFile)
	if k, err := readKey(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKey(path) // another invdeploy made it meanwhile
	}
	if err != nil {
		return nil, err
	}
	_, err = f.Write([]byte(hex.EncodeToString(k)))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return k, nil
}

func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s is not a delivery-record key; remove it (invdeploy makes a new one)", path)
	}
	return k, nil
}

// loadDeliveryRecord opens the record in dir with the key in stateDir; a
// missing, unreadable or older-format record starts empty (and is
// rewritten on save). Without a key (the state directory cannot be
// written) there is no record: nil, and values are read back.
func loadDeliveryRecord(dir, stateDir string) *deliveryRecord {
	key, err := recordKey(stateDir)
	if err != nil {
		return nil
	}
	r := &deliveryRecord{path: filepath.Join(dir, deliveryRecordFile), key: key, seen: map[string]string{}}
	var f struct {
		Version int               `json:"version"`
		Seen    map[string]string `json:"seen"`
	}
	if b, err := os.ReadFile(r.path); err == nil && json.Unmarshal(b, &f) == nil && f.Version == deliveryRecordVersion && f.Seen != nil {
		r.seen = f.Seen
	} else if err == nil {
		r.dirty = true // an older record (it held its key) or a broken one: replaced
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
	b, err := json.Marshal(map[string]any{"version": deliveryRecordVersion, "seen": r.seen})
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

// loadDeliveryRecord loads this machine's delivery record of a project
// (see deliveryRecord) for the plan to trust.
func (d *Deployer) loadDeliveryRecord(project, configDir string) {
	state, err := StateDir()
	if err != nil {
		return
	}
	if configDir != "" {
		d.delivered = loadDeliveryRecord(configDir, state)
	} else if dir, err := ConfigDir(project); err == nil {
		d.delivered = loadDeliveryRecord(dir, state)
	}
}

// saveDeliveryRecord writes this machine's delivery record, forgetting the
// containers of the project that are gone; failing to is only a warning (the
// next up reads the values back instead).
func (d *Deployer) saveDeliveryRecord(ctx context.Context, project string) {
	if d.delivered == nil {
		return
	}
	live := map[string]bool{}
	cs, err := d.projectContainers(context.WithoutCancel(ctx), project)
	if err != nil {
		live = nil
	}
	for _, c := range cs {
		live[c.ID] = true
	}
	if err := d.delivered.save(live); err != nil {
		d.out.Event("warning: keep the delivery record: %v", err)
	}
	d.delivered = nil
}
