package testbed_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/invdeploy/invdeploy/test/testbed"
)

// baseImage is made by `make images` (pulled, or built from Debian packages).
const baseImage = "debian:bookworm"

func engine(t *testing.T, host string) *client.Client {
	t.Helper()
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func auth(t *testing.T, user, password string) string {
	t.Helper()
	s, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// drain reads an Engine API progress stream and returns the error it reports.
func drain(rc io.ReadCloser, err error) error {
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

func randomTag(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// TestTestBed is the smoke test of the whole bed: the registry asks for a
// login, refuses a wrong one, takes a push and gives the image back; the
// simulated EC2 host answers `docker info` over SSH with a key, refuses
// passwords and unknown host keys, starts with no images and no way out,
// and pulls from the registry over TLS.
func TestTestBed(t *testing.T) {
	bed := testbed.Start(t)
	reg, host := bed.Registry, bed.EC2
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	local := engine(t, "")
	remote := engine(t, "unix://"+host.Socket)
	password := reg.Password(t)
	repo := reg.Addr + "/smoke/debian"
	tag := randomTag(t)
	ref := repo + ":" + tag

	t.Run("registry refuses anonymous and wrong logins", func(t *testing.T) {
		resp, err := http.Get("http://" + reg.Addr + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /v2/ without credentials: %s, want 401", resp.Status)
		}
		if _, err := local.RegistryLogin(ctx, registry.AuthConfig{Username: reg.User, Password: "wrong-" + tag, ServerAddress: reg.Addr}); err == nil {
			t.Fatal("login with a wrong password succeeded")
		}
		if err := local.ImageTag(ctx, baseImage, ref); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { local.ImageRemove(context.Background(), ref, image.RemoveOptions{}) })
		err = drain(local.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth(t, reg.User, "wrong-"+tag)}))
		if err == nil {
			t.Fatal("push with a wrong password succeeded")
		}
		if strings.Contains(err.Error(), password) {
			t.Fatal("the registry's error text contains the password")
		}
	})

	t.Run("push and pull back", func(t *testing.T) {
		if _, err := local.RegistryLogin(ctx, registry.AuthConfig{Username: reg.User, Password: password, ServerAddress: reg.Addr}); err != nil {
			t.Fatalf("login with the right password: %v", err)
		}
		want, err := local.ImageInspect(ctx, baseImage)
		if err != nil {
			t.Fatal(err)
		}
		if err := local.ImageTag(ctx, baseImage, ref); err != nil {
			t.Fatal(err)
		}
		if err := drain(local.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth(t, reg.User, password)})); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		if _, err := local.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := drain(local.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth(t, reg.User, password)})); err != nil {
			t.Fatalf("pull %s back: %v", ref, err)
		}
		t.Cleanup(func() { local.ImageRemove(context.Background(), ref, image.RemoveOptions{}) })
		got, err := local.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID {
			t.Fatalf("pulled image %s, pushed %s", got.ID, want.ID)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Addr+"/v2/smoke/debian/tags/list", nil)
		req.SetBasicAuth(reg.User, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tags struct{ Tags []string }
		if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil || !contains(tags.Tags, tag) {
			t.Fatalf("registry tags of smoke/debian: %v (%v), want %s among them", tags.Tags, err, tag)
		}
	})

	t.Run("docker info over ssh", func(t *testing.T) {
		before := host.Accepted(t)
		cmd := exec.CommandContext(ctx, "docker", "info", "--format", "{{.Name}}|{{.Images}}|{{.Containers}}|{{json .Labels}}")
		cmd.Env = append(os.Environ(), "PATH="+host.SSHPath+":"+os.Getenv("PATH"), "DOCKER_HOST="+host.URL(), "DOCKER_CONFIG="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker info against %s: %v\n%s", host.URL(), err, out)
		}
		f := strings.Split(strings.TrimSpace(string(out)), "|")
		if len(f) != 4 || !strings.HasPrefix(f[0], "ec2-host-") || f[1] != "0" || f[2] != "0" || !strings.Contains(f[3], "invdeploy.testbed=ec2-host-") {
			t.Fatalf("docker info over ssh = %q, want the EC2 host's engine with no images and no containers", out)
		}
		if after := host.Accepted(t); after <= before {
			t.Fatalf("sshd accepted %d connections before and %d after docker info: it did not go over ssh", before, after)
		}
	})

	t.Run("ssh refuses passwords and unknown host keys", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, "ssh", "-F", host.SSHConfig, "-o", "PubkeyAuthentication=no",
			"-o", "PreferredAuthentications=password,keyboard-interactive", host.User+"@"+host.Addr, "true").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Fatalf("ssh without a key: %v %s, want Permission denied", err, out)
		}
		out, err = exec.CommandContext(ctx, "ssh", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "StrictHostKeyChecking=yes", "-i", host.SSHKey, host.User+"@"+host.Addr, "true").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Host key verification failed") {
			t.Fatalf("ssh without the known host key: %v %s, want Host key verification failed", err, out)
		}
		out, err = exec.CommandContext(ctx, "ssh", "-F", host.SSHConfig, host.User+"@"+host.Addr, "echo $DOCKER_HOST").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "unix://"+host.Socket {
			t.Fatalf("ssh with the key: %v %q, want DOCKER_HOST=unix://%s in the session", err, out, host.Socket)
		}
	})

	t.Run("host reaches only its link", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, "ip", "-n", host.Netns, "route", "show", "default").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("default route in the host's namespace: %v %q, want none", err, out)
		}
	})

	t.Run("host pulls from the registry over TLS", func(t *testing.T) {
		if reg.EC2Addr == "" {
			t.Fatal("the registry has no listener for the EC2 host")
		}
		remoteRef := reg.EC2Addr + "/smoke/debian:" + tag
		if err := drain(remote.ImagePull(ctx, remoteRef, image.PullOptions{RegistryAuth: auth(t, reg.User, "wrong-"+tag)})); err == nil {
			t.Fatal("the host pulled with a wrong password")
		}
		if err := drain(remote.ImagePull(ctx, remoteRef, image.PullOptions{RegistryAuth: auth(t, reg.User, password)})); err != nil {
			t.Fatalf("the host pulls %s: %v", remoteRef, err)
		}
		want, _ := local.ImageInspect(ctx, baseImage)
		got, err := remote.ImageInspect(ctx, remoteRef)
		if err != nil || got.ID != want.ID {
			t.Fatalf("image on the host: %v %s, want %s", err, got.ID, want.ID)
		}
	})
}

// TestTwoRegistriesAtOnce: beds of tests running at the same time get their
// own slots, addresses and passwords.
func TestTwoRegistriesAtOnce(t *testing.T) {
	a := testbed.StartRegistry(t)
	b := testbed.StartRegistry(t)
	if a.Addr == b.Addr {
		t.Fatalf("two registries share %s", a.Addr)
	}
	for _, r := range []*testbed.Registry{a, b} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addr+"/v2/", nil)
		req.SetBasicAuth(r.User, r.Password(t))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("registry %s with its login: %s, want 200", r.Addr, resp.Status)
		}
	}
	if a.Password(t) == b.Password(t) {
		t.Fatal("two registries share a password")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
