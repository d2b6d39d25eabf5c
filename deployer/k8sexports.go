package deployer

import (
	"context"
	"fmt"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
)

// What the Kubernetes applier (deployer/kube) needs of this package's
// reading of a compose service and of the local engine.

// HealthPath is the path x-invdeploy health_path names on s ("" when it
// names none); a bad x-invdeploy is an error.
func HealthPath(s types.ServiceConfig) (string, error) {
	e, err := parseServiceExt(s)
	if err != nil {
		return "", err
	}
	return e.HealthPath, nil
}

// ImageUser resolves a compose user spec (name or uid, optionally :group)
// to numeric ids through the image's /etc/passwd and /etc/group, read from
// a container created (never started) from image on the local engine and
// removed again. A numeric spec with a group needs no container.
func (d *Deployer) ImageUser(ctx context.Context, image, spec string) (uid, gid int, err error) {
	if spec == "" {
		return 0, 0, nil
	}
	c, err := d.engine.ContainerCreate(ctx, &container.Config{Image: image, Entrypoint: []string{"/nonexistent"}, Labels: map[string]string{LabelManagedBy: "invdeploy"}}, nil, nil, nil, "")
	if err != nil {
		return 0, 0, fmt.Errorf("read the users of %s: %w", image, err)
	}
	defer d.engine.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true})
	return d.resolveUser(ctx, c.ID, spec)
}

// ImageExposed lists the ports image exposes (EXPOSE), as "8000/tcp", from
// the local engine; an image that is not here exposes nothing known.
func (d *Deployer) ImageExposed(ctx context.Context, image string) []string {
	ins, err := d.engine.ImageInspect(ctx, image)
	if err != nil || ins.Config == nil {
		return nil
	}
	var out []string
	for p := range ins.Config.ExposedPorts {
		out = append(out, string(p))
	}
	return out
}

// ImageDigests says whether image is on the local engine and lists its
// repository digests (repo@sha256:..., one per registry it was pushed to
// or pulled from).
func (d *Deployer) ImageDigests(ctx context.Context, image string) (present bool, digests []string) {
	ins, err := d.engine.ImageInspect(ctx, image)
	if err != nil {
		return false, nil
	}
	return true, ins.RepoDigests
}

// DependencyOrder is the order up applies services in: each after what it
// depends on, the same on every run (see dependencyOrder).
func DependencyOrder(p *types.Project) ([]string, error) { return dependencyOrder(p) }
