package deployer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
)

// DownOptions control Down.
type DownOptions struct {
	// Volumes also removes the project's named volumes: its data.
	Volumes bool
	// Timeout is the stop grace period per container; 0 means each
	// container's own (stop_grace_period, else the engine's 10 s).
	Timeout time.Duration
	// Lock takes the project's deploy lock (see Deployer.Lock) for the
	// duration; a held lock fails with ErrLocked before anything is stopped.
	Lock bool
	// Services are the stack's services (all profiles): containers of
	// other services are orphans, kept unless RemoveOrphans. nil means
	// every container of the project is the stack's (down -p NAME).
	Services []string
	// RemoveOrphans also removes the orphans.
	RemoveOrphans bool
	// ConfigDir is this machine's mirror of the project's generated
	// secrets on this engine ("" means ConfigDir(project)): with Volumes,
	// the engine's copy goes with the data, and the mirror notes it.
	ConfigDir string
	// Edge names the engine's HTTPS edge (its Name), which stops routing
	// the project's host names.
	Edge EdgeOptions
}

// DownResult counts what Down removed.
type DownResult struct {
	Containers, Networks, Volumes int
	// Orphans are the containers kept because they are orphans; networks
	// and volumes are kept with them (the orphans still use them).
	Orphans []string
}

// Down stops and removes a project's containers and networks, and its
// volumes only with Volumes: data is never deleted by accident.
func (d *Deployer) Down(ctx context.Context, project string, o DownOptions) (*DownResult, error) {
	res := &DownResult{}
	if o.Lock {
		l, err := d.Lock(ctx, project, LockOptions{Command: "down"})
		if err != nil {
			return res, err
		}
		defer l.Unlock(ctx)
		d, _ = d.fenced(nil, l)
	}
	cs, err := d.projectContainers(ctx, project)
	if err != nil {
		return res, err
	}
	// The engine's edge stops routing the project's host names first (the
	// edge itself stays for the other projects).
	if removed, err := d.EdgeRoutesRemove(ctx, project, o.Edge); err != nil {
		return res, err
	} else if removed {
		d.out.Event("Edge routes of %s removed", project)
	}
	cs, orphans := splitOrphans(cs, o.Services)
	if o.RemoveOrphans {
		cs = append(cs, orphans...)
	} else if len(orphans) > 0 {
		res.Orphans = containerNames(orphans)
		d.out.Event("warning: %s", OrphanWarning(res.Orphans))
	}
	// Dependents first (the API drains its in-flight requests while its
	// database still answers), then what they depend on; each wave in
	// parallel.
	var firstErr error
	for _, wave := range stopWaves(cs) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, c := range wave {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := d.stopAndRemove(ctx, c, o.Timeout)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					firstErr = cmpErr(firstErr, err)
					return
				}
				res.Containers++
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return res, firstErr
		}
	}
	if len(res.Orphans) > 0 {
		return res, nil // the orphans still use the networks, volumes and delivered files
	}
	if err := d.sweepDelivery(ctx, project); err != nil {
		return res, err
	}
	// No container stays behind: the release records that kept the images
	// from prune go (the history itself stays, see releases.go).
	if err := d.unprotectReleases(ctx, project); err != nil {
		return res, err
	}
	byProject := filters.NewArgs(filters.Arg("label", LabelProject+"="+project))
	nets, err := d.engine.NetworkList(ctx, network.ListOptions{Filters: byProject})
	if err != nil {
		return res, fmt.Errorf("list networks of %s: %w", project, err)
	}
	for _, n := range nets {
		if err := d.removeNetwork(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return res, fmt.Errorf("remove network %s: %w", n.Name, err)
		}
		res.Networks++
		d.out.Event("Network %s removed", n.Name)
	}
	if o.Volumes {
		vols, err := d.engine.VolumeList(ctx, volume.ListOptions{Filters: byProject})
		if err != nil {
			return res, fmt.Errorf("list volumes of %s: %w", project, err)
		}
		for _, v := range vols.Volumes {
			if err := d.engine.VolumeRemove(ctx, v.Name, false); err != nil && !cerrdefs.IsNotFound(err) {
				return res, fmt.Errorf("remove volume %s: %w", v.Name, err)
			}
			res.Volumes++
			d.out.Event("Volume %s removed", v.Name)
		}
		// The engine's copy of the generated secrets goes with the data it
		// protects; the next up stores this machine's copy again.
		if removed, err := d.removeState(ctx, project); err != nil {
			return res, fmt.Errorf("remove the generated secrets kept on the engine: %w", err)
		} else if removed {
			d.out.Event("Generated secrets kept on the engine removed (%s)", stateContainer(project))
		}
		dir := o.ConfigDir
		if dir == "" {
			dir, _ = ConfigDir(project)
		}
		if dir != "" {
			forgetConfirmed(dir)
		}
		// Everything goes: the release history too.
		n, err := d.removeReleases(ctx, project)
		if err != nil {
			return res, err
		}
		if n > 0 {
			d.out.Event("Release history of %s removed (%s)", project, countOf(n, "release"))
		}
	}
	return res, nil
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// stopAndRemove stops c (when running) and removes it with its anonymous
// volumes.
func (d *Deployer) stopAndRemove(ctx context.Context, c container.Summary, timeout time.Duration) error {
	name := containerName(c)
	if c.State == "running" || c.State == "restarting" {
		var t *int
		if timeout > 0 {
			n := int(timeout.Seconds())
			t = &n
		}
		d.out.Live("Stopping " + name)
		if err := d.engine.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: t}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("stop %s: %w", name, err)
		}
	}
	if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{RemoveVolumes: true, Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := d.removeDelivery(ctx, deliveryKey(c)); err != nil {
		return err
	}
	d.out.Event("Container %s removed", name)
	return nil
}

// stopWaves orders a project's containers for down from their depends_on
// labels: each wave holds the containers no remaining container depends
// on. A cycle (or containers without labels) ends in one last wave.
func stopWaves(cs []container.Summary) [][]container.Summary {
	left := append([]container.Summary(nil), cs...)
	var waves [][]container.Summary
	for len(left) > 0 {
		needed := map[string]bool{} // services some remaining container depends on
		for _, c := range left {
			for _, dep := range strings.Split(c.Labels[LabelDependsOn], ",") {
				if name, _, _ := strings.Cut(dep, ":"); name != "" {
					needed[name] = true
				}
			}
		}
		var wave, rest []container.Summary
		for _, c := range left {
			if needed[c.Labels[LabelService]] {
				rest = append(rest, c)
			} else {
				wave = append(wave, c)
			}
		}
		if len(wave) == 0 { // a cycle: stop the rest together
			wave, rest = rest, nil
		}
		waves = append(waves, wave)
		left = rest
	}
	return waves
}

// removeNetwork removes a network whose containers were just removed. The
// engine may report an endpoint of a removed container for a moment after
// (seen under load with engine 20.10): "has active endpoints" is retried
// for up to 5 s before it is an error.
func (d *Deployer) removeNetwork(ctx context.Context, id string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := d.engine.NetworkRemove(ctx, id)
		if err == nil || !strings.Contains(err.Error(), "active endpoints") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
