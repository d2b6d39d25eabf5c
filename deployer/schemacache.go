package deployer

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"sync"

	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// schemaCache remembers which compose inputs compose-go's JSON schema has
// already accepted on this machine, so that loading them again (every
// `up`, `status`, `logs` of an unchanged file) skips the schema: compiling
// it costs a process 15-30 ms, a third of a no-op up. An entry is an HMAC,
// under a random key kept beside it, of everything the validated document
// is made of: compose-go's version, each file's name and bytes, the working
// directory, the whole interpolation environment (.env included), the
// profiles and the project name. Change any of it and the file is validated
// again; only a load that passed, and gave no compose-go warning, is
// remembered. The environment can hold secrets (INVOICING_DB_PASSWORD), so
// nothing unkeyed is derived from it, and both live in the user's cache
// directory, mode 0600. Files that pull others in (include, extends), whose
// content the key cannot see, are always validated (see cacheable).
type schemaCache struct {
	path string
	key  []byte
	seen []string // hex HMACs, oldest first
}

// schemaCacheSize bounds the entries kept (the oldest are dropped).
const schemaCacheSize = 64

// schemaCacheMu serializes reads and writes of the cache file within a
// process (tests load stacks in parallel).
var schemaCacheMu sync.Mutex

// composeGoVersion names the compose-go this binary validates with: a hash
// of its JSON schema, and its module version where the binary records one
// (a test binary does not). A new compose-go is a new cache.
var composeGoVersion = sync.OnceValue(func() string {
	sum := sha256.Sum256([]byte(schema.Schema))
	v := hex.EncodeToString(sum[:8])
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/compose-spec/compose-go/v2" {
				v += " " + m.Version
				if m.Replace != nil {
					v += " => " + m.Replace.Path + "@" + m.Replace.Version
				}
			}
		}
	}
	return v
})

// openSchemaCache reads the cache; nil when there is no cache directory (or
// INVDEPLOY_SCHEMA_CACHE=off).
func openSchemaCache() *schemaCache {
	if os.Getenv("INVDEPLOY_SCHEMA_CACHE") == "off" {
		return nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return nil
	}
	c := &schemaCache{path: filepath.Join(dir, "invdeploy", "schema-validated.json")}
	var f struct {
		Key  string   `json:"key"`
		Seen []string `json:"seen"`
	}
	schemaCacheMu.Lock()
	b, err := os.ReadFile(c.path)
	schemaCacheMu.Unlock()
	if err == nil && json.Unmarshal(b, &f) == nil {
		if k, err := hex.DecodeString(f.Key); err == nil && len(k) == 32 {
			c.key, c.seen = k, f.Seen
		}
	}
	if c.key == nil {
		c.key = make([]byte, 32)
		if _, err := rand.Read(c.key); err != nil {
			return nil
		}
		c.seen = nil
	}
	return c
}

// cacheable reports whether a compose file's validation may be
// remembered: it parses as YAML the way compose-go parses it (every
// document, anchors and merge keys resolved, any spelling of a key: an
// escaped or UTF-16 "extends" is still extends), and nothing in it pulls in
// content the key cannot see (top-level include, a service's extends) or
// is dropped only while validating (top-level version, which compose-go
// also warns about only once per file and process). What does not parse
// plainly (a custom tag such as !reset) is not cached.
func cacheable(content []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(content))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		if doc == nil {
			continue
		}
		top, ok := mapping(doc)
		if !ok {
			return false
		}
		if _, ok := top["include"]; ok {
			return false
		}
		if _, ok := top["version"]; ok {
			return false
		}
		if services, ok := top["services"]; ok && services != nil {
			svcs, ok := mapping(services)
			if !ok {
				return false
			}
			for _, svc := range svcs {
				if svc == nil {
					continue
				}
				m, ok := mapping(svc)
				if !ok {
					return false
				}
				if _, ok := m["extends"]; ok {
					return false
				}
			}
		}
	}
}

