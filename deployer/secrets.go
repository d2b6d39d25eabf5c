package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	cerrdefs "github.com/containerd/errdefs"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/internal/version"
)

// ExtGenerate is the secret extension that lets invdeploy generate the value
// on first use when its environment variable is unset (the bundled stack's
// database password).
const ExtGenerate = "x-invdeploy-generate"

// ConfigDir is where invdeploy keeps generated secrets of a project:
// $XDG_CONFIG_HOME/invdeploy/<project> (or ~/.config/invdeploy/<project>),
// outside any git checkout and any build context.
func ConfigDir(project string) (string, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locate the user config directory (set XDG_CONFIG_HOME or HOME): %w", err)
	}
	return filepath.Join(base, "invdeploy", project), nil
}

// secretSource says where a secret's value comes from, without the value.
type secretSource struct {
	Name     string // key under top-level secrets
	File     string // file: source, absolute
	Env      string // environment: source variable
	Generate bool   // generated and stored under ConfigDir when Env is unset
	Stored   string // path of the generated value
}

func secretSources(p *types.Project, configDir string) (map[string]secretSource, error) {
	out := map[string]secretSource{}
	for name, sec := range p.Secrets {
		src := secretSource{Name: name, File: sec.File, Env: sec.Environment}
		if src.File != "" && !filepath.IsAbs(src.File) {
			src.File = filepath.Join(p.WorkingDir, src.File)
		}
		if v, ok := sec.Extensions[ExtGenerate]; ok {
			if b, ok := v.(bool); ok && b {
				if src.Env == "" {
					return nil, fmt.Errorf("secrets.%s.%s: only secrets with an environment: source can be generated", name, ExtGenerate)
				}
				src.Generate = true
				dir := configDir
				if dir == "" {
					var err error
					if dir, err = ConfigDir(p.Name); err != nil {
						return nil, err
					}
				}
				src.Stored = filepath.Join(dir, name)
			}
		}
		out[name] = src
	}
	return out, nil
}

// usedSecrets are the top-level secret names some service references.
func usedSecrets(p *types.Project) []string {
	seen := map[string]bool{}
	var names []string
	for _, name := range p.ServiceNames() {
		for _, s := range p.Services[name].Secrets {
			if !seen[s.Source] {
				seen[s.Source] = true
				names = append(names, s.Source)
			}
		}
	}
	return names
}

// readSecret returns the value of a secret. When generate is true a missing
// generated secret is created (32 random bytes, base64url, mode 0600 in a
// 0700 directory). Errors never hold the value.
func readSecret(p *types.Project, src secretSource, generate bool) ([]byte, error) {
	switch {
	case src.File != "":
		b, err := readSourceFile(src.File, MaxSecretSize)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", src.Name, err)
		}
		return b, nil
	case src.Env != "":
		if v, ok := p.Environment[src.Env]; ok && v != "" {
			return []byte(v), nil
		}
		if !src.Generate {
			return nil, fmt.Errorf("secret %s: environment variable %s is not set", src.Name, src.Env)
		}
		b, err := readSourceFile(src.Stored, MaxSecretSize)
		if err == nil {
			return bytes.TrimRight(b, "\r\n"), nil
		}
		if !errors.Is(err, fs.ErrNotExist) || !generate {
			return nil, fmt.Errorf("read generated secret %s: %w", src.Name, err)
		}
		return generateSecret(src.Stored)
	}
	return nil, fmt.Errorf("secret %s has neither file: nor environment:", src.Name)
}

func generateSecret(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate secret: %w", err)
	}
	v := []byte(base64.RawURLEncoding.EncodeToString(raw))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store generated secret at %s: %w", path, err)
	}
	if _, err := f.Write(v); err != nil {
		f.Close()
		return nil, fmt.Errorf("store generated secret at %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store generated secret at %s: %w", path, err)
	}
	return v, nil
}

// Labels of the delivery objects.
const (
	// LabelDeliveryFor names, on a delivery volume, the container it
	// serves: the volumes are removed with that container.
	LabelDeliveryFor = "io.invdeploy.delivery-for"
	// labelLoader marks the never-started container that fills a delivery
	// volume; its value is the project.
	labelLoader = "io.invdeploy.delivery-loader"
)

// loaderMount is where the loader container mounts the files volume.
const loaderMount = "/invdeploy-delivery"

