package e2e

// A simulated EC2 host and an authenticated registry for the remote and push
// end-to-end tests: a second dockerd in its own network namespace reached
// only through an sshd with key authentication, and Debian's docker-registry
// with htpasswd. Traffic goes only to loopback and to the namespace's
// addresses created here.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// remoteHost is a simulated EC2 host.
type remoteHost struct {
	Addr       string // the host's address, reachable from here
	GatewayIP  string // this machine's address as the host sees it
	Port       int    // sshd port
	User       string
	Key        string // client private key
	KnownHosts string // known_hosts with the host key
	Socket     string // the host engine's socket path
	SSHDLog    string
	Netns      string
	dir        string
}

// URL is the --host URL of the host's engine.
func (h *remoteHost) URL() string {
	return fmt.Sprintf("ssh://%s@%s:%d%s", h.User, h.Addr, h.Port, h.Socket)
}

// Accepted counts the SSH logins sshd has logged so far.
func (h *remoteHost) Accepted(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(h.SSHDLog)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "Accepted publickey")
}

// InNetns runs a command in the host's network namespace (a process "on the host").
func (h *remoteHost) InNetns(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + h.Netns, name}, args...)...)
}

// Docker runs the docker CLI against the host's engine directly (test-bed
// inspection only; the product never shells out to docker).
func (h *remoteHost) Docker(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+h.Socket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v on the host: %v\n%s", args, err, out)
	}
	return string(out)
}

func needRemoteBed(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	testenv.NeedDocker(t)
	for _, c := range []string{"ip", "nsenter", "dockerd", "ssh-keygen", "docker"} {
		testenv.NeedCommand(t, c)
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		testenv.Missing(t, "/usr/sbin/sshd (openssh-server; make deps installs it)")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (network namespaces and a second dockerd)")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// startRemoteHost starts a simulated EC2 host; registryPort, when not 0,
// lets its engine pull over plain HTTP from GatewayIP:registryPort.
func startRemoteHost(t *testing.T, registryPort int) *remoteHost {
	return startNamedRemoteHost(t, registryPort, bedNaming{netns: "inv5e2e", hostIf: "i5h", nsIf: "i5g", dir: "inv5ec2-", net: 254, bip: 253})
}

// bedNaming names a simulated host's network namespace, veth ends and
// directory, and picks its subnets (10.<net>.N.0/30, containers on
// 10.<bip>.N.0/24), so tests of different areas can run beside each other.
type bedNaming struct {
	netns, hostIf, nsIf, dir string
	net, bip                 int
}

func startNamedRemoteHost(t *testing.T, registryPort int, nm bedNaming) *remoteHost {
	t.Helper()
	needRemoteBed(t)
	n := os.Getpid()%200 + 20
	h := &remoteHost{
		Netns:     fmt.Sprintf("%s%d", nm.netns, n),
		Addr:      fmt.Sprintf("10.%d.%d.2", nm.net, n),
		GatewayIP: fmt.Sprintf("10.%d.%d.1", nm.net, n),
		Port:      22,
		User:      "root",
	}
	hostIf, nsIf := fmt.Sprintf("%s%d", nm.hostIf, n), fmt.Sprintf("%s%d", nm.nsIf, n)
	dir, err := os.MkdirTemp("/tmp", nm.dir)
	if err != nil {
		t.Fatal(err)
	}
	h.dir = dir
	h.Socket = filepath.Join(dir, "docker.sock")
	h.SSHDLog = filepath.Join(dir, "sshd.log")
	h.Key = filepath.Join(dir, "client")
	h.KnownHosts = filepath.Join(dir, "known_hosts")

	// Clean up a crashed earlier run with the same name.
	exec.Command("ip", "netns", "del", h.Netns).Run()
	exec.Command("ip", "link", "del", hostIf).Run()

	var procs []*exec.Cmd
	t.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			p.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
		exec.Command("ip", "netns", "del", h.Netns).Run()
		exec.Command("ip", "link", "del", hostIf).Run()
		unmountUnder(dir)
		os.RemoveAll(dir)
	})

	run(t, "ip", "netns", "add", h.Netns)
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run(t, "ip", "link", "set", nsIf, "netns", h.Netns)
	run(t, "ip", "addr", "add", h.GatewayIP+"/30", "dev", hostIf)
	run(t, "ip", "link", "set", hostIf, "up")
	run(t, "ip", "-n", h.Netns, "addr", "add", h.Addr+"/30", "dev", nsIf)
	run(t, "ip", "-n", h.Netns, "link", "set", nsIf, "up")
	run(t, "ip", "-n", h.Netns, "link", "set", "lo", "up")

	start := func(logName string, name string, args ...string) {
		logf, err := os.Create(filepath.Join(dir, logName))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + h.Netns, name}, args...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		procs = append(procs, cmd)
	}

	os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}"), 0o600)
	dargs := []string{"--config-file", filepath.Join(dir, "daemon.json"), "--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", "unix://" + h.Socket, "--bip", fmt.Sprintf("10.%d.%d.1/24", nm.bip, n), "--iptables=false"}
	if registryPort != 0 {
		dargs = append(dargs, "--insecure-registry", net.JoinHostPort(h.GatewayIP, strconv.Itoa(registryPort)))
	}
	start("dockerd.log", "dockerd", dargs...)

	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "hostkey"))
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", h.Key)
	pub, _ := os.ReadFile(h.Key + ".pub")
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	hostPub, _ := os.ReadFile(filepath.Join(dir, "hostkey.pub"))
	f := strings.Fields(string(hostPub))
	os.WriteFile(h.KnownHosts, []byte(h.Addr+" "+f[0]+" "+f[1]+"\n"), 0o600)
	cfg := strings.Join([]string{
		"Port 22", "ListenAddress " + h.Addr, "HostKey " + filepath.Join(dir, "hostkey"),
		"PidFile " + filepath.Join(dir, "sshd.pid"), "AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password", "AllowStreamLocalForwarding yes", "AllowTcpForwarding local",
		"StrictModes no", "UsePAM no", "LogLevel INFO", "SetEnv DOCKER_HOST=unix://" + h.Socket, "",
	}, "\n")
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600)
	os.MkdirAll("/run/sshd", 0o755)
	start("sshd.stdout", "/usr/sbin/sshd", "-D", "-f", filepath.Join(dir, "sshd_config"), "-E", h.SSHDLog)

	deadline := time.Now().Add(60 * time.Second)
	for {
		err := exec.Command("docker", "-H", "unix://"+h.Socket, "version").Run()
		c, derr := net.DialTimeout("tcp", net.JoinHostPort(h.Addr, "22"), time.Second)
		if derr == nil {
			c.Close()
		}
		if err == nil && derr == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("simulated EC2 host did not come up (docker: %v, sshd: %v)\n%s", err, derr, tail(string(log), 20))
		}
		time.Sleep(300 * time.Millisecond)
	}
	return h
}

