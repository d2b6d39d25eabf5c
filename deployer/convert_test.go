package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

func TestConvertBundledIsHardened(t *testing.T) {
	st, _ := bundledStack(t, "INVOICING_API_PORT=18123")
	p := st.Project
	for _, name := range []string{"api", "db"} {
		s := p.Services[name]
		spec, err := convert(p, s, 1, "h")
		if err != nil {
			t.Fatalf("convert %s: %v", name, err)
		}
		h := spec.Host
		if spec.Name != "inv-"+name+"-1" {
			t.Errorf("%s: name %s", name, spec.Name)
		}
		if spec.Config.User == "" || spec.Config.User == "root" || spec.Config.User == "0" {
			t.Errorf("%s: runs as %q, want a non-root user", name, spec.Config.User)
		}
		if !h.ReadonlyRootfs {
			t.Errorf("%s: root filesystem is writable", name)
		}
		if len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" || len(h.CapAdd) != 0 {
			t.Errorf("%s: cap_drop %v cap_add %v", name, h.CapDrop, h.CapAdd)
		}
		if !contains(h.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: security_opt %v", name, h.SecurityOpt)
		}
		if h.Resources.Memory == 0 || h.Resources.PidsLimit == nil || *h.Resources.PidsLimit == 0 {
			t.Errorf("%s: no memory or pids limit", name)
		}
		if h.RestartPolicy.Name != container.RestartPolicyOnFailure || h.RestartPolicy.MaximumRetryCount != 5 {
			t.Errorf("%s: restart %+v", name, h.RestartPolicy)
		}
		if spec.Config.Healthcheck == nil || len(spec.Config.Healthcheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
		for k, want := range map[string]string{LabelProject: "inv", LabelService: name, LabelConfigHash: "h", LabelContainerNumber: "1"} {
			if spec.Config.Labels[k] != want {
				t.Errorf("%s: label %s=%q, want %q", name, k, spec.Config.Labels[k], want)
			}
		}
		if _, ok := spec.Network.EndpointsConfig["inv_default"]; !ok || string(h.NetworkMode) != "inv_default" {
			t.Errorf("%s: not on inv_default: %v %s", name, spec.Network.EndpointsConfig, h.NetworkMode)
		}
	}
	api, _ := convert(p, p.Services["api"], 1, "h")
	b := api.Host.PortBindings["8000/tcp"]
	if len(b) != 1 || b[0].HostIP != "127.0.0.1" || b[0].HostPort != "18123" {
		t.Errorf("api ports %v, want 127.0.0.1:18123", api.Host.PortBindings)
	}
	if api.Config.Image != "invoicing-api:latest" {
		t.Errorf("api image %s", api.Config.Image)
	}
	db, _ := convert(p, p.Services["db"], 1, "h")
	if len(db.Host.PortBindings) != 0 {
		t.Errorf("postgres is published: %v", db.Host.PortBindings)
	}
	if _, ok := db.Host.Tmpfs["/var/run/postgresql"]; !ok {
		t.Errorf("postgres has no tmpfs for its socket: %v", db.Host.Tmpfs)
	}
	if len(db.Host.Mounts) != 1 || db.Host.Mounts[0].Type != mount.TypeVolume || db.Host.Mounts[0].Source != "inv_db-data" || db.Host.Mounts[0].Target != "/var/lib/postgresql/data" {
		t.Errorf("postgres mounts %+v", db.Host.Mounts)
	}
	if !contains(db.Config.Env, "POSTGRES_PASSWORD_FILE=/run/secrets/db_password") {
		t.Errorf("postgres env %v", db.Config.Env)
	}
	if len(st.Warnings) != 0 {
		t.Errorf("the bundled stack uses unsupported fields: %v", st.Warnings)
	}
}

func TestConvertRemoteBind(t *testing.T) {
	st, _ := bundledStack(t, "INVOICING_API_BIND=0.0.0.0")
	api, err := convert(st.Project, st.Project.Services["api"], 1, "h")
	if err != nil {
		t.Fatal(err)
	}
	if b := api.Host.PortBindings["8000/tcp"]; len(b) != 1 || b[0].HostIP != "0.0.0.0" || b[0].HostPort != "8000" {
		t.Fatalf("INVOICING_API_BIND=0.0.0.0: ports %v", api.Host.PortBindings)
	}
}

