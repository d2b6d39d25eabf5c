package deployer

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
)

// ContainerList of the lock fake: label filters only (enough for releases).
func (f *lockEngine) ContainerList(_ context.Context, o container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []container.Summary
	for name, id := range f.byName {
		labels := f.labels[id]
		ok := true
		for _, kv := range o.Filters.Get("label") {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, container.Summary{ID: id, Names: []string{"/" + name}, Labels: labels})
		}
	}
	return out, nil
}

// Volumes of the lock fake: name and labels only (the release history).
func (f *lockEngine) VolumeCreate(_ context.Context, o volume.CreateOptions) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.vols == nil {
		f.vols = map[string]map[string]string{}
	}
	f.vols[o.Name] = o.Labels
	return volume.Volume{Name: o.Name, Labels: o.Labels}, nil
}

func (f *lockEngine) VolumeList(_ context.Context, o volume.ListOptions) (volume.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out volume.ListResponse
	for name, labels := range f.vols {
		ok := true
		for _, kv := range o.Filters.Get("label") {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				ok = false
			}
		}
		if ok {
			out.Volumes = append(out.Volumes, &volume.Volume{Name: name, Labels: labels})
		}
	}
	return out, nil
}

func (f *lockEngine) VolumeRemove(_ context.Context, name string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[name]; !ok {
		return cerrdefs.ErrNotFound
	}
	delete(f.vols, name)
	return nil
}

func TestReleasesKeepTheLastFive(t *testing.T) {
	eng := newLockEngine()
	d := New(eng, nil)
	ctx := context.Background()
	web, db := types.ServiceConfig{Name: "web"}, types.ServiceConfig{Name: "db"}
	web.Image, db.Image = "shop-web", "postgres:15"
	p := &types.Project{Name: "shop", Services: types.Services{"web": web, "db": db}}
	for i := 1; i <= KeepReleases+2; i++ {
		r, err := d.recordRelease(ctx, p, map[string]string{"web": fmt.Sprintf("sha256:web%d", i), "db": "sha256:pg"}, "up", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Number != i {
			t.Fatalf("release number %d, want %d", r.Number, i)
		}
	}
	// The same images and config again: no new release.
	again, err := d.recordRelease(ctx, p, map[string]string{"web": fmt.Sprintf("sha256:web%d", KeepReleases+2), "db": "sha256:pg"}, "up", nil)
	if err != nil || again.Number != KeepReleases+2 {
		t.Fatalf("an unchanged up recorded release %v (%v), want the newest kept", again, err)
	}
	rels, err := d.Releases(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != KeepReleases || rels[0].Number != KeepReleases+2 || rels[len(rels)-1].Number != 3 {
		t.Fatalf("kept %d releases %v, want the last %d", len(rels), releaseNumbers(rels), KeepReleases)
	}
	if got := rels[0].Services["web"].ImageID; got != fmt.Sprintf("sha256:web%d", KeepReleases+2) {
		t.Fatalf("newest web image %s", got)
	}
	if n := len(eng.byName); n != 2*KeepReleases {
		t.Fatalf("%d record containers, want one per service per kept release (%d)", n, 2*KeepReleases)
	}
	if n := len(eng.vols); n != KeepReleases {
		t.Fatalf("%d history volumes, want %d", n, KeepReleases)
	}
	// down: the records go, the history stays; the next up protects again.
	if err := d.unprotectReleases(ctx, "shop"); err != nil || len(eng.byName) != 0 {
		t.Fatalf("unprotect: %v, %d containers left", err, len(eng.byName))
	}
	if rels, _ := d.Releases(ctx, "shop"); len(rels) != KeepReleases {
		t.Fatalf("history after down: %d releases", len(rels))
	}
	if _, err := d.recordRelease(ctx, p, map[string]string{"web": fmt.Sprintf("sha256:web%d", KeepReleases+2), "db": "sha256:pg"}, "up", nil); err != nil || len(eng.byName) != 2*KeepReleases {
		t.Fatalf("re-protect after down: %v, %d containers", err, len(eng.byName))
	}
	if n, err := d.removeReleases(ctx, "shop"); err != nil || n != KeepReleases || len(eng.vols) != 0 || len(eng.byName) != 0 {
		t.Fatalf("down --volumes: %d %v, %d volumes and %d containers left", n, err, len(eng.vols), len(eng.byName))
	}
	// Another project's history is separate.
	if rels, _ := d.Releases(ctx, "blog"); len(rels) != 0 {
		t.Fatalf("blog sees %d releases of shop", len(rels))
	}
}