// deliveryMountOpts are the host-side mount options of the /run/secrets
// volume. The container's bind of it inherits them, as long as the
// container's mount does not ask for ro itself (then runc remounts with ro
// only and drops noexec and nosuid: measured on engine 20.10).
const deliveryMountOpts = "bind,ro,noexec,nosuid,nodev"

// deliveryTar is a tar stream of a service's files for the files volume:
// run-secrets/ (what the container sees at /run/secrets) and files/<n> (each
// bind-mounted at its own target). A file is owned by the reference's
// uid:gid, else the container's user, so mode 0400 leaves it readable to the
// service; the engine keeps the owner from the tar header.
func deliveryTar(s types.ServiceConfig, files []deliveredFile, values map[string][]byte, uid, gid int) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	epoch := time.Unix(0, 0)
	for _, f := range files {
		v, ok := values[valueKey(f.Kind, f.Name)]
		if !ok {
			return nil, fmt.Errorf("services.%s: %s %s has no value", s.Name, f.Kind, f.Name)
		}
		// Parent directories first, root-owned 0755 as /run/secrets is
		// under swarm: listable, not writable, by the service.
		parts := strings.Split(f.Stored, "/")
		for i := 1; i < len(parts); i++ {
			dir := strings.Join(parts[:i], "/") + "/"
			if dirs[dir] {
				continue
			}
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch}); err != nil {
				return nil, fmt.Errorf("pack %s %s: %w", f.Kind, f.Name, err)
			}
		}
		u, g := uid, gid
		if f.UID != "" {
			u, _ = strconv.Atoi(f.UID) // validated by deliveryFiles
		}
		if f.GID != "" {
			g, _ = strconv.Atoi(f.GID)
		}
		hdr := &tar.Header{Name: f.Stored, Mode: f.Mode, Size: int64(len(v)), Typeflag: tar.TypeReg, ModTime: epoch, Uid: u, Gid: g}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("pack %s %s: %w", f.Kind, f.Name, err)
		}
		if _, err := tw.Write(v); err != nil {
			return nil, fmt.Errorf("pack %s %s: %w", f.Kind, f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("pack secrets and configs of %s: %w", s.Name, err)
	}
	return &buf, nil
}

// prepareDelivery puts a service's secrets and configs where the container
// about to be created from spec will see them, through the Engine API only
// (so a remote engine works the same), and adds the mounts to spec:
//
//   - a files volume holds the values; a loader container (created from the
//     service's image, never started) mounts it and receives them by
//     CopyToContainer, so the owner can be the container's user as its own
//     /etc/passwd resolves it;
//   - /run/secrets is a second local volume that binds the files volume's
//     run-secrets directory with ro,noexec,nosuid,nodev: the service can read
//     its secrets but not write, add or execute anything there;
//   - a target elsewhere is a read-only bind of its one file.
//
// Not tmpfs: the engine only mounts a tmpfs while a container runs, so a
// value copied into a created container's tmpfs is lost at start, and one
// in a tmpfs volume is lost when the loader lets go of it, and at every
// restart of the container (restart policies, a host reboot). The values
// rest in the engine's volume directory, root-only on the host, as a bind
// mount of the file would. undo removes the volumes when the container is
// not created after all.
func (d *Deployer) prepareDelivery(ctx context.Context, p *types.Project, s types.ServiceConfig, spec *containerSpec, values map[string][]byte) (undo func(), err error) {
	undo = func() {}
	files, err := deliveryFiles(s)
	if err != nil || len(files) == 0 {
		return undo, err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return undo, fmt.Errorf("deliver secrets to %s: %w", spec.Name, err)
	}
	base := fmt.Sprintf("%s-delivery-%x", spec.Name, suffix)
	labels := map[string]string{LabelProject: p.Name, LabelDeliveryFor: spec.Name, LabelManagedBy: "invdeploy", LabelVersion: version.Version}
	undo = func() { _ = d.removeDelivery(context.WithoutCancel(ctx), spec.Name) }
	vol, err := d.engine.VolumeCreate(ctx, volume.CreateOptions{Name: base + "-files", Driver: "local", Labels: labels})
	if err != nil {
		return undo, fmt.Errorf("deliver secrets to %s: create volume: %w", spec.Name, err)
	}
	if vol.Mountpoint == "" {
		return undo, fmt.Errorf("deliver secrets to %s: the engine reports no host path for volume %s; invdeploy needs the local volume driver", spec.Name, vol.Name)
	}
	if err := d.loadDelivery(ctx, p, s, spec, vol.Name, files, values); err != nil {
		return undo, err
	}
	var underSecrets bool
	for i, f := range files {
		if strings.HasPrefix(f.Stored, "run-secrets/") {
			underSecrets = true
			continue
		}
		spec.Host.Mounts = append(spec.Host.Mounts, mount.Mount{Type: mount.TypeBind, Source: vol.Mountpoint + "/" + files[i].Stored, Target: f.Target, ReadOnly: true})
	}
	if underSecrets {
		sv, err := d.engine.VolumeCreate(ctx, volume.CreateOptions{Name: base + "-secrets", Driver: "local", Labels: labels,
			DriverOpts: map[string]string{"type": "none", "device": vol.Mountpoint + "/run-secrets", "o": deliveryMountOpts}})
		if err != nil {
			return undo, fmt.Errorf("deliver secrets to %s: create volume: %w", spec.Name, err)
		}
		// Not ReadOnly: the volume is read-only on the host already, and a
		// read-only container mount would lose noexec and nosuid (see
		// deliveryMountOpts). NoCopy: nothing of the image is copied in.
		spec.Host.Mounts = append(spec.Host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: sv.Name, Target: secretsDir,
			VolumeOptions: &mount.VolumeOptions{NoCopy: true}})
	}
	return undo, nil
}

