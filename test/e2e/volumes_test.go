package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestNoAnonymousVolumeOutlivesItsContainer: up, secret rotate and down
// --volumes of a stack on the postgres image (which declares a VOLUME, so
// every container made from it, helpers included, gets an anonymous one)
// leave no volume behind. The engine's events attribute each volume mount to
// its container, so other tests sharing the engine do not disturb the count.
func TestNoAnonymousVolumeOutlivesItsContainer(t *testing.T) {
	t.Parallel() // its own project; volumes are attributed through events
	e := newLocalEnv(t, "postgres:15")
	proj := fmt.Sprintf("wvol-anon-%d", os.Getpid())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rotateStack), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := e.docker.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)), filters.Arg("type", string(events.VolumeEventType)))})
	var (
		mu      sync.Mutex
		ours    = map[string]bool{} // containers of the project, helpers included
		mounted = map[string]string{}
		done    = make(chan struct{})
		marker  = proj + "-events-marker"
		flushed = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case m := <-msgs:
				mu.Lock()
				a := m.Actor.Attributes
				switch {
				case m.Type == events.ContainerEventType && m.Action == events.ActionCreate &&
					(a[deployer.LabelProject] == proj || a["io.invdeploy.delivery-loader"] == proj):
					ours[m.Actor.ID] = true
				case m.Type == events.VolumeEventType && m.Action == events.ActionMount:
					mounted[m.Actor.ID] = a["container"]
				case m.Type == events.VolumeEventType && m.Action == events.ActionCreate && m.Actor.ID == marker:
					close(flushed)
				}
				mu.Unlock()
			case <-errs:
				return
			case <-ctx.Done():
				return
			}
		}
	}()

	e.cleanup(proj)
	e.mustRun(dir, "up", "-p", proj)
	e.mustRun(dir, "secret", "rotate", "db_password", "-p", proj)
	e.mustRun(dir, "down", "-p", proj, "--volumes")
	// The engine sends events in order: once the marker volume's creation
	// arrives, every event of the commands above has been read.
	if _, err := e.docker.VolumeCreate(context.Background(), volume.CreateOptions{Name: marker}); err != nil {
		t.Fatal(err)
	}
	defer e.docker.VolumeRemove(context.Background(), marker, true)
	select {
	case <-flushed:
	case <-time.After(30 * time.Second):
		t.Fatal("the engine's event stream did not deliver the marker volume's creation")
	}
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	var seen int
	for vol, ctr := range mounted {
		if !ours[ctr] {
			continue
		}
		seen++
		if _, err := e.docker.VolumeInspect(context.Background(), vol); err == nil {
			t.Errorf("volume %s (mounted by the project's container %.12s) is still on the engine after down --volumes", vol, ctr)
		}
	}
	if seen == 0 {
		t.Fatalf("no volume mount of the project's containers was observed: the test saw nothing to check")
	}
}
