package deployer

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// contextFilter decides which files of a build context are sent to the
// engine, from the context's .dockerignore, as the docker CLI does.
type contextFilter struct {
	pm         *patternmatcher.PatternMatcher
	dockerfile string // relative path, always included
}

func newContextFilter(dir, dockerfile string) (*contextFilter, error) {
	var patterns []string
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	switch {
	case err == nil:
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, ".dockerignore"), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open .dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, ".dockerignore"), err)
	}
	return &contextFilter{pm: pm, dockerfile: filepath.ToSlash(dockerfile)}, nil
}

// Excluded reports whether rel (slash-separated, relative to the context) is
// left out of the build context.
func (c *contextFilter) Excluded(rel string) (bool, error) {
	rel = filepath.ToSlash(rel)
	if rel == c.dockerfile || rel == ".dockerignore" {
		return false, nil
	}
	return c.pm.MatchesOrParentMatches(rel)
}

// walkContext calls fn for every file and directory of the context dir that
// is not dockerignored, in lexical order. Excluded directories are skipped
// whole unless the ignore file has exclusions (!pattern) that may re-include
// something below them.
func walkContext(dir string, filter *contextFilter, fn func(rel string, d fs.DirEntry) error) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		ex, err := filter.Excluded(rel)
		if err != nil {
			return fmt.Errorf("match %s against .dockerignore: %w", rel, err)
		}
		if ex {
			if d.IsDir() && !filter.pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(filepath.ToSlash(rel), d)
	})
}

// contextEpoch is the modification time of every file in the build context
// tar, so that COPY layers do not depend on checkout times.
var contextEpoch = time.Unix(0, 0)

// writeContextTar writes the build context of dir to w as a tar stream,
// honouring .dockerignore.
func writeContextTar(w io.Writer, dir, dockerfile string) error {
	return writeContextTarAs(w, dir, dockerfile, nil)
}

