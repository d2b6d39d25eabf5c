package scratchimage

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/build"
)

type fakeBuilder struct {
	body string
	got  []byte
	opts build.ImageBuildOptions
}

func (f *fakeBuilder) ImageBuild(_ context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	f.got, _ = io.ReadAll(r)
	f.opts = o
	return build.ImageBuildResponse{Body: io.NopCloser(strings.NewReader(f.body))}, nil
}

func TestContextIsReproducible(t *testing.T) {
	files := []File{{Name: "Dockerfile", Mode: 0o644, Body: []byte("FROM scratch\n")}, {Name: "d/", Mode: 0o700, Dir: true, UID: 65532}, {Name: "d/x", Mode: 0o755, Body: []byte("bin")}}
	a, err := Context(files)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Context(files)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same files gave two contexts")
	}
	tr := tar.NewReader(a)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "d/" && (h.Typeflag != tar.TypeDir || h.Uid != 65532 || h.Mode != 0o700) {
			t.Errorf("directory entry %+v", h)
		}
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s: mtime %v, want the epoch", h.Name, h.ModTime)
		}
	}
	if strings.Join(names, ",") != "Dockerfile,d/,d/x" {
		t.Errorf("entries %v", names)
	}
}

func TestBuildReportsAFailedStep(t *testing.T) {
	f := &fakeBuilder{body: `{"stream":"Step 1/2 : FROM scratch\n"}` + "\n" + `{"errorDetail":{"message":"COPY failed"},"error":"COPY failed"}` + "\n"}
	err := Build(context.Background(), f, "x:1", map[string]string{"k": "v"}, []File{{Name: "Dockerfile", Mode: 0o644, Body: []byte("FROM scratch\n")}})
	if err == nil || !strings.Contains(err.Error(), "build x:1: COPY failed") {
		t.Errorf("err = %v", err)
	}
	if len(f.opts.Tags) != 1 || f.opts.Tags[0] != "x:1" || f.opts.Labels["k"] != "v" || f.opts.Version != build.BuilderV1 {
		t.Errorf("options %+v", f.opts)
	}
	f.body = `{"stream":"Successfully built 1234\n"}` + "\n"
	if err := Build(context.Background(), f, "x:1", nil, nil); err != nil {
		t.Errorf("a build that succeeded: %v", err)
	}
}
