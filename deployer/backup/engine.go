package backup

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/invdeploy/invdeploy/deployer"
)

// Backups takes, lists and restores backups through one engine.
type Backups struct {
	// Engine is the engine the stack runs on.
	Engine deployer.Engine
	// Deployer takes the deploy lock and brings the stack up after a
	// restore (on the same engine).
	Deployer *deployer.Deployer
	// Out receives progress.
	Out *deployer.Progress
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (b *Backups) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// labelHelper marks the short-lived containers backup and restore run; its
// value is the project.
const labelHelper = "io.invdeploy.backup-helper"

// running is the running container of pg's service, or an error saying
// to bring the stack up.
func (b *Backups) running(ctx context.Context, project, service string) (container.Summary, error) {
	cs, err := b.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", deployer.LabelProject+"="+project),
		filters.Arg("label", deployer.LabelService+"="+service))})
	if err != nil {
		return container.Summary{}, fmt.Errorf("list the containers of %s: %w", service, err)
	}
	for _, c := range cs {
		if c.State == "running" && c.Labels[labelHelper] == "" {
			return c, nil
		}
	}
	return container.Summary{}, refuse(service, "service %s of project %s is not running: start it with invdeploy up", service, project)
}

// helper is a short-lived container on the database's image.
type helper struct {
	Name   string
	Image  string
	User   string
	Env    []string
	Cmd    []string
	Mounts []mount.Mount
	// Fill runs after create, before start (e.g. CopyToContainer).
	Fill func(ctx context.Context, id string) error
}

// run creates, fills, starts and waits for h; it returns the container's
// output and exit code, and removes the container.
func (b *Backups) run(ctx context.Context, project string, h helper) (string, int, error) {
	cfg := &container.Config{Image: h.Image, User: h.User, Env: h.Env, Entrypoint: h.Cmd,
		Labels: map[string]string{labelHelper: project, deployer.LabelManagedBy: "invdeploy"}}
	host := &container.HostConfig{NetworkMode: "none", Mounts: h.Mounts,
		Tmpfs: map[string]string{"/var/run/postgresql": "size=1m", "/tmp": "size=64m"}}
	c, err := b.Engine.ContainerCreate(ctx, cfg, host, nil, nil, h.Name)
	if err != nil {
		return "", 0, fmt.Errorf("create %s: %w", h.Name, err)
	}
	defer b.Engine.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if h.Fill != nil {
		if err := h.Fill(ctx, c.ID); err != nil {
			return "", 0, err
		}
	}
	if err := b.Engine.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return "", 0, fmt.Errorf("start %s: %w", h.Name, err)
	}
	var code int
	for {
		ins, err := b.Engine.ContainerInspect(ctx, c.ID)
		if err != nil {
			return "", 0, fmt.Errorf("inspect %s: %w", h.Name, err)
		}
		if ins.State != nil && !ins.State.Running && ins.State.Status != "created" {
			code = ins.State.ExitCode
			break
		}
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	rc, err := b.Engine.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", code, fmt.Errorf("logs of %s: %w", h.Name, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return "", code, fmt.Errorf("logs of %s: %w", h.Name, err)
	}
	return out.String(), code, nil
}

// volumeExists reports whether the engine has a volume named name.
func (b *Backups) volumeExists(ctx context.Context, name string) (bool, error) {
	list, err := b.Engine.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return false, fmt.Errorf("list volumes: %w", err)
	}
	for _, v := range list.Volumes {
		if v.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// mountSpec is a volume mount of a helper.
type mountSpec struct {
	volume, target string
	ro             bool
}

type mountSpecs []mountSpec

func (ms mountSpecs) mounts() []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: mount.TypeVolume, Source: m.volume, Target: m.target, ReadOnly: m.ro})
	}
	return out
}
