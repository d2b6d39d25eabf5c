// Package testbed gives end-to-end tests the real parts a deployment tool is
// tested against, scripted in testbed.sh next to this file: an authenticated
// registry (Debian's docker-registry with htpasswd) and a simulated EC2 host
// (an independent dockerd in its own network namespace, reachable only over
// SSH with a key, its host key known to the tests).
//
// Each Start* call takes a free slot (several test binaries run at once),
// brings its parts up, and registers a cleanup that tears them down, also
// when the test fails. A slot a crashed run left behind is cleaned by the
// next run that takes it. Under CI=true a missing prerequisite fails the
// test instead of skipping it (see internal/testenv).
package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/internal/testenv"
)

// Registry is the test bed's registry.
type Registry struct {
	// Addr is host:port on loopback, plain HTTP (engines treat loopback
	// registries as insecure, so no TLS is needed to push or pull here).
	Addr string
	// User is the htpasswd user.
	User string
	// PasswordFile holds the password (mode 0600); read it with Password.
	PasswordFile string
	// EC2Addr is host:port of the same registry as the simulated EC2 host
	// reaches it (TLS, its CA trusted by the engines through
	// /etc/docker/certs.d); empty when the bed has no EC2 host.
	EC2Addr string
	// CAFile is the CA certificate of the EC2Addr listener.
	CAFile string
	// Log is the registry's log file.
	Log string
}

// Password returns the registry password. Never log it.
func (r *Registry) Password(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		t.Fatalf("read registry password: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// Host is the simulated EC2 host.
type Host struct {
	// Addr is the host's address, reachable from this machine only.
	Addr string
	// Gateway is this machine's address as the host sees it.
	Gateway string
	// User is the SSH login (root, as on an EC2 Docker host set up by hand).
	User string
	// Netns names the host's network namespace (/var/run/netns/NAME).
	Netns string
	// Socket is the path of the host engine's unix socket, for inspecting
	// the host directly from tests (the product goes through SSH).
	Socket string
	// SSHKey is the client's private key; SSHConfig an ssh -F config with
	// that key and the pinned host key; KnownHosts holds the host key.
	SSHKey, SSHConfig, KnownHosts string
	// SSHPath is a directory with an `ssh` that uses SSHConfig: put it first
	// on PATH for tools that run ssh (the docker CLI with ssh:// hosts).
	SSHPath string
	// SSHDLog is sshd's log (LogLevel VERBOSE: one "Accepted publickey" line
	// per connection). DockerdLog is the host engine's log.
	SSHDLog, DockerdLog string
}

// URL is the host's Docker address over SSH, ssh://root@ADDR.
func (h *Host) URL() string { return "ssh://" + h.User + "@" + h.Addr }

// Accepted counts the SSH connections sshd has accepted so far.
func (h *Host) Accepted(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(h.SSHDLog)
	if err != nil {
		t.Fatalf("read sshd log: %v", err)
	}
	return strings.Count(string(b), "Accepted publickey")
}

// Bed is one running instance of the test bed.
type Bed struct {
	// Slot is the instance number (1..200); Dir holds its state and logs.
	Slot int
	Dir  string
	// Registry is nil when it was not asked for; so is EC2.
	Registry *Registry
	EC2      *Host
	// Swarm is nil unless StartSwarm brought it up.
	Swarm *Swarm
}

// Swarm is three simulated EC2 hosts on one Linux bridge, each with its own
// dockerd and sshd (one client key and one known_hosts for all three), ready
// to be made a swarm. This machine is Gateway on that bridge.
type Swarm struct {
	// Slot is the bed's slot; Nodes are its three hosts, in order.
	Slot  int
	Nodes []SwarmNode
	// Gateway is this machine's address on the hosts' bridge.
	Gateway string
	// SSHKey is the client's private key, KnownHosts holds the three host
	// keys, SSHConfig is an ssh -F config for all three.
	SSHKey, KnownHosts, SSHConfig string
}

// SwarmNode is one host of the swarm test bed.
type SwarmNode struct {
	// Name is the host's hostname (sw1, sw2, sw3), as `docker node ls` shows it.
	Name string
	// Addr is the host's address on the bridge.
	Addr string
	// Netns names its network namespace; Socket is its engine's unix socket,
	// for inspecting it directly from tests (the product goes through SSH).
	Netns, Socket string
	// DockerdLog is its engine's log; PidFile holds its dockerd's pid.
	DockerdLog, PidFile string
}

// KillNode SIGKILLs everything host i (0-based) runs but its sshd: its
// dockerd, containerd and containers, as when a machine is lost.
func (s *Swarm) KillNode(t testing.TB, i int) { s.nodeScript(t, "swarm-node-kill", i) }

// StartNode starts host i's dockerd again with its data (it rejoins the
// swarm it was in) and waits until it answers.
func (s *Swarm) StartNode(t testing.TB, i int) { s.nodeScript(t, "swarm-node-start", i) }

func (s *Swarm) nodeScript(t testing.TB, cmd string, i int) {
	t.Helper()
	c := exec.Command("bash", Script(), cmd, strconv.Itoa(s.Slot))
	c.Env = append(os.Environ(), "TESTBED_QUIET=1", "TESTBED_NODE="+strconv.Itoa(i+1))
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s sw%d: %v\n%s", cmd, i+1, err, out)
	}
}

// URL is the node's Docker address over SSH, ssh://root@ADDR.
func (n SwarmNode) URL() string { return "ssh://root@" + n.Addr }

// Start brings up the whole test bed: the EC2 host and the registry, which
// the host can pull from at Registry.EC2Addr.
func Start(t testing.TB) *Bed { return start(t, "up") }

// StartSwarm brings up the three swarm hosts (not yet a swarm) in a slot of
// their own and tears them down when t ends. One package shares one: start it
// in the package's one swarm test and run the cases as its subtests.
func StartSwarm(t testing.TB) *Swarm { return start(t, "swarm-up").Swarm }

// StartRegistry brings up only the registry (on loopback).
func StartRegistry(t testing.TB) *Registry { return start(t, "registry-up").Registry }

const maxSlot = 200

func start(t testing.TB, cmd string) *Bed {
	t.Helper()
	need(t, cmd)
	slot, unlock := takeSlot(t)
	bed := &Bed{Slot: slot}
	// Registered first so it runs last, after the teardown below.
	t.Cleanup(unlock)
	t.Cleanup(func() {
		if out, err := script(t, "down", slot); err != nil {
			t.Errorf("tear down test bed slot %d: %v\n%s", slot, err, out)
		}
	})
	if out, err := script(t, cmd, slot); err != nil {
		t.Fatalf("bring up test bed (%s, slot %d): %v\n%s", cmd, slot, err, out)
	}
	env, dir, err := readEnv(slot)
	if err != nil {
		t.Fatalf("read test bed description: %v", err)
	}
	bed.Dir = dir
	if env["REGISTRY_ADDR"] != "" {
		bed.Registry = &Registry{
			Addr: env["REGISTRY_ADDR"], User: env["REGISTRY_USER"], PasswordFile: env["REGISTRY_PASSWORD_FILE"],
			EC2Addr: env["REGISTRY_EC2_ADDR"], CAFile: env["REGISTRY_EC2_CA"], Log: env["REGISTRY_LOG"],
		}
	}
	if env["EC2_ADDR"] != "" {
		bed.EC2 = &Host{
			Addr: env["EC2_ADDR"], Gateway: env["EC2_GATEWAY"], User: env["EC2_USER"], Netns: env["EC2_NETNS"],
			Socket: env["EC2_SOCKET"], SSHKey: env["EC2_SSH_KEY"], SSHConfig: env["EC2_SSH_CONFIG"],
			KnownHosts: env["EC2_KNOWN_HOSTS"], SSHPath: env["EC2_SSH_PATH"],
			SSHDLog: env["EC2_SSHD_LOG"], DockerdLog: env["EC2_DOCKERD_LOG"],
		}
	}
	if env["SWARM_SSH_KEY"] != "" {
		sw := &Swarm{Slot: slot, Gateway: env["SWARM_GATEWAY"], SSHKey: env["SWARM_SSH_KEY"],
			KnownHosts: env["SWARM_KNOWN_HOSTS"], SSHConfig: env["SWARM_SSH_CONFIG"]}
		for i := 1; i <= 3; i++ {
			k := "SWARM_NODE" + strconv.Itoa(i) + "_"
			sw.Nodes = append(sw.Nodes, SwarmNode{
				Name: "sw" + strconv.Itoa(i), Addr: env[k+"ADDR"], Netns: env[k+"NETNS"], Socket: env[k+"SOCKET"],
				DockerdLog: env[k+"DOCKERD_LOG"], PidFile: filepath.Join(dir, "swarm", "n"+strconv.Itoa(i), "dockerd.pid.engine"),
			})
		}
		bed.Swarm = sw
	}
	return bed
}

// need checks the prerequisites of the parts cmd brings up.
func need(t testing.TB, cmd string) {
	t.Helper()
	if testing.Short() && !testenv.InCI() {
		t.Skip("test bed: skipped with -short")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root, for the test bed (network namespaces, a second dockerd, /etc/docker/certs.d)")
	}
	testenv.NeedDocker(t)
	cmds := []string{"bash", "curl", "ss"}
	if cmd != "registry-up" {
		cmds = append(cmds, "ip", "nsenter", "unshare", "dockerd", "ssh-keygen", "ssh", "docker")
		if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
			testenv.Missing(t, "/usr/sbin/sshd (openssh-server; make deps installs it)")
		}
	}
	if cmd == "swarm-up" {
		cmds = append(cmds, "iptables")
	}
	if cmd == "up" || cmd == "registry-up" {
		cmds = append(cmds, "docker-registry", "htpasswd", "openssl")
	}
	for _, c := range cmds {
		testenv.NeedCommand(t, c)
	}
}

