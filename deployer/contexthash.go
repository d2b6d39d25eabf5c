package deployer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
)

// On the local engine up deploys what is on disk: every image invdeploy
// builds carries LabelBuildContext, the digest of what its build context
// sent (the files .dockerignore lets through, their names, modes and
// contents, and the Dockerfile), and an image whose context now digests
// otherwise is built again without --build (see buildWhy). The digest of
// each file is remembered per path, size and modification time (as the
// proxy binary's is), so an up that builds nothing reads no file content.

// LabelBuildContext is the image label holding the digest of the build
// context the image was built from (see contextDigest).
const LabelBuildContext = "io.invdeploy.build.context"

// contextChanged is the reason of a build whose context changed since its
// image was built (what up --dry-run shows).
const contextChanged = "context changed"

// buildWhy is the one rule of when a service with a build section is built
// before a deploy, and why ("" when it is not): its image is missing
// (present false), a rebuild was asked (force: --build), pull_policy is
// build, or stale says why the present image no longer matches its build
// context ("" when it does or nobody can tell). On a remote engine images
// are built on this machine and sent, so pull_policy build is honoured by
// that local build (remote true here means: the engine deployed to never
// builds it).
func buildWhy(s types.ServiceConfig, present bool, stale string, force, remote bool) string {
	switch {
	case s.Build == nil:
		return ""
	case !present:
		return "not present"
	case force:
		return "--build"
	case s.PullPolicy == types.PullPolicyBuild && !remote:
		return "pull_policy is build"
	case stale != "" && !remote:
		return stale
	}
	return ""
}

// NeedsBuild reports whether a service with a build section is built before
// a deploy, by buildWhy, for callers that do not compare build contexts.
func NeedsBuild(s types.ServiceConfig, present, force, remote bool) bool {
	return buildWhy(s, present, "", force, remote) != ""
}

// serviceBuild is what the planner and preflight know of a service's image:
// its id ("" absent) and, when it has a build section, why it is built
// before the deploy ("" when not).
func (d *Deployer) serviceBuild(ctx context.Context, p *types.Project, s types.ServiceConfig, force, remote bool) (id, why string, err error) {
	ref := ImageRef(p.Name, s)
	img, err := d.engine.ImageInspect(ctx, ref)
	switch {
	case cerrdefs.IsNotFound(err):
		return "", buildWhy(s, false, "", force, remote), nil
	case err != nil:
		return "", "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if why := buildWhy(s, true, "", force, remote); why != "" || s.Build == nil || remote {
		return img.ID, why, nil
	}
	if isRemoteContext(s) {
		return img.ID, "", nil // fetched by the engine: nothing here to compare
	}
	if fi, err := os.Stat(dockerfilePath(buildContextDir(p, s), dockerfileName(s))); err != nil || !fi.Mode().IsRegular() {
		// No Dockerfile (the bundled stack run outside its checkout, whose
		// context is then the working directory): nothing here builds
		// this image, so nothing tells whether it is current.
		return img.ID, "", nil
	}
	var labels map[string]string
	if img.Config != nil {
		labels = img.Config.Labels
	}
	digest, err := d.contextDigest(p, s)
	if err != nil {
		return "", "", fmt.Errorf("build context of services.%s: %w", s.Name, err)
	}
	stale := ""
	switch built := labels[LabelBuildContext]; {
	case built == "":
		stale = "no record of the build context it was built from"
	case built != digest:
		stale = contextChanged
	}
	return img.ID, buildWhy(s, true, stale, force, remote), nil
}

// LocalBuildReason is why remote up builds service s of p on this machine
// before sending it ("" when it does not): buildWhy against d's engine,
// the local one, so an image whose build context changed since it was
// built is built again there too.
func (d *Deployer) LocalBuildReason(ctx context.Context, p *types.Project, s types.ServiceConfig, force bool) (string, error) {
	_, why, err := d.serviceBuild(ctx, p, s, force, false)
	return why, err
}

// isRemoteContext reports whether s builds from a context the engine
// fetches itself (a git or HTTP URL).
func isRemoteContext(s types.ServiceConfig) bool {
	return s.Build != nil && strings.Contains(s.Build.Context, "://")
}

// contextDigest is the digest of what service s's build context sends
// (see writeContextTar) and of the build's Dockerfile and target, memoised
// for the Deployer's life (preflight and the planner both ask).
func (d *Deployer) contextDigest(p *types.Project, s types.ServiceConfig) (string, error) {
	dir := buildContextDir(p, s)
	df := dockerfileName(s)
	key := dir + "\x00" + df + "\x00" + s.Build.Target
	if v, ok := d.digests[key]; ok {
		return v, nil
	}
	cache := openContextCache()
	v, err := digestContext(dir, df, s.Build.Target, cache)
	if err != nil {
		return "", err
	}
	cache.save()
	if d.digests == nil {
		d.digests = map[string]string{}
	}
	d.digests[key] = v
	return v, nil
}

