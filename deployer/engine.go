// Package deployer is invdeploy's engine-facing library: it loads a stack (a
// compose file), checks it before anything changes (preflight), builds its
// images and brings it up, down, and reports its status and logs, through the
// Docker Engine API only.
//
// The contract mirrors docker/compose's pkg/api: one method per verb on
// Deployer, each taking a context, the stack or project name, and an options
// struct. The Docker client sits behind the narrow Engine interface so unit
// tests use a fake and end-to-end tests the real engine; the same code drives
// a local or a remote engine.
package deployer

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Engine is the part of the Docker Engine API invdeploy uses. *client.Client
// implements it; unit tests use a hand-written fake.
type Engine interface {
	Ping(ctx context.Context) (types.Ping, error)
	ServerVersion(ctx context.Context) (types.Version, error)
	DaemonHost() string

	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, opts build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImagePush(ctx context.Context, ref string, opts image.PushOptions) (io.ReadCloser, error)
	RegistryLogin(ctx context.Context, auth registry.AuthConfig) (registry.AuthenticateOKBody, error)
	// DistributionInspect asks the image's registry for its manifest (GET
	// /distribution/{name}/json): whether it exists, without pulling it.
	DistributionInspect(ctx context.Context, ref, encodedRegistryAuth string) (registry.DistributionInspect, error)

	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerStop(ctx context.Context, id string, opts container.StopOptions) error
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ContainerRename(ctx context.Context, id, name string) error
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	CopyToContainer(ctx context.Context, id, dstPath string, content io.Reader, opts container.CopyToContainerOptions) error
	CopyFromContainer(ctx context.Context, id, srcPath string) (io.ReadCloser, container.PathStat, error)
	ContainerExecCreate(ctx context.Context, id string, opts container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, opts container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)

	NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error)
	NetworkCreate(ctx context.Context, name string, opts network.CreateOptions) (network.CreateResponse, error)
	NetworkConnect(ctx context.Context, networkID, containerID string, cfg *network.EndpointSettings) error
	NetworkRemove(ctx context.Context, networkID string) error

	VolumeList(ctx context.Context, opts volume.ListOptions) (volume.ListResponse, error)
	VolumeCreate(ctx context.Context, opts volume.CreateOptions) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
}

var _ Engine = (*client.Client)(nil)

// NewClient returns a Docker Engine API client for host ("" means $DOCKER_HOST,
// then the local socket) that negotiates the API version with the engine, so
// it works against API 1.41 (Docker 20.10) and newer. extra options come last
// and win: the remote code passes client.WithDialContext for ssh:// hosts.
func NewClient(host string, extra ...client.Opt) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	opts = append(opts, extra...)
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	return c, nil
}

// NewLocalClient returns a client for the engine on this machine at host (a
// unix:// socket), ignoring the environment's DOCKER_HOST and TLS settings
// (DOCKER_CERT_PATH, DOCKER_TLS_VERIFY): those describe the remote engine
// when invdeploy remote sends images from here to there.
func NewLocalClient(host string) (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	return c, nil
}

// IsRemoteHost reports whether an engine address (-H, DOCKER_HOST) names
// another machine: anything but a unix socket, a named pipe or a loopback
// tcp address. "" (the local default) is not remote.
func IsRemoteHost(host string) bool {
	if host == "" || strings.HasPrefix(host, "unix://") || strings.HasPrefix(host, "npipe://") {
		return false
	}
	u, err := url.Parse(host)
	if err != nil {
		return true
	}
	if u.Scheme != "tcp" && u.Scheme != "http" && u.Scheme != "https" {
		return true
	}
	h := u.Hostname()
	if h == "localhost" {
		return false
	}
	ip := net.ParseIP(h)
	return ip == nil || !ip.IsLoopback()
}