// writeContextTarAs is writeContextTar with the Dockerfile's content
// replaced by dfContent when that is not nil (what BuildKit is sent when
// invdeploy adds cache mounts).
func writeContextTarAs(w io.Writer, dir, dockerfile string, dfContent []byte) error {
	filter, err := newContextFilter(dir, dockerfile)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	err = walkContext(dir, filter, func(rel string, d fs.DirEntry) error {
		path := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			return nil // sockets, devices, fifos never enter a context
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = contextEpoch, time.Time{}, time.Time{}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		if dfContent != nil && rel == filter.dockerfile && fi.Mode().IsRegular() {
			hdr.Size = int64(len(dfContent))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err := tw.Write(dfContent)
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, bufio.NewReader(f))
			f.Close()
			if err != nil {
				return fmt.Errorf("add %s: %w", rel, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack build context %s: %w", dir, err)
	}
	return tw.Close()
}

// contextProblems are the refusals for the build context of service s: a
// sensitive file (see sensitiveFiles) or a secret-looking one that is not
// dockerignored. Preflight and every path that sends a context (build, push,
// up, remote up through checkBuildContext) run this one rule.
func contextProblems(p *types.Project, s types.ServiceConfig, sensitive map[string]string) []Problem {
	if s.Build == nil || strings.Contains(s.Build.Context, "://") {
		return nil // a remote context is fetched by the engine, not sent from here
	}
	var problems []Problem
	add := func(subject, format string, args ...any) {
		problems = append(problems, Problem{Rule: "file", Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	dir := buildContextDir(p, s)
	filter, err := newContextFilter(dir, dockerfileName(s))
	if err != nil {
		add(dir, "%v", err)
		return problems
	}
	// Real paths on both sides: a secret reached through a symlinked
	// directory (secrets -> app/config, context app/) is inside the
	// context the engine is sent, whatever path the compose file gives.
	// The walk below sends a symlink inside the context as a link, never
	// what it points to, so the real path is where a file is sent from.
	realDir := realPath(dir)
	realSensitive := map[string]string{}
	for _, f := range sortedKeys(sensitive) {
		real := realPath(f)
		if _, seen := realSensitive[real]; !seen {
			realSensitive[real] = sensitive[f]
		}
		rel, ok := within(realDir, real)
		if !ok {
			continue
		}
		if ex, _ := filter.Excluded(rel); !ex {
			where := ""
			if real != f {
				where = " (through a symlink, at " + real + ")"
			}
			add(f, "%s%s would enter the build context of services.%s (%s); add %s to %s", sensitive[f], where, s.Name, dir, filepath.ToSlash(rel), filepath.Join(dir, ".dockerignore"))
		}
	}
	var found []string
	_ = walkContext(dir, filter, func(rel string, de fs.DirEntry) error {
		if de.IsDir() {
			if de.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if secretLooking(de.Name()) && realSensitive[filepath.Join(realDir, filepath.FromSlash(rel))] == "" {
			found = append(found, rel)
		}
		if len(found) >= 5 {
			return fs.SkipAll
		}
		return nil
	})
	for _, rel := range found {
		add(filepath.Join(dir, rel), "looks like a secret and would enter the build context of services.%s; add %s to %s", s.Name, rel, filepath.Join(dir, ".dockerignore"))
	}
	return problems
}

// realPath is p with its symlinks resolved, made absolute; p itself when
// it cannot be resolved (a missing file is refused elsewhere).
func realPath(p string) string {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if abs, err := filepath.Abs(real); err == nil {
		return abs
	}
	return real
}

// within returns path's path relative to dir and true when path is dir or
// below it. Both are clean absolute paths; "..pw" is a name in dir, not a
// parent reference.
func within(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

// checkBuildContext runs the secret rule preflight runs on the build context
// of s: when the context would carry a credential it returns a
// *PreflightError and the caller sends nothing. buildService, the one place
// that sends a context (build, push, up, remote up), calls it first, so no
// path can skip the rule.
func checkBuildContext(p *types.Project, s types.ServiceConfig) error {
	if problems := contextProblems(p, s, sensitiveFiles(p)); len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}

// dockerfileInfo is what preflight and build need from a Dockerfile.
type dockerfileInfo struct {
	// BaseImages are the FROM images that are neither earlier stages nor
	// scratch nor parameterised.
	BaseImages []string
	// Args are the names declared with ARG.
	Args map[string]bool
}

func parseDockerfile(r io.Reader) (dockerfileInfo, error) {
	info := dockerfileInfo{Args: map[string]bool{}}
	stages := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var logical strings.Builder
	handle := func(line string) {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			args := fields[1:]
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				args = args[1:]
			}
			if len(args) == 0 {
				return
			}
			img := args[0]
			if len(args) >= 3 && strings.EqualFold(args[1], "AS") {
				stages[strings.ToLower(args[2])] = true
			}
			if strings.EqualFold(img, "scratch") || strings.Contains(img, "$") || stages[strings.ToLower(img)] {
				return
			}
			info.BaseImages = append(info.BaseImages, img)
		case "ARG":
			for _, a := range fields[1:] {
				name, _, _ := strings.Cut(a, "=")
				info.Args[name] = true
			}
		}
	}
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if logical.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			logical.WriteString(strings.TrimSuffix(trimmed, "\\"))
			logical.WriteString(" ")
			continue
		}
		logical.WriteString(trimmed)
		handle(logical.String())
		logical.Reset()
	}
	if logical.Len() > 0 {
		handle(logical.String())
	}
	return info, sc.Err()
}

// cacheDirective is the Dockerfile comment that opts a stage's RUN
// instructions into BuildKit cache mounts when invdeploy builds through
// BuildKit: "# invdeploy:cache /go/pkg/mod /root/.cache/go-build". The
// classic builder (a plain `docker build .`) reads it as a comment and
// builds the same image contents, only without the caches.
const cacheDirective = "invdeploy:cache"

// withCacheMounts returns the Dockerfile df with
// "--mount=type=cache,target=DIR" added to every RUN instruction that
// follows a cache directive in the same stage (a FROM ends it), and whether
// it added any.
func withCacheMounts(df []byte) ([]byte, bool) {
	var out strings.Builder
	var mounts []string
	cont, changed := false, false
	for _, line := range strings.SplitAfter(string(df), "\n") {
		trimmed := strings.TrimSpace(line)
		if cont || trimmed == "" {
			// Continuation lines (and comments among them) belong to the
			// instruction above.
			if trimmed != "" && !strings.HasPrefix(trimmed, "#") {
				cont = strings.HasSuffix(trimmed, "\\")
			}
			out.WriteString(line)
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			if fields := strings.Fields(strings.TrimPrefix(trimmed, "#")); len(fields) > 0 && fields[0] == cacheDirective {
				mounts = append(mounts, fields[1:]...)
			}
			out.WriteString(line)
			continue
		}
		cont = strings.HasSuffix(trimmed, "\\")
		keyword := strings.Fields(trimmed)[0]
		switch strings.ToUpper(keyword) {
		case "FROM":
			mounts = nil
		case "RUN":
			if len(mounts) > 0 {
				indent := line[:strings.Index(line, keyword)]
				var flags strings.Builder
				for _, m := range mounts {
					fmt.Fprintf(&flags, "--mount=type=cache,target=%s ", m)
				}
				line = indent + keyword + " " + flags.String() + strings.TrimLeft(line[len(indent)+len(keyword):], " \t")
				changed = true
			}
		}
		out.WriteString(line)
	}
	return []byte(out.String()), changed
}
