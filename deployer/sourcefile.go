package deployer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Size caps of the files secrets and configs are read from. They are Docker
// Swarm's own limits (a secret of at most 500 KB, a config of 1000 KB), so a
// stack that deploys here also deploys on Swarm, and a mistaken path (a
// database dump, a disk image) is refused before it is read into memory.
const (
	MaxSecretSize = 500 * 1024
	MaxConfigSize = 1000 * 1024
)

// kernelDirs hold the kernel's and processes' state, not files of the user:
// /proc/self/environ is invdeploy's own environment (registry passwords
// among it), /dev/zero never ends. A secret or config there is refused.
var kernelDirs = []string{"/proc", "/sys", "/dev"}

// SourceFileError says why a file cannot be a secret's or config's source,
// with advice that fits the case (never "chmod 600 /dev/zero").
type SourceFileError struct {
	// Path is the file as the compose file names it; Real is where its
	// symlinks lead, when that differs.
	Path, Real string
	// Problem is what is wrong, e.g. "is a FIFO, not a regular file".
	Problem string
	// Fix is what to do.
	Fix string
	// Err is the underlying error, if any.
	Err error
}

func (e *SourceFileError) Error() string {
	where := e.Path
	if e.Real != "" && e.Real != e.Path {
		where += " (-> " + e.Real + ")"
	}
	return fmt.Sprintf("file %s %s; %s", where, e.Problem, e.Fix)
}

func (e *SourceFileError) Unwrap() error { return e.Err }

// kernelDir is the entry of kernelDirs that holds the clean absolute path
// p, or "".
func kernelDir(p string) string {
	for _, d := range kernelDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return d
		}
	}
	return ""
}

// fileKind names a file mode that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// statSourceFile checks that path (absolute) is a regular file of at most
// limit bytes outside /proc, /sys and /dev once its symlinks are resolved,
// and returns its real path and file info. It opens nothing, so a FIFO
// cannot hang it.
func statSourceFile(path string, limit int64) (string, fs.FileInfo, error) {
	if d := kernelDir(filepath.Clean(path)); d != "" {
		return "", nil, kernelDirError(path, "", d)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, &SourceFileError{Path: path, Problem: "is missing", Fix: "create it with the value (mode 0600)", Err: err}
		}
		return "", nil, &SourceFileError{Path: path, Problem: "cannot be resolved (" + err.Error() + ")", Fix: "point the compose file at a regular file you can read", Err: err}
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", nil, err
	}
	if d := kernelDir(real); d != "" {
		return real, nil, kernelDirError(path, real, d)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return real, nil, &SourceFileError{Path: path, Real: real, Problem: "cannot be read (" + err.Error() + ")", Fix: "point the compose file at a regular file you can read", Err: err}
	}
	if !fi.Mode().IsRegular() {
		return real, fi, &SourceFileError{Path: path, Real: real, Problem: "is " + fileKind(fi.Mode()) + ", not a regular file",
			Fix: "put the value in a regular file (mode 0600) and name that file"}
	}
	if fi.Size() > limit {
		return real, fi, tooLarge(path, real, fi.Size(), limit)
	}
	return real, fi, nil
}

func kernelDirError(path, real, dir string) error {
	return &SourceFileError{Path: path, Real: real, Problem: "is under " + dir + ", which holds the kernel's and processes' state, not a value of yours",
		Fix: "put the value in a regular file of your own (mode 0600) and name that file"}
}

func tooLarge(path, real string, size, limit int64) error {
	what := fmt.Sprintf("grew past the limit of %d KB while it was read", limit/1024)
	if size >= 0 {
		what = fmt.Sprintf("is %d bytes, over the limit of %d KB", size, limit/1024)
	}
	return &SourceFileError{Path: path, Real: real, Problem: what,
		Fix: "a secret or config holds a value, not data (Docker Swarm has the same limits); mount larger files as a volume"}
}

// readSourceFile reads a secret's or config's file under statSourceFile's
// rules. The file is opened non-blocking and checked again once open, so a
// file swapped for a FIFO or a device meanwhile is refused, not read.
func readSourceFile(path string, limit int64) ([]byte, error) {
	real, fi, err := statSourceFile(path, limit)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &SourceFileError{Path: path, Real: real, Problem: "cannot be read (" + err.Error() + ")", Fix: "point the compose file at a regular file you can read", Err: err}
	}
	defer f.Close()
	open, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !open.Mode().IsRegular() || !os.SameFile(fi, open) {
		return nil, &SourceFileError{Path: path, Real: real, Problem: "changed while it was read", Fix: "run the command again"}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &SourceFileError{Path: path, Real: real, Problem: "cannot be read (" + err.Error() + ")", Fix: "point the compose file at a regular file you can read", Err: err}
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(path, real, -1, limit)
	}
	return b, nil
}