// loadDelivery fills the files volume through a loader container created
// from the service's image (never started, no network), removed after.
func (d *Deployer) loadDelivery(ctx context.Context, p *types.Project, s types.ServiceConfig, spec *containerSpec, vol string, files []deliveredFile, values map[string][]byte) error {
	cfg := &container.Config{Image: spec.Config.Image, User: spec.Config.User, Entrypoint: []string{"/invdeploy-loader-is-never-started"},
		NetworkDisabled: true, Labels: map[string]string{labelLoader: p.Name, LabelManagedBy: "invdeploy"}}
	host := &container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: loaderMount, VolumeOptions: &mount.VolumeOptions{NoCopy: true}}}}
	loader, err := d.engine.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		return fmt.Errorf("deliver secrets to %s: create loader: %w", spec.Name, err)
	}
	defer func() {
		_ = d.engine.ContainerRemove(context.WithoutCancel(ctx), loader.ID, container.RemoveOptions{Force: true})
	}()
	ins, err := d.engine.ContainerInspect(ctx, loader.ID)
	if err != nil {
		return fmt.Errorf("deliver secrets to %s: %w", spec.Name, err)
	}
	user := ""
	if ins.Config != nil {
		user = ins.Config.User // the service's user:, else the image's USER
	}
	uid, gid, err := d.resolveUser(ctx, loader.ID, user)
	if err != nil {
		return fmt.Errorf("deliver secrets to %s: %w", spec.Name, err)
	}
	buf, err := deliveryTar(s, files, values, uid, gid)
	if err != nil {
		return err
	}
	// Not CopyUIDGID: engines before 25 resolve the user in the host's
	// passwd database, not the container's; the tar header's owner is kept.
	if err := d.engine.CopyToContainer(ctx, loader.ID, loaderMount, buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("deliver secrets to %s: %w", spec.Name, err)
	}
	return nil
}

// removeDelivery removes the delivery volumes of a container that is gone
// (the /run/secrets one first: it binds the files one).
func (d *Deployer) removeDelivery(ctx context.Context, containerName string) error {
	list, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelDeliveryFor+"="+containerName))})
	if err != nil {
		return fmt.Errorf("list the secret volumes of %s: %w", containerName, err)
	}
	sort.Slice(list.Volumes, func(i, j int) bool {
		return strings.HasSuffix(list.Volumes[i].Name, "-secrets") && !strings.HasSuffix(list.Volumes[j].Name, "-secrets")
	})
	for _, v := range list.Volumes {
		if err := d.engine.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove volume %s of %s: %w", v.Name, containerName, err)
		}
	}
	return nil
}

