package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
)

// A deployment's generated secrets belong to its target: each engine keeps
// the values it was deployed with in a volume of its own,
// invdeploy-state-<project> (labelled with the project, so `down --volumes`
// removes it with the data the values protect). Anyone who can reach the
// engine can read it, as they can read the database volume: an engine you
// can reach already gives root on its host. The files under ConfigDir on
// the machine running invdeploy are a mirror of the target's values, kept
// per target (TargetConfigDir), read first so an up costs no extra call;
// the volume is read only when the mirror lacks a value (a second machine,
// a lost config directory) and written when a value is generated, adopted
// or rotated.

const (
	// labelStateProject marks a project's state volume.
	labelStateProject = "io.invdeploy.state"
	// stateMount is where a helper container sees the state volume.
	stateMount = "/invdeploy-state"
	// stateValueLimit bounds a value read back from the state volume.
	stateValueLimit = 4096
)

// stateVolume names project's state volume on its engine.
func stateVolume(project string) string { return "invdeploy-state-" + project }

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

// readState returns the values project's state volume holds (none when
// it does not exist), through a never-started helper container.
func (d *Deployer) readState(ctx context.Context, project string) (map[string][]byte, error) {
	got := map[string][]byte{}
	err := d.withStateHelper(ctx, project, false, func(id string) error {
		raw := map[string][]byte{}
		if err := d.readDelivered(ctx, id, stateMount, stateValueLimit, raw); err != nil {
			return err
		}
		for p, v := range raw {
			if len(v) > 0 && len(v) <= stateValueLimit {
				got[strings.TrimPrefix(p, stateMount+"/")] = v
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the secrets stored on the engine (volume %s): %w", stateVolume(project), err)
	}
	return got, nil
}

// writeState stores values (name -> value) in project's state volume,
// creating it when needed; other values it holds stay.
func (d *Deployer) writeState(ctx context.Context, project string, values map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o400, Size: int64(len(values[n])), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(values[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	err := d.withStateHelper(ctx, project, true, func(id string) error {
		return d.engine.CopyToContainer(ctx, id, stateMount, &buf, container.CopyToContainerOptions{})
	})
	if err != nil {
		return fmt.Errorf("store the generated secrets on the engine (volume %s): %w", stateVolume(project), err)
	}
	return nil
}

// withStateHelper runs fn with a never-started container (the lock image:
// nothing in it, no network) that mounts project's state volume at
// stateMount. Without create, a missing volume means fn is not run.
func (d *Deployer) withStateHelper(ctx context.Context, project string, create bool, fn func(id string) error) error {
	name := stateVolume(project)
	if create {
		if _, err := d.engine.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: map[string]string{
			LabelManagedBy: "invdeploy", LabelProject: project, labelStateProject: project,
		}}); err != nil {
			return err
		}
	} else {
		list, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelStateProject+"="+project))})
		if err != nil {
			return err
		}
		found := false
		for _, v := range list.Volumes {
			found = found || v.Name == name
		}
		if !found {
			return nil
		}
	}
	cfg := &container.Config{Image: lockImage, Cmd: []string{"/nonexistent"}, NetworkDisabled: true,
		Labels: map[string]string{LabelManagedBy: "invdeploy", labelStateProject: project}}
	host := &container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: name, Target: stateMount}}}
	c, err := d.engine.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if cerrdefs.IsNotFound(err) { // no lock image on this engine yet
		if err := d.buildLockImage(ctx); err != nil {
			return err
		}
		c, err = d.engine.ContainerCreate(ctx, cfg, host, nil, nil, "")
	}
	if err != nil {
		return err
	}
	defer d.engine.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true})
	return fn(c.ID)
}

// StateRefusal is why up will not generate a secret: the data it would
// protect already exists with another value.
func stateRefusal(name, stored string, vols []string, p *types.Project, src secretSource) Problem {
	return Problem{Rule: "secret", Subject: name, Message: fmt.Sprintf(
		"no value of this generated secret is stored on this machine (%s), on the engine or in a running container, "+
			"but volume %s already exists and holds data set up with the old value: a new one would not log in. "+
			"Give the old value (set %s, or write it to %s, mode 0600), "+
			"or delete the data and start afresh (down -p %s --volumes)",
		stored, strings.Join(vols, ", "), src.Env, stored, p.Name)}
}

