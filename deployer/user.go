package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/moby/sys/user"
)

// ResolveUser is the one resolution of a container's user spec (name or
// uid, optionally :group name or gid) to numeric ids, on every target, as
// the runtime does it: names are looked up in the image's /etc/passwd and
// /etc/group (nil when the image has none); a numeric uid without a group
// gets its passwd entry's group, else 0.
func ResolveUser(spec string, passwd, group []byte) (uid, gid int, err error) {
	if spec == "" {
		return 0, 0, nil
	}
	u, err := user.GetExecUser(spec, nil, readerOrNil(passwd), readerOrNil(group))
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: %w", spec, err)
	}
	return u.Uid, u.Gid, nil
}

// readerOrNil is nil (no such file) for nil, else a reader of b.
func readerOrNil(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// FileCopier reads files out of a container; engine clients are one.
type FileCopier interface {
	CopyFromContainer(ctx context.Context, containerID, srcPath string) (io.ReadCloser, container.PathStat, error)
}

// ContainerUser resolves spec (ResolveUser) with the /etc/passwd and
// /etc/group of container id (created, never started).
func ContainerUser(ctx context.Context, eng FileCopier, id, spec string) (uid, gid int, err error) {
	if spec == "" {
		return 0, 0, nil
	}
	read := func(path string) []byte {
		rc, _, err := eng.CopyFromContainer(ctx, id, path)
		if err != nil {
			return nil
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err != nil {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(tr, 4<<20))
		return b
	}
	return ResolveUser(spec, read("/etc/passwd"), read("/etc/group"))
}