// unmountUnder lazily unmounts everything dockerd left mounted below dir
// (overlay layers, the exec root's netns bind mount), deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			points = append(points, f[1])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		exec.Command("umount", "-l", points[i]).Run()
	}
}

// testRegistry is an authenticated docker-registry on 127.0.0.1.
type testRegistry struct {
	Addr           string // 127.0.0.1:port
	User, Password string
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	testenv.NeedDocker(t)
	testenv.NeedCommand(t, "docker-registry")
	testenv.NeedCommand(t, "htpasswd")
	dir := t.TempDir()
	r := &testRegistry{User: "ci", Password: "reg-Pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Addr = ln.Addr().String()
	ln.Close()
	htp := exec.Command("htpasswd", "-Bbn", r.User, r.Password)
	out, err := htp.Output()
	if err != nil {
		t.Fatalf("htpasswd: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
auth:
  htpasswd:
    realm: invdeploy-test
    path: %s
`, filepath.Join(dir, "data"), r.Addr, filepath.Join(dir, "htpasswd"))
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600)
	cmd := exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry did not start: %v\n%s", err, logBuf.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// forward accepts on listenAddr and pipes each connection to target, until
// the test ends: it lets the simulated host reach a loopback-only registry.
func forward(t *testing.T, listenAddr, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}

// invdeployBinary is the local tests' binary (with the proxy beside it).
func invdeployBinary(t *testing.T) string { return localBinary(t) }

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// cliResult is one invdeploy run.
type cliResult struct {
	Stdout, Stderr string
	Code           int
	Elapsed        time.Duration
}

// invdeploy runs the binary in the repository root (the bundled stack's
// build context) with env added to a clean environment.
func invdeploy(t *testing.T, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if len(args) > 1 && args[0] == "remote" && args[1] == "up" && treeDirty(t) {
		// A developer's edited checkout deploys as is; CI's clean clone
		// runs remote up exactly as a user does (its refusal of a dirty
		// tree is tested in cmd/invdeploy's remote_refusals script).
		args = append(append([]string{}, args...), "--allow-dirty")
	}
	cmd := exec.CommandContext(ctx, invdeployBinary(t), args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cliResult{Stdout: out.String(), Stderr: errb.String(), Elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run invdeploy %v: %v", args, err)
	}
	return r
}

var (
	treeDirtyOnce sync.Once
	treeIsDirty   bool
)

// treeDirty reports whether the repository has uncommitted changes.
func treeDirty(t *testing.T) bool {
	treeDirtyOnce.Do(func() {
		out, err := exec.Command("git", "-C", repoRoot(t), "status", "--porcelain").Output()
		treeIsDirty = err == nil && len(bytes.TrimSpace(out)) > 0
	})
	return treeIsDirty
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
