package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/testenv"
)

// invdeploy's build through the engine's BuildKit, with the cache mounts the
// Dockerfile's invdeploy:cache line asks for, makes the same binary as the
// classic build (TestDockerImage) and as the same Go here: the cache mounts
// speed the build up without changing the image; the image runs.
func TestDockerImageBuildKit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the image")
	}
	testenv.NeedDocker(t)
	goBin := testenv.NeedCommand(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cli, err := deployer.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, "golang:1.26-bookworm"); err != nil {
		testenv.Missing(t, "image golang:1.26-bookworm (make images builds it): "+err.Error())
	}
	goproxy := goproxyOf(goBin)

	repo := fmt.Sprintf("invdeploy-imagetest-buildkit-%d", os.Getpid())
	ref := repo + ":test"
	compose := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(compose, []byte(fmt.Sprintf(`services:
  api:
    image: %s
    build:
      context: %s
      args:
        VERSION: v9.9.9-test
        REVISION: 0123abc
`, ref, repoRoot(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := deployer.Load(ctx, deployer.LoadOptions{Files: []string{compose}, ProjectName: repo})
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	tags, err := deployer.New(cli, deployer.NewProgress(&progress, false)).Build(ctx, st, deployer.BuildOptions{
		Getenv: func(k string) string {
			return map[string]string{"DOCKER_BUILDKIT": "1", "GOPROXY": goproxy}[k]
		},
	})
	t.Cleanup(func() {
		for _, tag := range tags {
			_, _ = cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress.String())
	}
	// BuildKit ran the Go build with both caches mounted, and its steps
	// were shown.
	if !strings.Contains(progress.String(), "RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build go build") {
		t.Errorf("no BuildKit step with the cache mounts in the progress:\n%s", progress.String())
	}

	files := imageFiles(ctx, t, cli, ref, "/invoicing-api", "/etc/passwd")
	sameBinary(t, goBin, files["/invoicing-api"], hostBinary(t, goBin))
	if !bytes.Contains(files["/etc/passwd"], []byte("nonroot:x:65532:65532:")) {
		t.Errorf("the image's /etc/passwd lacks the nonroot user: %q", files["/etc/passwd"])
	}
	img, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532", img.Config.User)
	}

	c, err := cli.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: []string{"version"}},
		&container.HostConfig{ReadonlyRootfs: true, CapDrop: []string{"ALL"}}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	rc, err := cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, rc)
	if !strings.Contains(out.String(), "invoicing-api v9.9.9-test (0123abc)") {
		t.Errorf("version of the BuildKit image: %q", out.String())
	}
}
