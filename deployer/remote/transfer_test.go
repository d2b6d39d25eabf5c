package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// fakeImages is an engine holding name -> image ID; ImageSave writes the
// names as the "archive", ImageLoad adds them with the IDs of from.
type fakeImages struct {
	ImageEngine
	names  map[string]string
	from   *fakeImages
	saved  [][]string
	loaded int
	tags   []string
}

func (f *fakeImages) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if id, ok := f.names[ref]; ok {
		return image.InspectResponse{ID: id}, nil
	}
	for _, id := range f.names {
		if id == ref {
			return image.InspectResponse{ID: id}, nil
		}
	}
	return image.InspectResponse{}, errdefs.NotFound(errors.New("No such image: " + ref))
}

func (f *fakeImages) ImageSave(_ context.Context, refs []string, _ ...client.ImageSaveOption) (io.ReadCloser, error) {
	f.saved = append(f.saved, refs)
	return io.NopCloser(strings.NewReader(strings.Join(refs, "\n") + strings.Repeat(" ", 4096))), nil
}

func (f *fakeImages) ImageLoad(_ context.Context, in io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	b, _ := io.ReadAll(in)
	f.loaded++
	for _, ref := range strings.Fields(string(b)) {
		f.names[ref] = f.from.names[ref]
	}
	return image.LoadResponse{Body: io.NopCloser(bytes.NewReader([]byte(`{"stream":"Loaded image"}`)))}, nil
}

func (f *fakeImages) ImageTag(_ context.Context, src, dst string) error {
	f.tags = append(f.tags, dst)
	f.names[dst] = src
	return nil
}

func TestTransferSkipsWhatTheRemoteHas(t *testing.T) {
	local := &fakeImages{names: map[string]string{"app:latest": "sha256:app2", "postgres:15": "sha256:pg", "tool:1": "sha256:tool"}}
	remote := &fakeImages{from: local, names: map[string]string{
		"postgres:15": "sha256:pg",   // same ID: nothing to do
		"app:latest":  "sha256:app1", // stale: must be sent
		"tool:old":    "sha256:tool", // has the ID under another name: tag only
	}}
	res, err := TransferSSH(context.Background(), local, remote, []string{"app:latest", "postgres:15", "tool:1", "app:latest"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Present, ",") != "postgres:15" || strings.Join(res.Tagged, ",") != "tool:1" || strings.Join(res.Sent, ",") != "app:latest" {
		t.Errorf("result %+v", res)
	}
	if len(local.saved) != 1 || strings.Join(local.saved[0], ",") != "app:latest" || res.Bytes < 4096 {
		t.Errorf("saved %v, bytes %d", local.saved, res.Bytes)
	}
	// Unchanged redeploy: nothing saved, nothing loaded, zero bytes.
	again, err := TransferSSH(context.Background(), local, remote, []string{"app:latest", "postgres:15", "tool:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Bytes != 0 || len(again.Sent) != 0 || len(local.saved) != 1 || remote.loaded != 1 {
		t.Errorf("unchanged redeploy moved images: %+v", again)
	}
	if !strings.Contains(again.Summary(), "3 already on the host") {
		t.Errorf("summary %q", again.Summary())
	}
}

func TestTransferMissingLocally(t *testing.T) {
	local := &fakeImages{names: map[string]string{}}
	remote := &fakeImages{from: local, names: map[string]string{}}
	_, err := TransferSSH(context.Background(), local, remote, []string{"app:latest"}, nil)
	if err == nil || !strings.Contains(err.Error(), "not in the local engine") {
		t.Fatalf("err = %v", err)
	}
}
