package remote

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-units"

	"github.com/invdeploy/invdeploy/deployer/internal/enginestream"
	"github.com/invdeploy/invdeploy/deployer/registry"
)

// ImageEngine is the part of the Engine API that moving images uses, on
// either side; *client.Client implements it.
type ImageEngine interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageSave(ctx context.Context, refs []string, opts ...client.ImageSaveOption) (io.ReadCloser, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error)
}

// Reporter shows progress; *deployer.Progress implements it.
type Reporter = registry.Reporter

// TransferResult says what moving images did.
type TransferResult struct {
	// Present were already on the remote engine with the same image ID.
	Present []string
	// Tagged were on the remote under another name and only got tagged.
	Tagged []string
	// Sent were streamed (docker save | docker load) over the connection.
	Sent []string
	// Pulled were pulled by the remote engine from a registry.
	Pulled []string
	// Bytes is the size of the image archive streamed to the remote.
	Bytes int64
	// Elapsed is the time the transfer took.
	Elapsed time.Duration
}

// Summary is a one-line account for the user.
func (r TransferResult) Summary() string {
	return fmt.Sprintf("images: %d already on the host, %d tagged, %d sent (%s), %d pulled, in %s",
		len(r.Present), len(r.Tagged), len(r.Sent), units.BytesSize(float64(r.Bytes)), len(r.Pulled), r.Elapsed.Round(time.Millisecond))
}

// TransferSSH makes every image in refs present on remote with the same image
// ID as on local. Images the remote already has are skipped (compared by
// image ID); the rest go in one `save` archive from local streamed straight
// into `load` on remote, so layers shared between images travel once and
// nothing is staged on disk.
func TransferSSH(ctx context.Context, local, remote ImageEngine, refs []string, rep Reporter) (TransferResult, error) {
	start := time.Now()
	var res TransferResult
	if rep == nil {
		rep = nopReporter{}
	}
	var send []string
	for _, ref := range uniq(refs) {
		li, err := local.ImageInspect(ctx, ref)
		if err != nil {
			return res, fmt.Errorf("transfer %s: not in the local engine (build or pull it first): %w", ref, err)
		}
		action, err := compareRemote(ctx, remote, ref, li.ID)
		if err != nil {
			return res, err
		}
		switch action {
		case "present":
			res.Present = append(res.Present, ref)
		case "tag":
			if err := remote.ImageTag(ctx, li.ID, ref); err != nil {
				return res, fmt.Errorf("transfer %s: tag on remote: %w", ref, err)
			}
			res.Tagged = append(res.Tagged, ref)
		default:
			send = append(send, ref)
		}
	}
	if len(send) > 0 {
		rep.Event("Sending %s to the remote engine", strings.Join(send, ", "))
		n, err := stream(ctx, local, remote, send, rep)
		res.Bytes = n
		if err != nil {
			return res, err
		}
		// The load must have produced exactly what was sent.
		for _, ref := range send {
			li, _ := local.ImageInspect(ctx, ref)
			ri, err := remote.ImageInspect(ctx, ref)
			if err != nil || ri.ID != li.ID {
				return res, fmt.Errorf("transfer %s: the remote engine does not have it after loading (%v)", ref, err)
			}
		}
		res.Sent = send
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// compareRemote says what the remote needs for ref with local image ID id:
// "present", "tag" (has the ID under another name) or "send".
func compareRemote(ctx context.Context, remote ImageEngine, ref, id string) (string, error) {
	ri, err := remote.ImageInspect(ctx, ref)
	switch {
	case err == nil && ri.ID == id:
		return "present", nil
	case err != nil && !cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("transfer %s: inspect on remote: %w", ref, err)
	}
	if _, err := remote.ImageInspect(ctx, id); err == nil {
		return "tag", nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("transfer %s: inspect %s on remote: %w", ref, id, err)
	}
	return "send", nil
}

// stream pipes local save into remote load and returns the bytes sent.
func stream(ctx context.Context, local, remote ImageEngine, refs []string, rep Reporter) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	archive, err := local.ImageSave(ctx, refs)
	if err != nil {
		return 0, fmt.Errorf("transfer: save %s locally: %w", strings.Join(refs, ", "), err)
	}
	defer archive.Close()
	cr := &countingReader{r: archive}
	done := make(chan struct{})
	go func() { // live byte count
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				rep.Live("  sent " + units.BytesSize(float64(cr.n.Load())))
			}
		}
	}()
	resp, err := remote.ImageLoad(ctx, cr, client.ImageLoadWithQuiet(true))
	if err != nil {
		close(done)
		rep.Done()
		return cr.n.Load(), fmt.Errorf("transfer: load into the remote engine: %w", err)
	}
	defer resp.Body.Close()
	msgErr := readLoadStream(resp.Body)
	close(done)
	rep.Done()
	n := cr.n.Load()
	if msgErr != nil {
		return n, fmt.Errorf("transfer: the remote engine failed to load the images: %w", msgErr)
	}
	rep.Event("  sent %s", units.BytesSize(float64(n)))
	return n, nil
}

// readLoadStream waits for a load or pull to finish and returns its error.
func readLoadStream(r io.Reader) error {
	return enginestream.Decode(r, nil)
}

// PullOnRemote makes the remote engine pull ref (repo@sha256:... to pin),
// with creds sent only in that request's X-Registry-Auth header, then tags
// the result as each name in as (the names the stack runs).
func PullOnRemote(ctx context.Context, remote ImageEngine, ref string, creds registry.Credentials, as []string, rep Reporter) error {
	if rep == nil {
		rep = nopReporter{}
	}
	auth, err := creds.EncodedAuth()
	if err != nil {
		return fmt.Errorf("pull %s on remote: %w", ref, err)
	}
	rep.Event("Remote engine pulling %s", ref)
	body, err := remote.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pull %s on remote: %w", ref, err)
	}
	err = readLoadStream(body)
	body.Close()
	if err != nil {
		return fmt.Errorf("pull %s on remote: %w", ref, err)
	}
	for _, name := range as {
		if err := remote.ImageTag(ctx, ref, name); err != nil {
			return fmt.Errorf("tag %s as %s on remote: %w", ref, name, err)
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

type nopReporter struct{}

func (nopReporter) Event(string, ...any) {}
func (nopReporter) Live(string)          {}
func (nopReporter) Done()                {}