// sweepDelivery removes what an interrupted delivery may have left of a
// project whose containers are gone: loader containers and delivery volumes
// (the /run/secrets ones first).
func (d *Deployer) sweepDelivery(ctx context.Context, project string) error {
	loaders, err := d.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelLoader+"="+project))})
	if err != nil {
		return fmt.Errorf("list the secret loaders of %s: %w", project, err)
	}
	for _, c := range loaders {
		if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove secret loader %s: %w", c.ID, err)
		}
	}
	list, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelProject+"="+project), filters.Arg("label", LabelDeliveryFor))})
	if err != nil {
		return fmt.Errorf("list the secret volumes of %s: %w", project, err)
	}
	names := map[string]bool{}
	for _, v := range list.Volumes {
		names[v.Labels[LabelDeliveryFor]] = true
	}
	for name := range names {
		if err := d.removeDelivery(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// deliveredChange tells why an existing container must be recreated for its
// secrets and configs: one that predates the read-only delivery, or whose
// delivered file differs from the value now (read back through the API and
// compared in memory), unless this machine's delivery record says it
// delivered exactly these values to this container (see deliveryRecord).
// "" means unchanged.
func (d *Deployer) deliveredChange(ctx context.Context, c container.Summary, s types.ServiceConfig, values map[string][]byte) (string, error) {
	files, err := deliveryFiles(s)
	if err != nil || len(files) == 0 {
		return "", err
	}
	if !hasDelivery(c) {
		return "secrets and configs now delivered read-only", nil
	}
	if d.delivered.matches(c.ID, files, values) {
		return "", nil // this machine delivered exactly these values to it
	}
	// One read of /run/secrets for the files there (each read costs a
	// mount of the container's filesystems in the engine), one per file
	// elsewhere.
	limit := 0
	var reads []string
	underSecrets := false
	for _, f := range files {
		limit = max(limit, len(values[valueKey(f.Kind, f.Name)]))
		if strings.HasPrefix(f.Stored, "run-secrets/") {
			underSecrets = true
		} else {
			reads = append(reads, f.Target)
		}
	}
	if underSecrets {
		reads = append([]string{secretsDir}, reads...)
	}
	got := map[string][]byte{}
	for _, target := range reads {
		if err := d.readDelivered(ctx, c.ID, target, limit, got); err != nil {
			return "", fmt.Errorf("read back %s from %s (run up again; if this persists, down and up): %w", target, containerName(c), err)
		}
	}
	for _, f := range files {
		b, ok := got[f.Target]
		if !ok || subtle.ConstantTimeCompare(b, values[valueKey(f.Kind, f.Name)]) != 1 {
			return fmt.Sprintf("%s %s changed", f.Kind, f.Name), nil
		}
	}
	d.delivered.remember(c.ID, files, values)
	return "", nil
}

// hasDelivery reports whether a container mounts delivery volumes (see
// prepareDelivery: the /run/secrets volume, or binds of files inside the
// files volume), from its list entry: every up asks this of every
// container, and on a remote engine a call each would cross the network.
// A container of an older invdeploy has none.
func hasDelivery(c container.Summary) bool {
	prefix := deliveryKey(c) + "-delivery-" // a rolled container keeps its first name's volumes
	for _, m := range c.Mounts {
		switch m.Type {
		case mount.TypeVolume:
			if strings.HasPrefix(m.Name, prefix) {
				return true
			}
		case mount.TypeBind:
			if strings.Contains(m.Source, "/"+prefix) {
				return true
			}
		}
	}
	return false
}

// readDelivered reads a delivered file, or every file of a delivered
// directory, back from a container in one call into got (path in the
// container -> at most limit+1 bytes, enough to see a value differs). A
// missing target adds nothing.
func (d *Deployer) readDelivered(ctx context.Context, id, target string, limit int, got map[string][]byte) error {
	rc, _, err := d.engine.CopyFromContainer(ctx, id, target)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	// Entries are named from the target's base name on.
	parent := path.Dir(target)
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, int64(limit)+1))
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		got[path.Join(parent, h.Name)] = b
	}
}

// resolveUser turns a container user spec (name or uid, optionally :group)
// into numeric ids with the files of the created container (ContainerUser).
func (d *Deployer) resolveUser(ctx context.Context, id, spec string) (uid, gid int, err error) {
	return ContainerUser(ctx, d.engine, id, spec)
}
