package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
)

// A deployment's generated secrets belong to its target: each engine keeps
// the values it was deployed with in a never-started container of its own,
// invdeploy-state-<project> (made from the lock image: no process, no
// network; `down --volumes` removes it with the data the values protect),
// as files under /state read back with one archive call. Anyone who can
// reach the engine can read it, as they can read the database volume: an
// engine you can reach already gives root on its host. The files under
// ConfigDir on the machine running invdeploy are a mirror of the target's
// values, kept per target (TargetConfigDir), read first so an up costs no
// extra call; the engine's copy is read only when the mirror lacks a value
// or has not been confirmed (a second machine, a lost config directory,
// the first up after an upgrade) and written when a value is generated,
// adopted or rotated.

const (
	// labelStateProject marks a project's state container.
	labelStateProject = "io.invdeploy.state"
	// stateDir holds the values in the state container.
	stateDir = "/state"
	// stateValueLimit bounds a value read back from the engine.
	stateValueLimit = 4096
)

// stateContainer names project's state container on its engine.
func stateContainer(project string) string { return "invdeploy-state-" + project }

// TargetConfigDir is where this machine mirrors the generated secrets of
// project as deployed to the engine named target (e.g. the SSH host and
// port of a remote engine): ConfigDir(project)/targets/<target>, so the
// same project on two engines never shares a value.
func TargetConfigDir(project, target string) (string, error) {
	base, err := ConfigDir(project)
	if err != nil {
		return "", err
	}
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '@':
			return r
		}
		return '_'
	}, target)
	if safe == "" || strings.Trim(safe, ".") == "" {
		return "", Invalidf("target %q cannot name a directory", target)
	}
	return filepath.Join(base, "targets", safe), nil
}

// readState returns the values the engine keeps for project (none when
// it keeps none): one archive read of the state container, which changes
// nothing.
func (d *Deployer) readState(ctx context.Context, project string) (map[string][]byte, error) {
	raw := map[string][]byte{}
	if err := d.readDelivered(ctx, stateContainer(project), stateDir, stateValueLimit, raw); err != nil {
		return nil, fmt.Errorf("read the secrets kept on the engine (container %s): %w", stateContainer(project), err)
	}
	got := map[string][]byte{}
	for p, v := range raw {
		if len(v) > 0 && len(v) <= stateValueLimit {
			got[strings.TrimPrefix(p, stateDir+"/")] = v
		}
	}
	return got, nil
}

// writeState stores values (name -> value) in project's state container,
// creating it when needed; other values it holds stay.
func (d *Deployer) writeState(ctx context.Context, project string, values map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(stateDir, "/") + "/", Mode: 0o700, Typeflag: tar.TypeDir, ModTime: epoch}); err != nil {
		return err
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(stateDir, "/") + "/" + n, Mode: 0o400, Size: int64(len(values[n])), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(values[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	name := stateContainer(project)
	cfg := &container.Config{Image: lockImage, Cmd: []string{"/nonexistent"}, NetworkDisabled: true, // never started
		Labels: map[string]string{LabelManagedBy: "invdeploy", labelStateProject: project}} // not LabelProject: status and down ignore it
	host := &container.HostConfig{NetworkMode: "none"}
	_, err := d.engine.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if cerrdefs.IsNotFound(err) { // no lock image on this engine yet
		if err = d.buildLockImage(ctx); err == nil {
			_, err = d.engine.ContainerCreate(ctx, cfg, host, nil, nil, name)
		}
	}
	if err != nil && !cerrdefs.IsConflict(err) { // a conflict: it exists
		return fmt.Errorf("store the generated secrets on the engine (container %s): %w", name, err)
	}
	if err := d.engine.CopyToContainer(ctx, name, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("store the generated secrets on the engine (container %s): %w", name, err)
	}
	return nil
}

// removeState removes project's state container (down --volumes).
func (d *Deployer) removeState(ctx context.Context, project string) (bool, error) {
	err := d.engine.ContainerRemove(ctx, stateContainer(project), container.RemoveOptions{Force: true})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// stateRefusal is why up will not generate a secret: the data it would
// protect already exists with another value.
func stateRefusal(name, stored string, vols []string, p *types.Project, src secretSource) Problem {
	return Problem{Rule: "secret", Subject: name, Message: fmt.Sprintf(
		"no value of this generated secret is kept on this machine (%s), on the engine or in a running container, "+
			"but volume %s already exists and holds data set up with the old value: a new one would not log in. "+
			"Give the old value (set %s, or write it to %s, mode 0600), "+
			"or delete the data and start afresh (down -p %s --volumes)",
		stored, strings.Join(vols, ", "), src.Env, stored, p.Name)}
}

// confirmedFile lists, in a mirror directory, the generated secrets the
// engine is known to keep with the mirrored value.
const confirmedFile = ".on-engine"

func confirmed(dir string) map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(dir, confirmedFile))
	if err != nil {
		return out
	}
	for _, n := range strings.Fields(string(b)) {
		out[n] = true
	}
	return out
}

func confirm(dir string, names []string) error {
	have := confirmed(dir)
	for _, n := range names {
		have[n] = true
	}
	all := make([]string, 0, len(have))
	for n := range have {
		all = append(all, n)
	}
	sort.Strings(all)
	if err := writeMirror(filepath.Join(dir, confirmedFile), []byte(strings.Join(all, "\n")+"\n")); err != nil {
		return fmt.Errorf("note the secrets the engine keeps: %w", err)
	}
	return nil
}

// forgetConfirmed drops the marker of a project whose engine state is gone
// (down --volumes), so the next up stores its values again.
func forgetConfirmed(dir string) {
	os.Remove(filepath.Join(dir, confirmedFile))
}

// existingVolumesUsing lists the named volumes of services that use secret
// name which already exist on the engine.
func (d *Deployer) existingVolumesUsing(ctx context.Context, p *types.Project, name string) ([]string, error) {
	want := map[string]bool{}
	for _, sn := range p.ServiceNames() {
		s := p.Services[sn]
		uses := false
		for _, sec := range s.Secrets {
			uses = uses || sec.Source == name
		}
		if !uses {
			continue
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeVolume || v.Source == "" {
				continue
			}
			if cfg, ok := p.Volumes[v.Source]; ok && cfg.Name != "" {
				want[cfg.Name] = true
			}
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	list, err := d.engine.VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []string
	for _, v := range list.Volumes {
		if want[v.Name] {
			out = append(out, v.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// writeMirror keeps value at path, mode 0600 in a 0700 directory, replaced
// at once (a reader never sees half a value).
func writeMirror(path string, value []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, value, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
