package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// Repository returns the repository to push image to: <registry>/<image>,
// where registry is a host[:port] with an optional namespace
// (127.0.0.1:5000/team) or a Docker Hub namespace (alice, docker.io/alice).
// With no registry it is Docker Hub under user's name.
func Repository(registryFlag, user, image string) (string, error) {
	r := strings.TrimSuffix(strings.TrimSpace(registryFlag), "/")
	r = strings.TrimPrefix(strings.TrimPrefix(r, "https://"), "http://")
	if r == "" {
		if user == "" {
			return "", errors.New("no registry given and no Docker Hub login found: pass --registry HOST[:PORT] (or your Docker Hub name), or log in with --username U --password-stdin")
		}
		r = "docker.io/" + strings.ToLower(user)
	} else if RegistryOf(r+"/x") == DockerHub && !strings.HasPrefix(r, "docker.io/") {
		r = "docker.io/" + r
	}
	repo := r + "/" + image
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return "", fmt.Errorf("registry %q gives the repository %q: %w", registryFlag, repo, err)
	}
	if _, tagged := named.(reference.Tagged); tagged {
		return "", fmt.Errorf("registry %q: give the registry without a tag (use --tag)", registryFlag)
	}
	return repo, nil
}

// Record is what pushed.json keeps about the last push of a project, so a
// remote deploy can pin the image by digest.
type Record struct {
	Result
	Reference string    `json:"reference"`
	PushedAt  time.Time `json:"pushed_at"`
}

// RecordFile is the name of the record under the project's config dir.
const RecordFile = "pushed.json"

// SaveRecord writes the record of a push into dir (mode 0600, atomically).
// It holds names and digests only, never credentials.
func SaveRecord(dir string, r Result, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("record push: %w", err)
	}
	b, err := json.MarshalIndent(Record{Result: r, Reference: r.Reference(), PushedAt: now.UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("record push: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".pushed-*.json")
	if err != nil {
		return fmt.Errorf("record push: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("record push: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record push: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, RecordFile)); err != nil {
		return fmt.Errorf("record push: %w", err)
	}
	return nil
}

// LoadRecord reads the last push of a project; ok is false when there is none.
func LoadRecord(dir string) (rec Record, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("read push record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("read push record %s: invalid JSON", filepath.Join(dir, RecordFile))
	}
	if !strings.HasPrefix(rec.Digest, "sha256:") || rec.Repository == "" {
		return rec, false, fmt.Errorf("read push record %s: no repository or sha256 digest", filepath.Join(dir, RecordFile))
	}
	return rec, true, nil
}
