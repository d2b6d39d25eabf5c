package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

// TestHints: every hint is built by commandLine and can be pasted: it names
// the program as invoked (a path as given, else invdeploy), carries -f/--file,
// -p, --profile, -H and --engine-timeout as given, and remote hints every
// connection flag (-i, --known-hosts, --ssh-config, TLS files, a non-default
// --connect-timeout); logs gets --file because its -f means follow; a
// password in the host URL never reaches a hint.
func TestHints(t *testing.T) {
	g := func(argv0, host string) *globalOptions {
		return &globalOptions{argv0: argv0, Host: host, EngineTimeout: deployer.DefaultCallTimeout}
	}
	stack := &stackOptions{Files: []string{"deploy/shop.yaml", "over ride.yaml"}, Project: "shop"}
	conn := &remoteOptions{identities: []string{"~/.ssh/ec2"}, knownHosts: "/tmp/kh", sshConfig: "none", connectTimeout: defaultConnectTimeout}
	slow := g("invdeploy", "")
	slow.EngineTimeout = time.Minute
	for _, tc := range []struct {
		got, want string
	}{
		{localHint(g("invdeploy", ""), stack, "down"), "invdeploy down -f deploy/shop.yaml -f 'over ride.yaml' -p shop"},
		{localHint(g("./bin/invdeploy", ""), stack, "logs -f"), "./bin/invdeploy logs -f --file deploy/shop.yaml --file 'over ride.yaml' -p shop"},
		{localHint(g("/opt/my tools/invdeploy", ""), &stackOptions{}, "status"), "'/opt/my tools/invdeploy' status"},
		{localHint(g("/tmp/go-build123/b001/exe/invdeploy", ""), &stackOptions{}, "status"), "invdeploy status"},
		{localHint(g("invdeploy", "unix:///run/user/1000/docker.sock"), &stackOptions{}, "status"), "invdeploy -H unix:///run/user/1000/docker.sock status"},
		{localHint(g("invdeploy", ""), &stackOptions{Project: "it's"}, "down"), `invdeploy down -p 'it'\''s'`},
		{localHint(g("invdeploy", ""), &stackOptions{Profiles: []string{"monitoring"}}, "up"), "invdeploy up --profile monitoring"},
		{localHint(slow, &stackOptions{}, "status"), "invdeploy status --engine-timeout 1m0s"},
		{remoteHint(g("./bin/invdeploy", "ssh://admin@203.0.113.7:2222"), conn, stack, "down"),
			"./bin/invdeploy remote down --host ssh://admin@203.0.113.7:2222 -i ~/.ssh/ec2 --known-hosts /tmp/kh --ssh-config none -f deploy/shop.yaml -f 'over ride.yaml' -p shop"},
		{remoteHint(g("invdeploy", "tcp://203.0.113.7:2376"), &remoteOptions{tlsCA: "ca.pem", tlsCert: "cert.pem", tlsKey: "key.pem", connectTimeout: 5 * time.Second}, &stackOptions{}, "status"),
			"invdeploy remote status --host tcp://203.0.113.7:2376 --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem --connect-timeout 5s"},
		{remoteHint(g("invdeploy", "ssh://admin:hunter2@h"), &remoteOptions{connectTimeout: defaultConnectTimeout}, &stackOptions{}, "status"), "invdeploy remote status --host ssh://admin:xxxxx@h"},
		{g("./bin/invdeploy", "").commandLine("--help"), "./bin/invdeploy --help"},
	} {
		if tc.got != tc.want {
			t.Errorf("hint\n got %s\nwant %s", tc.got, tc.want)
		}
	}
}

// TestRemoteRefusalHint: a local command given another machine's engine
// suggests a remote command that remote accepts: plain tcp (2375) and http
// become ssh:// to the same host, TLS stays tcp://HOST:2376, a password is
// dropped (remote refuses it), and the stack flags given come along.
func TestRemoteRefusalHint(t *testing.T) {
	cmdWith := func(name string, args ...string) *cobra.Command {
		var s stackOptions
		c := &cobra.Command{Use: name}
		s.bind(c, true)
		if err := c.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	g := &globalOptions{argv0: "./bin/invdeploy"}
	for _, tc := range []struct {
		cmd        *cobra.Command
		host, want string
	}{
		{cmdWith("up", "-f", "shop.yaml", "-p", "shop"), "tcp://203.0.113.7:2375", "./bin/invdeploy remote up --host ssh://203.0.113.7 -f shop.yaml -p shop"},
		{cmdWith("down", "--profile", "monitoring"), "http://203.0.113.7:2375", "./bin/invdeploy remote down --host ssh://203.0.113.7 --profile monitoring"},
		{cmdWith("logs"), "tcp://[2001:db8::7]:2375", "./bin/invdeploy remote logs --host 'ssh://[2001:db8::7]'"},
		{cmdWith("status"), "tcp://203.0.113.7:2376", "./bin/invdeploy remote status --host tcp://203.0.113.7:2376"},
		{cmdWith("status"), "https://203.0.113.7", "./bin/invdeploy remote status --host tcp://203.0.113.7:2376"},
		{cmdWith("check"), "ssh://root:hunter2@203.0.113.7", "./bin/invdeploy remote status --host ssh://root@203.0.113.7"},
		{cmdWith("rollback"), "ssh://admin@ec2.example.com:2222", "./bin/invdeploy remote rollback --host ssh://admin@ec2.example.com:2222"},
	} {
		if got := remoteRefusalHint(g, tc.cmd, tc.host); got != tc.want {
			t.Errorf("%s -H %s\n got %s\nwant %s", tc.cmd.Name(), tc.host, got, tc.want)
		}
	}
}

// FuzzRemoteRefusalHint: whatever -H or DOCKER_HOST holds, the suggested
// remote command and the address in the refusal are built without a panic
// and never carry a password.
func FuzzRemoteRefusalHint(f *testing.F) {
	for _, h := range []string{"tcp://203.0.113.7:2375", "ssh://root:hunter2@h", "http://u:pw-secret@[::1]:2375/x", "https://h", "tcp://:0", "ssh://a:b:c@d"} {
		f.Add(h)
	}
	g := &globalOptions{argv0: "invdeploy"}
	f.Fuzz(func(t *testing.T, host string) {
		got := remoteRefusalHint(g, nil, host)
		u, err := url.Parse(host)
		if err != nil || u.User == nil {
			return
		}
		if pw, ok := u.User.Password(); ok && len(pw) >= 4 && !strings.Contains(strings.Replace(host, pw, "", 1), pw) {
			if strings.Contains(got, pw) {
				t.Fatalf("hint %q carries the password of %q", got, host)
			}
			if r := redactHost(host); strings.Contains(r, pw) {
				t.Fatalf("redactHost(%q) = %q carries the password", host, r)
			}
		}
	})
}
