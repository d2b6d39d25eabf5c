package deployer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// gitRevision is the short (12 hex digits) commit of the git checkout holding
// dir, read from .git without running git; "" when there is none.
func gitRevision(dir string) string {
	gitDir := findGitDir(dir)
	if gitDir == "" {
		return ""
	}
	head, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return ""
	}
	h := strings.TrimSpace(string(head))
	if ref, ok := strings.CutPrefix(h, "ref: "); ok {
		h = resolveRef(gitDir, ref)
	}
	if len(h) < 12 {
		return ""
	}
	return h[:12]
}

func findGitDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(abs, ".git")
		if fi, err := os.Stat(p); err == nil {
			if fi.IsDir() {
				return p
			}
			// A worktree or submodule: "gitdir: PATH".
			b, err := os.ReadFile(p)
			if err == nil {
				if g, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: "); ok {
					if !filepath.IsAbs(g) {
						g = filepath.Join(abs, g)
					}
					return g
				}
			}
			return ""
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return ""
		}
		abs = parent
	}
}

func resolveRef(gitDir, ref string) string {
	dirs := []string{gitDir}
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitDir, c)
		}
		dirs = append(dirs, c)
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(ref))); err == nil {
			return strings.TrimSpace(string(b))
		}
		f, err := os.Open(filepath.Join(d, "packed-refs"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if sha, name, ok := strings.Cut(sc.Text(), " "); ok && name == ref {
				f.Close()
				return sha
			}
		}
		f.Close()
	}
	return ""
}

// gitCommand is git run in dir with args, or nil when dir is not in a git
// checkout or git is not installed.
func gitCommand(dir string, args ...string) *exec.Cmd {
	if findGitDir(dir) == "" {
		return nil
	}
	git, err := exec.LookPath("git")
	if err != nil {
		return nil
	}
	return exec.Command(git, append([]string{"-C", dir}, args...)...)
}

// gitDirty reports whether the git checkout holding dir has uncommitted
// changes (tracked or untracked, .gitignore honoured) below dir. Without git
// or a checkout it reports false.
func gitDirty(dir string) bool {
	// --no-optional-locks: never take index.lock under the user's own git.
	cmd := gitCommand(dir, "--no-optional-locks", "status", "--porcelain", "--", ".")
	if cmd == nil {
		return false
	}
	out, err := cmd.Output()
	return err == nil && len(strings.TrimSpace(string(out))) > 0
}

// gitTracked reports whether path is tracked by the git checkout holding it.
// Without a git binary or a checkout it reports false.
func gitTracked(path string) bool {
	cmd := gitCommand(filepath.Dir(path), "ls-files", "--error-unmatch", "--", filepath.Base(path))
	return cmd != nil && cmd.Run() == nil
}

// gitTreeTag is the tag that names what a build context in dir holds: the
// commit (12 hex digits) for a clean checkout below dir, and for one with
// uncommitted changes <commit>-dirty-<hash>, where hash (12 hex digits) is
// of those changes (tracked diffs and untracked files, .gitignore
// honoured), so a tag never names an image its commit did not produce and
// the same edits give the same tag. "" outside a checkout. Without a git
// binary the tree cannot be read: the plain commit, as before.
func gitTreeTag(dir string) string {
	sha := gitRevision(dir)
	if sha == "" || !gitDirty(dir) {
		return sha
	}
	h := sha256.New()
	diff := gitCommand(dir, "--no-optional-locks", "diff", "--binary", "HEAD", "--", ".")
	if diff == nil {
		return sha
	}
	out, err := diff.Output()
	if err != nil {
		return sha + "-dirty"
	}
	h.Write(out)
	others := gitCommand(dir, "--no-optional-locks", "ls-files", "-z", "--others", "--exclude-standard", "--", ".")
	if out, err = others.Output(); err != nil {
		return sha + "-dirty"
	}
	for _, name := range bytes.Split(out, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		h.Write(name)
		h.Write([]byte{0})
		if f, err := os.Open(filepath.Join(dir, string(name))); err == nil {
			io.Copy(h, f)
			f.Close()
		}
		h.Write([]byte{0})
	}
	return sha + "-dirty-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// CheckClean refuses (exit 3) to send to another host an image built from
// a build context with uncommitted changes: what runs there must be
// something a commit names (as Kamal builds from a clean checkout). The
// message lists the contexts and the flag that accepts them.
func CheckClean(st *Stack) error {
	var problems []Problem
	for _, name := range st.Project.ServicesWithBuild() {
		s := st.Project.Services[name]
		dir := buildContextDir(st.Project, s)
		if gitDirty(dir) {
			problems = append(problems, Problem{Rule: "git", Subject: name, Message: fmt.Sprintf(
				"build context %s has uncommitted changes: commit them, or deploy what is on disk with --allow-dirty (its release then says so)", dir)})
		}
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].Subject < problems[j].Subject })
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}
