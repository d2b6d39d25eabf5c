package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"filippo.io/age"
)

// IdentityFile is the name of a project's backup key under its config
// directory (deployer.ConfigDir): an age X25519 identity generated on the
// first backup, mode 0600, beside the project's other generated secrets.
const IdentityFile = "backup.agekey"

// LoadIdentity reads the age identity at path; create generates it first
// when the file does not exist. The key never appears in an error.
func LoadIdentity(path string, create bool) (*age.X25519Identity, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return generateIdentity(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the backup key %s: %w", path, err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		id, err := age.ParseX25519Identity(string(line))
		if err != nil {
			return nil, fmt.Errorf("the backup key %s is not an age X25519 identity (AGE-SECRET-KEY-1...)", path)
		}
		return id, nil
	}
	return nil, fmt.Errorf("the backup key %s holds no identity", path)
}

func generateIdentity(path string) (*age.X25519Identity, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate the backup key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store the backup key at %s: %w", path, err)
	}
	content := fmt.Sprintf("# invdeploy backup key; public key: %s\n# Keep a copy elsewhere: without it the backups cannot be read.\n%s\n", id.Recipient(), id)
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return nil, fmt.Errorf("store the backup key at %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store the backup key at %s: %w", path, err)
	}
	return id, nil
}