func TestConvertPlainCompose(t *testing.T) {
	st := loadStack(t, `services:
  web:
    image: nginx:1
    command: ["nginx", "-g", "daemon off;"]
    environment: {A: "1", B: "two"}
    ports: ["8080:80", "127.0.0.1:9090:90/udp"]
    volumes: ["./html:/usr/share/nginx/html:ro", "cache:/cache", "/anon"]
    networks: [front, back]
    restart: unless-stopped
    deploy:
      resources:
        limits: {memory: 64M, cpus: "0.5", pids: 50}
volumes:
  cache: {}
networks:
  front: {}
  back: {}
`, nil)
	spec, err := convert(st.Project, st.Project.Services["web"], 2, "h")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "t-web-2" || strings.Join(spec.Config.Cmd, " ") != "nginx -g daemon off;" {
		t.Errorf("name %s cmd %v", spec.Name, spec.Config.Cmd)
	}
	if strings.Join(spec.Config.Env, ",") != "A=1,B=two" {
		t.Errorf("env %v", spec.Config.Env)
	}
	if b := spec.Host.PortBindings["80/tcp"]; len(b) != 1 || b[0].HostPort != "8080" || b[0].HostIP != "" {
		t.Errorf("80/tcp %v", b)
	}
	if b := spec.Host.PortBindings["90/udp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Errorf("90/udp %v", b)
	}
	if len(spec.Host.Binds) != 1 || !strings.HasSuffix(spec.Host.Binds[0], "/html:/usr/share/nginx/html:ro") {
		t.Errorf("binds %v", spec.Host.Binds)
	}
	var srcs []string
	for _, m := range spec.Host.Mounts {
		srcs = append(srcs, m.Source+">"+m.Target)
	}
	sort.Strings(srcs)
	if strings.Join(srcs, ",") != ">/anon,t_cache>/cache" {
		t.Errorf("mounts %v", srcs)
	}
	if spec.Host.Resources.Memory != 64<<20 || spec.Host.Resources.NanoCPUs != 5e8 || *spec.Host.Resources.PidsLimit != 50 {
		t.Errorf("resources %+v", spec.Host.Resources)
	}
	if spec.Host.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("restart %v", spec.Host.RestartPolicy)
	}
	if len(spec.Network.EndpointsConfig) != 1 || len(spec.Connect) != 1 {
		t.Errorf("networks at create %v, connected after %v", spec.Network.EndpointsConfig, spec.Connect)
	}
	if len(spec.Config.Volumes) != 0 {
		t.Errorf("a service without secrets got a /run/secrets volume: %v", spec.Config.Volumes)
	}
}

func TestConfigHash(t *testing.T) {
	st := loadStack(t, `services:
  a:
    image: x
    environment: {K: v}
    depends_on: [b]
    build: .
  b: {image: x}
`, map[string]string{"Dockerfile": "FROM scratch\n"})
	a := st.Project.Services["a"]
	h1, err := ConfigHash(a)
	if err != nil {
		t.Fatal(err)
	}
	if h2, _ := ConfigHash(a); h1 != h2 || len(h1) != 64 {
		t.Fatalf("hash not stable or not SHA-256 hex: %s %s", h1, h2)
	}
	ignored := a
	ignored.DependsOn = nil
	ignored.Build = nil
	three := 3
	ignored.Scale = &three
	if h, _ := ConfigHash(ignored); h != h1 {
		t.Fatal("depends_on, build or scale changed the hash")
	}
	changed := a
	v := "w"
	changed.Environment = map[string]*string{"K": &v}
	if h, _ := ConfigHash(changed); h == h1 {
		t.Fatal("an environment change left the hash unchanged")
	}
}

func TestUnsupportedFieldsAreNamed(t *testing.T) {
	st := loadStack(t, `services:
  web:
    image: x
    ipc: host
    devices: ["/dev/fuse:/dev/fuse"]
    deploy:
      placement:
        constraints: ["node.role==manager"]
`, nil)
	probs, err := FieldProblems(st.Project, TargetLocal)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(probs)
	for _, want := range []string{"services.web.ipc", "services.web.devices", "services.web.deploy.placement.constraints"} {
		if !strings.Contains(got, want) {
			t.Errorf("no refusal names %s; refusals:\n%s", want, got)
		}
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"compose.yaml": "services:\n  web:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    external: true\n"})
	if _, err := Load(context.Background(), LoadOptions{WorkingDir: dir}); err == nil || !strings.Contains(err.Error(), "secrets.s.external") {
		t.Fatalf("external secret: want an error naming secrets.s.external, got %v", err)
	}
}

func TestBuildContextHonoursDockerignore(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":       "FROM scratch\n",
		".dockerignore":    "Dockerfile\n.env\nbin\n*.log\n!keep.log\n",
		".env":             "SECRET=1\n",
		"bin/tool":         "x",
		"a.log":            "x",
		"keep.log":         "x",
		"src/main.go":      "package main\n",
		"src/sub/data.txt": "x",
	})
	var buf bytes.Buffer
	if err := writeContextTar(&buf, dir, "Dockerfile"); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(contextEpoch) {
			t.Errorf("%s: mtime %v, want the fixed epoch", h.Name, h.ModTime)
		}
		names = append(names, h.Name)
	}
	got := strings.Join(names, " ")
	want := ".dockerignore Dockerfile keep.log src/ src/main.go src/sub/ src/sub/data.txt"
	if got != want {
		t.Fatalf("context\n got %s\nwant %s", got, want)
	}
}

