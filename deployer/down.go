package deployer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
)

// DownOptions control Down.
type DownOptions struct {
	// Volumes also removes the project's named volumes: its data.
	Volumes bool
	// Timeout is the stop grace period per container; 0 means each
	// container's own (stop_grace_period, else the engine's 10 s).
	Timeout time.Duration
}

// DownResult counts what Down removed.
type DownResult struct {
	Containers, Networks, Volumes int
}

// Down stops and removes a project's containers and networks, and its
// volumes only with Volumes: data is never deleted by accident.
func (d *Deployer) Down(ctx context.Context, project string, o DownOptions) (*DownResult, error) {
	res := &DownResult{}
	cs, err := d.projectContainers(ctx, project)
	if err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := containerName(c)
			var timeout *int
			if o.Timeout > 0 {
				t := int(o.Timeout.Seconds())
				timeout = &t
			}
			if c.State == "running" || c.State == "restarting" {
				d.out.Live("Stopping " + name)
				if err := d.engine.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: timeout}); err != nil && !errdefs.IsNotFound(err) {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("stop %s: %w", name, err))
					mu.Unlock()
					return
				}
			}
			if err := d.engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{RemoveVolumes: true, Force: true}); err != nil && !errdefs.IsNotFound(err) {
				mu.Lock()
				firstErr = cmpErr(firstErr, fmt.Errorf("remove %s: %w", name, err))
				mu.Unlock()
				return
			}
			mu.Lock()
			res.Containers++
			mu.Unlock()
			d.out.Event("Container %s removed", name)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	byProject := filters.NewArgs(filters.Arg("label", LabelProject+"="+project))
	nets, err := d.engine.NetworkList(ctx, network.ListOptions{Filters: byProject})
	if err != nil {
		return res, fmt.Errorf("list networks of %s: %w", project, err)
	}
	for _, n := range nets {
		if err := d.engine.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
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
			if err := d.engine.VolumeRemove(ctx, v.Name, false); err != nil && !errdefs.IsNotFound(err) {
				return res, fmt.Errorf("remove volume %s: %w", v.Name, err)
			}
			res.Volumes++
			d.out.Event("Volume %s removed", v.Name)
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