// resolveGenerated makes sure every generated secret the stack uses has
// its value in this machine's mirror (src.Stored) and on the engine. A
// value missing from the mirror comes from, in this order: the engine's
// state volume; a running container that holds it (adoptSecrets); else a
// new value, unless a volume of a service that uses the secret already
// exists (its data was set up with a value nobody has: refused, exit 3,
// with the ways out). A mirrored value the engine has not confirmed yet
// (the first up after an upgrade; see the marker) is stored on the engine,
// and when the engine keeps another value (rotated from another machine)
// the engine's wins. After that, an up with every value mirrored and
// confirmed makes no call for them.
func (d *Deployer) resolveGenerated(ctx context.Context, p *types.Project, configDir string) error {
	srcs, err := secretSources(p, configDir)
	if err != nil {
		return err
	}
	var missing, unconfirmed []string
	dir := ""
	for _, name := range usedSecrets(p) {
		src := srcs[name]
		if !src.Generate || p.Environment[src.Env] != "" {
			continue
		}
		dir = filepath.Dir(src.Stored)
		if _, err := os.Stat(src.Stored); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, name)
		} else if !confirmed(dir)[name] {
			unconfirmed = append(unconfirmed, name)
		}
	}
	if len(missing)+len(unconfirmed) == 0 {
		return nil
	}
	stored, err := d.readState(ctx, p.Name)
	if err != nil {
		return err
	}
	toStore := map[string][]byte{}
	for _, name := range unconfirmed {
		src := srcs[name]
		mine, err := os.ReadFile(src.Stored)
		if err != nil {
			return fmt.Errorf("read generated secret %s from %s: %w", name, src.Stored, err)
		}
		mine = bytes.TrimRight(mine, "\r\n")
		if v, ok := stored[name]; !ok {
			toStore[name] = mine
		} else if !bytes.Equal(v, mine) {
			if err := writeMirror(src.Stored, v); err != nil {
				return err
			}
			d.out.Event("Secret %s: the engine keeps another value than this machine's copy (rotated from another machine): took the engine's", name)
		}
	}
	var adopt []string
	for _, name := range missing {
		src := srcs[name]
		if v, ok := stored[name]; ok {
			if err := writeMirror(src.Stored, v); err != nil {
				return err
			}
			d.out.Event("Secret %s is not stored on this machine: took the value the engine keeps (mirrored in %s, mode 0600)", name, src.Stored)
			continue
		}
		adopt = append(adopt, name)
	}
	if len(adopt) > 0 {
		if err := d.adoptSecrets(ctx, p, configDir, adopt); err != nil {
			return err
		}
	}
	var problems []Problem
	for _, name := range adopt {
		src := srcs[name]
		if v, err := os.ReadFile(src.Stored); err == nil {
			toStore[name] = v // adopted from a running container
			continue
		}
		vols, err := d.existingVolumesUsing(ctx, p, name)
		if err != nil {
			return err
		}
		if len(vols) > 0 {
			problems = append(problems, stateRefusal(name, src.Stored, vols, p, src))
			continue
		}
		v, err := generateSecret(src.Stored)
		if err != nil {
			return err
		}
		toStore[name] = v
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	if len(toStore) > 0 {
		if err := d.writeState(ctx, p.Name, toStore); err != nil {
			return err
		}
	}
	return confirm(dir, append(missing, unconfirmed...))
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
	return writeMirror(filepath.Join(dir, confirmedFile), []byte(strings.Join(all, "\n")+"\n"))
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

// writeMirror keeps value at path, mode 0600 in a 0700 directory.
func writeMirror(path string, value []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("store secret: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, value, 0o600); err != nil {
		return fmt.Errorf("store secret: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store secret: %w", err)
	}
	return nil
}
