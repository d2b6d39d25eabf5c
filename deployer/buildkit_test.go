package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
)

func TestWithCacheMounts(t *testing.T) {
	in := `# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
# invdeploy:cache /go/pkg/mod /root/.cache/go-build
RUN go mod download
RUN --network=none go build \
      -o /out/app . \
 && echo RUN not an instruction
  run echo lower case
FROM scratch
RUN echo not mounted
`
	got, changed := withCacheMounts([]byte(in))
	want := `# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
# invdeploy:cache /go/pkg/mod /root/.cache/go-build
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build go mod download
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build --network=none go build \
      -o /out/app . \
 && echo RUN not an instruction
  run --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build echo lower case
FROM scratch
RUN echo not mounted
`
	if !changed || string(got) != want {
		t.Errorf("changed=%v, got\n%s\nwant\n%s", changed, got, want)
	}
	if _, changed := withCacheMounts([]byte("FROM x\nRUN true\n")); changed {
		t.Error("a Dockerfile without the directive was changed")
	}
}

// The repository's Dockerfile opts its build stage in, and only that one.
func TestRepoDockerfileCacheMounts(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	got, changed := withCacheMounts(df)
	if !changed {
		t.Fatal("the Dockerfile has no invdeploy:cache directive")
	}
	for _, line := range strings.Split(string(got), "\n") {
		if strings.HasPrefix(line, "RUN ") && !strings.HasPrefix(line, "RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build ") {
			t.Errorf("RUN without cache mounts: %s", line)
		}
	}
	if strings.Contains(string(df), "--mount") {
		t.Error("the Dockerfile itself uses RUN --mount: the classic builder (plain docker build) fails on it")
	}
}

// buildKitEngine is a Linux engine: with kit it answers BuildKit builds
// with a captured BuildKit stream, without it refuses them as an engine
// without BuildKit does. It keeps the Dockerfile each build was sent.
type buildKitEngine struct {
	*fakeEngine
	kit bool
	// stream is the captured BuildKit stream answered (default: a build that succeeds).
	stream      string
	versions    []build.BuilderVersion
	dockerfiles []string
}

func (e *buildKitEngine) Ping(ctx context.Context) (types.Ping, error) {
	p, err := e.fakeEngine.Ping(ctx)
	p.OSType = "linux"
	return p, err
}

func (e *buildKitEngine) ImageBuild(ctx context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	e.versions = append(e.versions, o.Version)
	if o.Version == build.BuilderBuildKit && !e.kit {
		_, _ = io.Copy(io.Discard, r)
		return build.ImageBuildResponse{}, fmt.Errorf("Error response from daemon: buildkit not supported by daemon: %w", cerrdefs.ErrInvalidArgument)
	}
	var buf bytes.Buffer
	tr := tar.NewReader(io.TeeReader(r, &buf))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "Dockerfile" {
			b, _ := io.ReadAll(tr)
			e.dockerfiles = append(e.dockerfiles, string(b))
		}
	}
	resp, err := e.fakeEngine.ImageBuild(ctx, &buf, o)
	if err == nil && o.Version == build.BuilderBuildKit {
		name := e.stream
		if name == "" {
			name = "buildkit-ok.jsonl"
		}
		b, rerr := os.ReadFile("internal/enginestream/testdata/" + name)
		if rerr != nil {
			return resp, rerr
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, err
}

func TestBuilderChoice(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		kit       bool
		want      []build.BuilderVersion
		wantErr   string
		wantOut   string
	}{
		{name: "BuildKit by default", kit: true, want: []build.BuilderVersion{build.BuilderBuildKit}, wantOut: "[stage-0 3/3] RUN echo second "},
		{name: "opt out", env: "0", kit: true, want: []build.BuilderVersion{build.BuilderV1}, wantOut: "Step 1/1"},
		{name: "no BuildKit falls back", kit: false, want: []build.BuilderVersion{build.BuilderBuildKit, build.BuilderV1}, wantOut: "building with the classic builder"},
		{name: "required BuildKit does not fall back", env: "1", kit: false, want: []build.BuilderVersion{build.BuilderBuildKit}, wantErr: "buildkit not supported"},
		{name: "bad value", env: "yes", kit: true, wantErr: "DOCKER_BUILDKIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := bundledStack(t)
			writeFiles(t, st.Project.WorkingDir, map[string]string{
				"Dockerfile": "FROM golang:1.26-bookworm AS build\n# invdeploy:cache /root/.cache/go-build\nRUN go build\nFROM scratch\nCOPY --from=build /x /x\n",
			})
			e := &buildKitEngine{fakeEngine: fakeWithImages(), kit: tc.kit}
			var out bytes.Buffer
			_, err := New(e, NewProgress(&out, false)).Build(context.Background(), st, BuildOptions{Getenv: func(k string) string {
				return map[string]string{"DOCKER_BUILDKIT": tc.env}[k]
			}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(e.versions, tc.want) {
				t.Errorf("builders %v, want %v", e.versions, tc.want)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out.String())
			}
			for i, b := range e.builds {
				mounted := strings.Contains(e.dockerfiles[i], "RUN --mount=type=cache,target=/root/.cache/go-build go build")
				if mounted != (b.Version == build.BuilderBuildKit) {
					t.Errorf("%s build sent cache mounts %v:\n%s", b.Version, mounted, e.dockerfiles[i])
				}
			}
		})
	}
}

// FuzzWithCacheMounts: any Dockerfile comes back with the same lines, only
// longer where a mount was added, and unchanged when nothing was.
func FuzzWithCacheMounts(f *testing.F) {
	f.Add([]byte("FROM golang AS build\n# invdeploy:cache /go/pkg/mod\nRUN go build \\\n  ./...\nFROM scratch\n"))
	f.Add([]byte("# invdeploy:cache\nRUN\n\\\n#x\n  run a"))
	f.Fuzz(func(t *testing.T, df []byte) {
		got, changed := withCacheMounts(df)
		if !changed && !bytes.Equal(got, df) {
			t.Fatalf("unchanged but different:\n%q\n%q", df, got)
		}
		in, out := strings.Split(string(df), "\n"), strings.Split(string(got), "\n")
		if len(in) != len(out) {
			t.Fatalf("%d lines became %d", len(in), len(out))
		}
		for i := range in {
			if in[i] != out[i] && !strings.Contains(out[i], "--mount=type=cache,target=") {
				t.Fatalf("line %d changed without a mount: %q -> %q", i, in[i], out[i])
			}
		}
	})
}

// A failed BuildKit build says what failed and shows the step's last output
// lines, taken from the BuildKit trace.
func TestBuildKitFailureShowsOutput(t *testing.T) {
	st, _ := bundledStack(t)
	e := &buildKitEngine{fakeEngine: fakeWithImages(), kit: true, stream: "buildkit-fail.jsonl"}
	_, err := New(e, nil).Build(context.Background(), st, BuildOptions{Getenv: func(string) string { return "" }})
	if err == nil {
		t.Fatal("a failed build returned no error")
	}
	for _, want := range []string{"build api:", "exit code: 3", "step-one-output", "about-to-fail"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
