package remote

import (
	"context"
	"io"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// countingEngine answers the calls runCache caches or invalidates and
// counts them by name.
type countingEngine struct {
	Engine
	mu     sync.Mutex
	calls  map[string]int
	images map[string]string // ref -> id
}

func newCountingEngine() *countingEngine {
	return &countingEngine{calls: map[string]int{}, images: map[string]string{"postgres:15": "sha256:pg"}}
}

func (e *countingEngine) count(name string) {
	e.mu.Lock()
	e.calls[name]++
	e.mu.Unlock()
}

func (e *countingEngine) n(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[name]
}

func (e *countingEngine) Ping(context.Context) (dockertypes.Ping, error) {
	e.count("Ping")
	return dockertypes.Ping{APIVersion: "1.41"}, nil
}

func (e *countingEngine) ServerVersion(context.Context) (dockertypes.Version, error) {
	e.count("ServerVersion")
	return dockertypes.Version{APIVersion: "1.41"}, nil
}

func (e *countingEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	e.count("ImageInspect")
	e.mu.Lock()
	defer e.mu.Unlock()
	if id, ok := e.images[ref]; ok {
		return image.InspectResponse{ID: id}, nil
	}
	return image.InspectResponse{}, cerrdefs.ErrNotFound
}

func (e *countingEngine) ImageTag(_ context.Context, source, target string) error {
	e.count("ImageTag")
	e.mu.Lock()
	defer e.mu.Unlock()
	e.images[target] = e.images[source]
	return nil
}

func (e *countingEngine) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	e.count("ImagePull")
	// The image exists once the stream has been read.
	return &closeHook{ReadCloser: io.NopCloser(strings.NewReader("{}")), hook: func() {
		e.mu.Lock()
		e.images[ref] = "sha256:pulled"
		e.mu.Unlock()
	}}, nil
}

func (e *countingEngine) ImageBuild(context.Context, io.Reader, build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	e.count("ImageBuild")
	return build.ImageBuildResponse{Body: io.NopCloser(strings.NewReader("{}"))}, nil
}

func (e *countingEngine) NetworkList(context.Context, network.ListOptions) ([]network.Summary, error) {
	e.count("NetworkList")
	return []network.Summary{{Name: "shop_default"}}, nil
}

func (e *countingEngine) NetworkCreate(context.Context, string, network.CreateOptions) (network.CreateResponse, error) {
	e.count("NetworkCreate")
	return network.CreateResponse{}, nil
}

func (e *countingEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	e.count("ContainerList")
	return []container.Summary{{ID: "c1"}}, nil
}

func (e *countingEngine) ContainerStart(context.Context, string, container.StartOptions) error {
	e.count("ContainerStart")
	return nil
}

func TestRunCacheAsksOnceUntilSomethingChanges(t *testing.T) {
	ctx := context.Background()
	e := newCountingEngine()
	c := newRunCache(e)
	for i := 0; i < 3; i++ {
		c.Ping(ctx)
		c.ServerVersion(ctx)
		c.ImageInspect(ctx, "postgres:15")
		c.ImageInspect(ctx, "shop-api:1")
		c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "shop_default"))})
		c.ContainerList(ctx, container.ListOptions{})
	}
	for name, want := range map[string]int{"Ping": 1, "ServerVersion": 1, "ImageInspect": 2, "NetworkList": 1, "ContainerList": 1} {
		if got := e.n(name); got != want {
			t.Errorf("3 rounds: %d %s calls reached the engine, want %d", got, name, want)
		}
	}
	// Another filter is another question.
	c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "other"))})
	if got := e.n("NetworkList"); got != 2 {
		t.Errorf("a list with another filter was answered from the cache (%d calls)", got)
	}

	// A missing image is remembered as missing, until a tag adds it.
	if _, err := c.ImageInspect(ctx, "shop-api:1"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("cached missing image: %v", err)
	}
	c.ImageTag(ctx, "postgres:15", "shop-api:1")
	if got, err := c.ImageInspect(ctx, "shop-api:1"); err != nil || got.ID != "sha256:pg" {
		t.Errorf("after a tag: %v %v, want the tagged image", got.ID, err)
	}

	// A pull adds its image while its stream is read: what was asked
	// meanwhile is forgotten when the stream is closed.
	rc, _ := c.ImagePull(ctx, "redis:7", image.PullOptions{})
	if _, err := c.ImageInspect(ctx, "redis:7"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("redis before the pull finished: %v", err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	if got, err := c.ImageInspect(ctx, "redis:7"); err != nil || got.ID != "sha256:pulled" {
		t.Errorf("after the pull: %v %v, want the pulled image", got.ID, err)
	}

	// Networks and running containers are asked again after the run
	// changed them.
	c.NetworkCreate(ctx, "shop_back", network.CreateOptions{})
	c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "shop_default"))})
	if got := e.n("NetworkList"); got != 3 {
		t.Errorf("network list after a create: %d calls, want 3", got)
	}
	c.ContainerStart(ctx, "c1", container.StartOptions{})
	c.ContainerList(ctx, container.ListOptions{})
	if got := e.n("ContainerList"); got != 2 {
		t.Errorf("running list after a start: %d calls, want 2", got)
	}
}

