// Package scratchimage builds the small FROM-scratch images invdeploy makes
// itself from a few files (the deploy lock, the rollout proxy, the Swarm
// edge): a build context written in memory, with fixed modification times
// so the same files give the same context, built by the engine's classic
// builder (nothing pulled: FROM scratch), its progress read until the end
// so that a failed step is an error.
package scratchimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/build"

	"github.com/invdeploy/invdeploy/deployer/internal/enginestream"
)

// File is one entry of a build context.
type File struct {
	Name string // slash-separated; a directory ends with /
	Mode int64
	Body []byte
	Dir  bool
	UID  int // owner (uid and gid) in the context; COPY keeps it
}

// Context is the tar build context holding files, in order.
func Context(files []File) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Size: int64(len(f.Body)), ModTime: epoch, Uid: f.UID, Gid: f.UID, Typeflag: tar.TypeReg}
		if f.Dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// Builder is the engine call Build needs.
type Builder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, opts build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

// Build builds files (a Dockerfile among them) into the image ref with
// labels.
func Build(ctx context.Context, b Builder, ref string, labels map[string]string, files []File) error {
	ctxTar, err := Context(files)
	if err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	resp, err := b.ImageBuild(ctx, ctxTar, build.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Version: build.BuilderV1, Labels: labels,
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if err := enginestream.Decode(resp.Body, nil); err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	return nil
}
