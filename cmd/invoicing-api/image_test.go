package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/moby/patternmatcher"

	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

// repoRoot is the build context: the module root, two levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// contextTar tars dir as `docker build` would send it: .dockerignore
// patterns excluded (the Dockerfile and .dockerignore always included).
func contextTar(dir string) (io.Reader, error) {
	var patterns []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				patterns = append(patterns, l)
			}
		}
		f.Close()
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("parse .dockerignore: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel != "Dockerfile" && rel != ".dockerignore" {
			skip, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tar build context: %w", err)
	}
	return &buf, tw.Close()
}

// The Dockerfile builds through the Engine API into an image that is the
// static binary plus at most 3 MB, runs as non-root on a read-only root
// filesystem, turns healthy through its own healthcheck subcommand, serves
// the API, and stops cleanly on SIGTERM.
func TestDockerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the image")
	}
	testenv.NeedDocker(t)
	goBin := testenv.NeedCommand(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, "golang:1.26-bookworm"); err != nil {
		testenv.Missing(t, "image golang:1.26-bookworm (make images builds it): "+err.Error())
	}
	goproxy := goproxyOf(goBin)
	root := repoRoot(t)
	tarball, err := contextTar(root)
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("invoicing-api:imagetest-%d", os.Getpid())
	args := map[string]*string{"GOPROXY": &goproxy, "VERSION": ptr("v9.9.9-test"), "REVISION": ptr("0123abc")}
	res, err := cli.ImageBuild(ctx, tarball, build.ImageBuildOptions{Tags: []string{tag}, BuildArgs: args, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	var buildLog strings.Builder
	dec := json.NewDecoder(res.Body)
	for {
		var m struct {
			Stream      string
			ErrorDetail *struct{ Message string }
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("build output: %v", err)
		}
		buildLog.WriteString(m.Stream)
		if m.ErrorDetail != nil {
			t.Fatalf("build failed: %s\n%s", m.ErrorDetail.Message, buildLog.String())
		}
	}
	res.Body.Close()
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})

	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532 (non-root)", img.Config.User)
	}
	if hc := img.Config.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/invoicing-api", "healthcheck"}) {
		t.Errorf("healthcheck %+v, want exec form of the binary's healthcheck", img.Config.Healthcheck)
	}
	if _, ok := img.Config.ExposedPorts["8000/tcp"]; !ok {
		t.Errorf("port 8000 not exposed: %v", img.Config.ExposedPorts)
	}
	for _, e := range img.Config.Env {
		if u := strings.ToUpper(e); strings.Contains(u, "PASSWORD") || strings.Contains(u, "SECRET") || strings.Contains(u, "DATABASE_URL") {
			t.Errorf("image env holds %s", e)
		}
	}
	// The same static binary built here: the image may add at most 3 MB.
	bin := hostBinary(t, goBin)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if img.Size > st.Size()+3<<20 {
		t.Errorf("image is %d bytes, binary %d: more than 3 MB on top", img.Size, st.Size())
	}
	t.Logf("image %d bytes = binary %d + %d", img.Size, st.Size(), img.Size-st.Size())

	// Reproducible: the binary in the image is byte for byte the one the
	// same Go builds here from the same source and build args (no build
	// time, build id or paths). A builder image with another Go release (a
	// pulled golang:1.26-bookworm) makes another binary; then the Go
	// versions must differ.
	files := imageFiles(ctx, t, cli, tag, "/invoicing-api", "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd")
	sameBinary(t, goBin, files["/invoicing-api"], bin)
	if !bytes.Contains(files["/etc/ssl/certs/ca-certificates.crt"], []byte("BEGIN CERTIFICATE")) {
		t.Error("the image has no CA certificates at /etc/ssl/certs/ca-certificates.crt")
	}
	if !bytes.Contains(files["/etc/passwd"], []byte("nonroot:x:65532:65532:")) {
		t.Errorf("the image's /etc/passwd lacks the nonroot user: %q", files["/etc/passwd"])
	}

	// Run it as the deployer's stack does: password in a secret file,
	// read-only root, no capabilities.
	dbURL := testpg.New(t)
	port := freePort(t)
	secret := filepath.Join(t.TempDir(), "db_password")
	if err := os.WriteFile(secret, []byte(canary), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(secret, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	run := func(cmd []string) string {
		c, err := cli.ContainerCreate(ctx, &container.Config{
			Image: tag, Cmd: cmd,
			Env: []string{"DATABASE_URL=" + dbURL, "DATABASE_PASSWORD_FILE=/run/secrets/db_password", "PORT=" + port, "SHUTDOWN_DELAY=0s"},
		}, &container.HostConfig{
			NetworkMode: "host", ReadonlyRootfs: true, CapDrop: []string{"ALL"},
			SecurityOpt: []string{"no-new-privileges"},
			Binds:       []string{secret + ":/run/secrets/db_password:ro"},
		}, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
		})
		if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	logsOf := func(id string) string {
		rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			return err.Error()
		}
		defer rc.Close()
		var out, errOut bytes.Buffer
		_, _ = stdcopy.StdCopy(&out, &errOut, rc)
		return out.String() + errOut.String()
	}

	vid := run([]string{"version"})
	waitC, errC := cli.ContainerWait(ctx, vid, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	if got := logsOf(vid); !strings.Contains(got, "invoicing-api v9.9.9-test (0123abc)") {
		t.Errorf("version from build args: %q", got)
	}

	id := run(nil)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ci, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ci.State.Health != nil && ci.State.Health.Status == "healthy" {
			break
		}
		if !ci.State.Running || time.Now().After(deadline) {
			t.Fatalf("container not healthy (running %v, health %+v):\n%s", ci.State.Running, ci.State.Health, logsOf(id))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, body := status(t, "POST", "http://127.0.0.1:"+port+"/v1/invoices", `{"currency":"EUR","customer":{"name":"A"}}`, nil); code != 201 {
		t.Fatalf("create in the container: %d %s", code, body)
	}
	timeout := 15
	if err := cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	ci, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	logs := logsOf(id)
	if ci.State.ExitCode != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", ci.State.ExitCode, logs)
	}
	if strings.Contains(logs, canary) {
		t.Error("the password reached the container log")
	}
	if !strings.Contains(logs, `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", logs)
	}
}

func ptr(s string) *string { return &s }

// goproxyOf is the GOPROXY the image build gets: $GOPROXY, else go env's.
func goproxyOf(goBin string) string {
	goproxy := os.Getenv("GOPROXY")
	if out, err := exec.Command(goBin, "env", "GOPROXY").Output(); goproxy == "" && err == nil {
		goproxy = strings.TrimSpace(string(out))
	}
	return goproxy
}

// sameBinary fails unless the image's binary is byte for byte the host
// build at hostPath, or the two were built by different Go releases (a pulled
// golang:1.26-bookworm), which it logs.
func sameBinary(t *testing.T, goBin string, imageBin []byte, hostPath string) {
	t.Helper()
	hostBin, err := os.ReadFile(hostPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(imageBin, hostBin) {
		imgGo, hostGo := goVersionOf(t, goBin, imageBin), goVersionOf(t, goBin, hostBin)
		if imgGo == hostGo {
			t.Errorf("the image's binary differs from the one built here with %s and the same flags: the build is not reproducible", hostGo)
		} else {
			t.Logf("the builder image has %s, this machine %s: binaries not compared", imgGo, hostGo)
		}
	}
}

// hostBinary builds the API here as the Dockerfile does, with the build args
// the image tests pass (VERSION v9.9.9-test, REVISION 0123abc).
func hostBinary(t *testing.T, goBin string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "invoicing-api")
	gb := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -buildid= -X github.com/invdeploy/invdeploy/internal/version.Version=v9.9.9-test -X github.com/invdeploy/invdeploy/internal/version.Revision=0123abc", "-o", bin, ".")
	gb.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// imageFiles reads files out of image tag through a created (never started)
// container.
func imageFiles(ctx context.Context, t *testing.T, cli *client.Client, tag string, paths ...string) map[string][]byte {
	t.Helper()
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: tag}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	out := map[string][]byte{}
	for _, p := range paths {
		rc, _, err := cli.CopyFromContainer(ctx, c.ID, p)
		if err != nil {
			t.Fatalf("read %s from the image: %v", p, err)
		}
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err != nil {
			rc.Close()
			t.Fatalf("read %s from the image: %v", p, err)
		}
		b, err := io.ReadAll(tr)
		rc.Close()
		if err != nil {
			t.Fatalf("read %s from the image: %v", p, err)
		}
		out[p] = b
	}
	return out
}

// goVersionOf is the Go release a binary was built with (go version FILE).
func goVersionOf(t *testing.T, goBin string, binary []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(f, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, "version", f).Output()
	if err != nil {
		t.Fatalf("go version %s: %v", f, err)
	}
	fields := strings.Fields(string(out))
	return fields[len(fields)-1]
}