// takeSlot locks the first free slot for the life of the test. The lock is
// a flock, so a crashed test binary frees its slot.
func takeSlot(t testing.TB) (int, func()) {
	t.Helper()
	dir := "/run/lock/invdeploy-testbed"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test bed locks: %v", err)
	}
	for slot := 1; slot <= maxSlot; slot++ {
		f, err := os.OpenFile(filepath.Join(dir, "slot-"+strconv.Itoa(slot)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatalf("test bed lock: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return slot, func() { f.Close() }
	}
	t.Fatalf("all %d test bed slots are taken", maxSlot)
	return 0, nil
}

// Script is the path of testbed.sh.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testbed.sh")
}

func script(t testing.TB, cmd string, slot int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", Script(), cmd, strconv.Itoa(slot))
	c.Env = append(os.Environ(), "TESTBED_QUIET=1")
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	// The daemons the script starts keep no handle on our pipes, but let
	// Wait return even if one did.
	c.WaitDelay = 10 * time.Second
	err := c.Run()
	return out.Bytes(), err
}

func readEnv(slot int) (map[string]string, string, error) {
	root := os.Getenv("INVDEPLOY_TESTBED_ROOT")
	if root == "" {
		root = "/var/lib/invdeploy-testbed"
	}
	dir := filepath.Join(root, "slot-"+strconv.Itoa(slot))
	f, err := os.Open(filepath.Join(dir, "testbed.env"))
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			return nil, "", fmt.Errorf("testbed.env: malformed line %q", sc.Text())
		}
		env[k] = v
	}
	return env, dir, sc.Err()
}
