package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
)

var (
	proxyBinOnce sync.Once
	proxyBinPath string
	proxyBinErr  error
)

// proxyBinary builds a static ./cmd/invdeploy-proxy once.
func proxyBinary(t *testing.T) string {
	t.Helper()
	proxyBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "invdeploy-e2e-proxy")
		if err != nil {
			proxyBinErr = err
			return
		}
		proxyBinPath = filepath.Join(dir, "invdeploy-proxy")
		cmd := exec.Command("go", "build", "-trimpath", "-o", proxyBinPath, "./cmd/invdeploy-proxy")
		cmd.Dir = localRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			proxyBinErr = fmt.Errorf("build invdeploy-proxy: %v\n%s", err, out)
		}
	})
	if proxyBinErr != nil {
		t.Fatal(proxyBinErr)
	}
	return proxyBinPath
}

// monProxy is a rollout proxy container on a stack's network, answering the
// network alias "invdeploy-proxy" as the monitoring profile's scrape job expects, with
// its client port published on 127.0.0.1.
type monProxy struct {
	e   *localEnv
	id  string
	URL string // http://127.0.0.1:PORT, through the proxy
}

// startMonProxy runs the invdeploy-proxy binary of this checkout in a
// container on project's network (alias "invdeploy-proxy", non-root, no capabilities;
// not read-only, as the engine copies no file into a read-only root), in
// front of nothing until deploy is called. It stands in
// for the proxy `up` starts for a rolled service, which the lead is wiring
// in on another branch; the exec of `deploy` is the same as up's.
func startMonProxy(t *testing.T, e *localEnv, project string, port int) *monProxy {
	t.Helper()
	ctx := context.Background()
	bin, err := os.ReadFile(proxyBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	name := project + "-monproxy"
	cfg := &container.Config{
		Image:        "debian:bookworm",
		User:         "65532:65532",
		Entrypoint:   []string{"/invdeploy-proxy"},
		Cmd:          []string{"run", "--listen", ":8000", "--metrics", ":9180", "--admin", "/run/invdeploy-proxy/admin.sock"},
		ExposedPorts: nat.PortSet{"8000/tcp": {}},
	}
	hc := &container.HostConfig{
		PortBindings: nat.PortMap{"8000/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}}},
		CapDrop:      []string{"ALL"},
		SecurityOpt:  []string{"no-new-privileges:true"},
		Tmpfs:        map[string]string{"/run/invdeploy-proxy": "size=1m,uid=65532,gid=65532,mode=0700"},
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		project + "_default": {Aliases: []string{"invdeploy-proxy"}},
	}}
	c, err := e.docker.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if err != nil {
		t.Fatalf("create the proxy container: %v", err)
	}
	t.Cleanup(func() {
		if err := e.docker.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "invdeploy-proxy", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(bin)
	tw.Close()
	if err := e.docker.CopyToContainer(ctx, c.ID, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		t.Fatalf("copy the proxy binary: %v", err)
	}
	if err := e.docker.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start the proxy: %v", err)
	}
	return &monProxy{e: e, id: c.ID, URL: "http://127.0.0.1:" + strconv.Itoa(port)}
}

// deploy runs `invdeploy-proxy deploy ARGS` inside the proxy's container by
// exec, as invdeploy does, and returns its exit code and output.
func (p *monProxy) deploy(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := append([]string{"/invdeploy-proxy", "deploy", "--admin", "/run/invdeploy-proxy/admin.sock"}, args...)
	var out bytes.Buffer
	deadline := time.Now().Add(30 * time.Second)
	for {
		ex, err := p.e.docker.ContainerExecCreate(ctx, p.id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		att, err := p.e.docker.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		stdcopy.StdCopy(&out, &out, att.Reader)
		att.Close()
		ins, err := p.e.docker.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Right after start the admin socket may not be there yet.
		if ins.ExitCode != 0 && bytes.Contains(out.Bytes(), []byte("admin.sock")) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		return ins.ExitCode, out.String()
	}
}

// promSample is one series of an instant query's answer.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// promSamples runs an instant query and returns its series (vector answers
// only; a scalar comes back as one series without labels).
func promSamples(base, expr string) ([]promSample, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s", r.Error)
	}
	parse := func(v []any) (float64, error) {
		if len(v) != 2 {
			return 0, fmt.Errorf("sample %v", v)
		}
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	if r.Data.ResultType == "scalar" {
		var v []any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		return []promSample{{Metric: map[string]string{}, Value: f}}, err
	}
	var series []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
	}
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return nil, fmt.Errorf("%s answer: %w", r.Data.ResultType, err)
	}
	out := make([]promSample, 0, len(series))
	for _, s := range series {
		f, err := parse(s.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, promSample{s.Metric, f})
	}
	return out, nil
}

// waitSeries polls expr until some series satisfies ok, or fails the test
// after within.
func waitSeries(t *testing.T, prom, what, expr string, within time.Duration, ok func(promSample) bool) promSample {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ss, err := promSamples(prom, expr)
		for _, s := range ss {
			if ok(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q gave no matching series within %s (got %v, %v)", what, expr, within, ss, err)
		}
		time.Sleep(2 * time.Second)
	}
}