// mapping is v as a YAML mapping with its keys as strings.
func mapping(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

// id is the entry for loading files (in order) from dir with env, profiles
// and name; "" when such a load is not cached.
func (c *schemaCache) id(files []types.ConfigFile, dir string, env types.Mapping, profiles []string, name string) string {
	if c == nil || len(files) == 0 {
		return ""
	}
	h := hmac.New(sha256.New, c.key)
	field := func(s []byte) {
		var n [8]byte
		for i := range n {
			n[i] = byte(len(s) >> (8 * i))
		}
		h.Write(n[:])
		h.Write(s)
	}
	field([]byte(composeGoVersion()))
	for _, f := range files {
		if !cacheable(f.Content) {
			return ""
		}
		field([]byte(f.Filename))
		field(f.Content)
	}
	field([]byte(dir))
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	field([]byte{byte(len(keys)), byte(len(keys) >> 8), byte(len(keys) >> 16)})
	for _, k := range keys {
		field([]byte(k))
		field([]byte(env[k]))
	}
	ps := slices.Clone(profiles)
	sort.Strings(ps)
	for _, p := range ps {
		field([]byte(p))
	}
	field([]byte{0xff})
	field([]byte(name))
	return hex.EncodeToString(h.Sum(nil))
}

// has reports whether id was validated before.
func (c *schemaCache) has(id string) bool {
	return c != nil && id != "" && slices.Contains(c.seen, id)
}

// add remembers id; the file is rewritten atomically (a failure to write
// only costs the next load a validation).
func (c *schemaCache) add(id string) {
	if c == nil || id == "" || c.has(id) {
		return
	}
	schemaCacheMu.Lock()
	defer schemaCacheMu.Unlock()
	// Another process may have added entries since open: keep them.
	var f struct {
		Key  string   `json:"key"`
		Seen []string `json:"seen"`
	}
	if b, err := os.ReadFile(c.path); err == nil && json.Unmarshal(b, &f) == nil && f.Key == hex.EncodeToString(c.key) {
		c.seen = f.Seen
	}
	c.seen = append(c.seen, id)
	if len(c.seen) > schemaCacheSize {
		c.seen = c.seen[len(c.seen)-schemaCacheSize:]
	}
	f.Key, f.Seen = hex.EncodeToString(c.key), c.seen
	b, err := json.Marshal(f)
	if err != nil || os.MkdirAll(filepath.Dir(c.path), 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".schema-validated-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Chmod(tmp.Name(), 0o600) != nil || os.Rename(tmp.Name(), c.path) != nil {
		_ = os.Remove(tmp.Name())
	}
}

// load loads through the cache: with id remembered, load(true) skips the
// schema; any doubt (an error, a warning beyond those already in warns,
// files changed since the id was made: unchanged false) loads again with
// load(false), and a validated load without doubt is remembered.
func (c *schemaCache) load(id string, warns *[]string, load func(skip bool) (*types.Project, error), unchanged func() bool) (*types.Project, error) {
	base := len(*warns) // the options' own, kept either way
	if c.has(id) {
		if p, err := load(true); err == nil && len(*warns) == base && unchanged() {
			schemaSkipped()
			return p, nil
		}
		*warns, id = (*warns)[:base], ""
	}
	p, err := load(false)
	if err == nil && len(*warns) == base && unchanged() {
		c.add(id)
	}
	return p, err
}

// sameContent reports whether every file still holds the bytes the id was
// made from (a file edited between the read for the id and compose-go's own
// read is validated).
func sameContent(files []types.ConfigFile) bool {
	for _, f := range files {
		b, err := os.ReadFile(f.Filename)
		if err != nil || !bytes.Equal(b, f.Content) {
			return false
		}
	}
	return true
}

// schemaSkipped is called when a load skipped the schema (a test hook).
var schemaSkipped = func() {}