// digestContext digests the build context dir as writeContextTar sends it:
// each entry .dockerignore lets through, in the walk's order, by name,
// type, permission bits, link target and content digest; then the
// Dockerfile (also when it lies outside the context) and the target
// stage. File digests come from cache when path, size and modification
// time match.
func digestContext(dir, dockerfile, target string, cache *contextCache) (string, error) {
	filter, err := newContextFilter(dir, dockerfile)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	files := cache.files(abs)
	seen := map[string]fileDigest{}
	h := sha256.New()
	err = walkContext(dir, filter, func(rel string, de fs.DirEntry) error {
		fi, err := de.Info()
		if err != nil {
			return err
		}
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			fmt.Fprintf(h, "d %o %s\x00", mode.Perm(), rel)
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(filepath.Join(dir, filepath.FromSlash(rel)))
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %s\x00%s\x00", rel, link)
		case mode.IsRegular():
			sum, err := fileSum(filepath.Join(dir, filepath.FromSlash(rel)), fi, files[rel])
			if err != nil {
				return err
			}
			seen[rel] = sum
			fmt.Fprintf(h, "f %o %s\x00%s\x00", mode.Perm(), rel, sum.Sum)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest build context %s: %w", dir, err)
	}
	dfPath := dockerfilePath(dir, dockerfile)
	if rel, ok := within(realPath(dir), realPath(dfPath)); !ok || seen[filepath.ToSlash(rel)].Sum == "" {
		content, err := os.ReadFile(dfPath)
		if err != nil {
			return "", fmt.Errorf("read Dockerfile: %w", err)
		}
		fmt.Fprintf(h, "dockerfile %x\x00", sha256.Sum256(content))
	}
	fmt.Fprintf(h, "name %s\x00target %s\x00", filepath.ToSlash(dockerfile), target)
	cache.put(abs, seen)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// fileDigest is a file's content digest and the stat it was taken at.
type fileDigest struct {
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	Sum   string `json:"sum"`
}

// racyWindow: a file modified this recently may change again within its
// modification time's granularity unseen, so its digest is not kept (git's
// "racily clean" rule).
const racyWindow = 2 * time.Second

// fileSum is the digest of the regular file path with info fi; cached is
// the remembered one, used when size and modification time match.
func fileSum(path string, fi fs.FileInfo, cached fileDigest) (fileDigest, error) {
	got := fileDigest{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if cached.Sum != "" && cached.Size == got.Size && cached.MTime == got.MTime {
		return cached, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return got, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return got, fmt.Errorf("read %s: %w", path, err)
	}
	got.Sum = hex.EncodeToString(h.Sum(nil))
	if time.Since(fi.ModTime()) < racyWindow {
		got.MTime = 0 // never matches: digested again next time
	}
	return got, nil
}

// contextCache remembers file digests per build context directory in
// $XDG_CACHE_HOME/invdeploy/context-digests.json (a cache: losing it costs
// one read of each context). It keeps the files of the last walk of each
// context, for at most maxCachedContexts contexts.
type contextCache struct {
	path    string
	Entries map[string]*cachedContext `json:"contexts"`
	changed bool
}

type cachedContext struct {
	Used  int64                 `json:"used"`
	Files map[string]fileDigest `json:"files"`
}

const maxCachedContexts = 32

func openContextCache() *contextCache {
	c := &contextCache{Entries: map[string]*cachedContext{}}
	dir, err := os.UserCacheDir()
	if err != nil {
		return c
	}
	c.path = filepath.Join(dir, "invdeploy", "context-digests.json")
	if b, err := os.ReadFile(c.path); err == nil {
		if json.Unmarshal(b, c) != nil || c.Entries == nil {
			c.Entries = map[string]*cachedContext{}
		}
	}
	return c
}

func (c *contextCache) files(dir string) map[string]fileDigest {
	if e := c.Entries[dir]; e != nil {
		return e.Files
	}
	return nil
}

// put keeps files as dir's digests, when they differ from those kept.
func (c *contextCache) put(dir string, files map[string]fileDigest) {
	old := c.Entries[dir]
	if old != nil && len(old.Files) == len(files) {
		same := true
		for rel, f := range files {
			if old.Files[rel] != f {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	c.Entries[dir] = &cachedContext{Used: time.Now().UnixNano(), Files: files}
	c.changed = true
	for len(c.Entries) > maxCachedContexts {
		oldest := ""
		for k, e := range c.Entries {
			if oldest == "" || e.Used < c.Entries[oldest].Used {
				oldest = k
			}
		}
		delete(c.Entries, oldest)
	}
}

// save writes the cache when it changed; a failure only costs the next
// up a read of the files.
func (c *contextCache) save() {
	if !c.changed || c.path == "" {
		return
	}
	b, err := json.Marshal(c)
	if err != nil || os.MkdirAll(filepath.Dir(c.path), 0o700) != nil {
		return
	}
	// A temporary file of its own: invdeploy runs at once in several
	// terminals (a reader sees the old cache or the new one, never half).
	f, err := os.CreateTemp(filepath.Dir(c.path), "context-digests-*.tmp")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr != nil || cerr != nil || os.Rename(f.Name(), c.path) != nil {
		os.Remove(f.Name())
		return
	}
	c.changed = false
}