func TestParseDockerfile(t *testing.T) {
	info, err := parseDockerfile(strings.NewReader(`# syntax=docker/dockerfile:1
ARG GO=1.26
FROM --platform=$BUILDPLATFORM golang:${GO}-bookworm AS build
FROM golang:1.26-bookworm AS b2
ARG VERSION=dev \
    REVISION
RUN echo \
  FROM notanimage
FROM b2 AS final
FROM scratch
FROM debian:bookworm-slim
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.BaseImages, ","); got != "golang:1.26-bookworm,debian:bookworm-slim" {
		t.Errorf("base images %s", got)
	}
	for _, a := range []string{"GO", "VERSION", "REVISION"} {
		if !info.Args[a] {
			t.Errorf("ARG %s not found in %v", a, info.Args)
		}
	}
}

func TestBuildTagsAndArgs(t *testing.T) {
	st, _ := bundledStack(t)
	dir := st.Project.WorkingDir
	// A checkout: .git/HEAD -> refs/heads/main.
	sha := "0123456789abcdef0123456789abcdef01234567"
	writeFiles(t, dir, map[string]string{".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": sha + "\n", ".dockerignore": ".git\n.env\n"})
	f := fakeWithImages()
	tags, err := New(f, nil).Build(context.Background(), st, BuildOptions{Tags: []string{"v1"}, Getenv: func(k string) string {
		return map[string]string{"VERSION": "1.2.3", "GOPROXY": "off"}[k]
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tags, ","); got != "invoicing-api:latest,invoicing-api:0123456789ab,invoicing-api:v1" {
		t.Fatalf("tags %s", got)
	}
	args := f.builds[0].BuildArgs
	if args["VERSION"] == nil || *args["VERSION"] != "1.2.3" {
		t.Fatalf("VERSION build arg %v", args["VERSION"])
	}
	if _, ok := args["GOPROXY"]; ok {
		t.Fatal("GOPROXY passed although the Dockerfile does not declare it")
	}
	for _, name := range f.buildFiles {
		if strings.HasPrefix(name, ".git") {
			t.Fatalf("build context holds %s", name)
		}
	}
}

func TestBundledImageTaggedWithCommit(t *testing.T) {
	dir := t.TempDir()
	sha := "fedcba9876543210fedcba9876543210fedcba98"
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", ".git/HEAD": sha + "\n"})
	st, err := Load(context.Background(), LoadOptions{WorkingDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Project.Services["api"].Image; got != "invoicing-api:fedcba987654" {
		t.Fatalf("api image %s, want invoicing-api:<commit>", got)
	}
	if st.Project.Name != "invoicing" {
		t.Fatalf("bundled project name %s, want invoicing", st.Project.Name)
	}
	st, err = Load(context.Background(), LoadOptions{WorkingDir: dir, Env: []string{"INVOICING_API_TAG=v9"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Project.Services["api"].Image; got != "invoicing-api:v9" {
		t.Fatalf("INVOICING_API_TAG=v9: api image %s", got)
	}
}

// TestBundledCPULimits: every service of the bundled stack, in every
// profile, has a CPU limit (docker-bench 5.12) of at most one CPU, so the
// stack also starts on a one-vCPU host; the API's and the database's can
// be raised.
func TestBundledCPULimits(t *testing.T) {
	st, _ := bundledStack(t, "INVOICING_API_PORT=18124")
	all, err := Load(context.Background(), LoadOptions{WorkingDir: st.Project.WorkingDir, ProjectName: "inv", Profiles: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Project.Services) < 5 {
		t.Fatalf("want every profile's services, got %v", all.Project.ServiceNames())
	}
	for _, name := range all.Project.ServiceNames() {
		spec, err := convert(all.Project, all.Project.Services[name], 1, "h")
		if err != nil {
			t.Fatalf("convert %s: %v", name, err)
		}
		if n := spec.Host.Resources.NanoCPUs; n <= 0 || n > 1e9 {
			t.Errorf("%s: CPU limit %d nano-CPUs, want more than 0 and at most one CPU", name, n)
		}
	}
	more, err := Load(context.Background(), LoadOptions{WorkingDir: st.Project.WorkingDir, ProjectName: "inv", Env: []string{"INVOICING_API_CPUS=1.5", "INVOICING_DB_CPUS=2"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"api": 15e8, "db": 2e9} {
		spec, err := convert(more.Project, more.Project.Services[name], 1, "h")
		if err != nil || spec.Host.Resources.NanoCPUs != want {
			t.Errorf("%s with its CPUS variable: NanoCPUs %d, %v; want %d", name, spec.Host.Resources.NanoCPUs, err, want)
		}
	}
}