func TestRunCacheLeavesProjectListsAndOldAnswersToTheEngine(t *testing.T) {
	ctx := context.Background()
	e := newCountingEngine()
	c := newRunCache(e)
	now := time.Now()
	c.now = func() time.Time { return now }
	// The health wait polls its project's containers: always asked.
	project := container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project=shop"))}
	for i := 0; i < 3; i++ {
		c.ContainerList(ctx, project)
	}
	if got := e.n("ContainerList"); got != 3 {
		t.Errorf("3 project lists: %d reached the engine, want 3", got)
	}
	c.ImageInspect(ctx, "postgres:15")
	c.ContainerList(ctx, container.ListOptions{})
	now = now.Add(runCacheMaxAge)
	c.ImageInspect(ctx, "postgres:15")
	c.ContainerList(ctx, container.ListOptions{})
	c.Ping(ctx)
	c.Ping(ctx)
	if e.n("ImageInspect") != 2 || e.n("ContainerList") != 5 || e.n("Ping") != 1 {
		t.Errorf("after %s: %v, want inspect and list asked again (the engine's ping once per run)", runCacheMaxAge, e.calls)
	}
}

// TestRunCacheDecidesEveryMethod: each method of the remote Engine is
// either cached, forgets what it changes, or neither answers from nor
// changes anything the cache holds. A method added to Engine fails here
// until it is placed (and, when cached or forgetting, overridden).
func TestRunCacheDecidesEveryMethod(t *testing.T) {
	cachedCalls := []string{"Ping", "ServerVersion", "ImageInspect", "NetworkList", "ContainerList"}
	forgetting := []string{"ImagePull", "ImageBuild", "ImageLoad", "ImageTag", "NetworkCreate", "NetworkConnect", "NetworkRemove",
		"ContainerCreate", "ContainerStart", "ContainerStop", "ContainerRemove", "ContainerRename"}
	neither := []string{"DaemonHost", "DistributionInspect", "ImageSave", "ContainerInspect", "ContainerLogs", "ContainerWait",
		"CopyToContainer", "CopyFromContainer", "ContainerExecCreate", "ContainerExecAttach", "ContainerExecInspect",
		"VolumeList", "VolumeCreate", "VolumeRemove",
		// A push reads an image and tags nothing; a login changes nothing here.
		"ImagePush", "RegistryLogin"}
	placed := map[string]int{}
	for _, l := range [][]string{cachedCalls, forgetting, neither} {
		for _, m := range l {
			placed[m]++
		}
	}
	ti := reflect.TypeOf((*Engine)(nil)).Elem()
	var missing []string
	for i := 0; i < ti.NumMethod(); i++ {
		name := ti.Method(i).Name
		if placed[name] != 1 {
			missing = append(missing, name)
		}
		delete(placed, name)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("Engine methods runCache has not decided on (add them to a list, and override the cached and forgetting ones): %v", missing)
	}
	if len(placed) > 0 {
		t.Errorf("listed but not in Engine: %v", placed)
	}
}
