package main

import (
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/deployer/remote"
)

// Every command line invdeploy prints for the user to run (Stop: ... down,
// run ... up, Run '... --help') is built by commandLine, so that it can be
// pasted as is: it names the program as the user invoked it (./bin/invdeploy
// after `make build`), quotes what the shell would split, and carries the
// flags that chose the stack and the engine: a bare `invdeploy down` after
// `up -p shop`, run from the repository, would stop the default stack, and a
// remote hint without --known-hosts fails the host-key check.

// commandLine is a command line to paste: the program as invoked (see
// programName), then args, each quoted for a POSIX shell when needed.
func (g *globalOptions) commandLine(args ...string) string {
	words := make([]string, 0, len(args)+1)
	words = append(words, shellQuote(programName(g.argv0)))
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// programName is how a hint names invdeploy: argv0 when the user ran it by
// a path (./bin/invdeploy, /opt/invdeploy/bin/invdeploy), else "invdeploy"
// (found on PATH, or a `go run` binary whose temporary path is gone after).
func programName(argv0 string) string {
	if !strings.ContainsRune(argv0, '/') || strings.Contains(argv0, "/go-build") {
		return "invdeploy"
	}
	return argv0
}

// hintArgs are the flags of s that select the same stack again for the
// command verb, e.g. [-f shop.yaml -p shop] (--file for logs, whose -f means
// follow).
func (s *stackOptions) hintArgs(verb string) []string {
	fileFlag := "-f"
	if strings.HasPrefix(verb, "logs") {
		fileFlag = "--file"
	}
	var args []string
	for _, f := range s.Files {
		args = append(args, fileFlag, f)
	}
	if s.Project != "" {
		args = append(args, "-p", s.Project)
	}
	for _, p := range s.Profiles {
		args = append(args, "--profile", p)
	}
	return args
}

// localHint is a local command line for a hint: verb (e.g. "logs -f") with
// the -H given to this run and the stack's flags.
func localHint(g *globalOptions, s *stackOptions, verb string) string {
	var args []string
	if g.Host != "" {
		args = append(args, "-H", g.Host)
	}
	args = append(args, strings.Fields(verb)...)
	args = append(args, g.engineTimeoutArgs()...)
	return g.commandLine(append(args, s.hintArgs(verb)...)...)
}

// remoteHint is a remote command line for a hint: the engine address (from
// --host or DOCKER_HOST, with any password redacted), every connection flag
// given to this run and the stack's flags.
func remoteHint(g *globalOptions, ro *remoteOptions, s *stackOptions, verb string) string {
	host := g.Host
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	args := append([]string{"remote"}, strings.Fields(verb)...)
	args = append(args, "--host", remote.Redact(host))
	args = append(args, ro.hintArgs()...)
	args = append(args, g.engineTimeoutArgs()...)
	return g.commandLine(append(args, s.hintArgs(verb)...)...)
}

// hintArgs are the connection flags given to this run (those whose value
// is not the default): the pasted command must log in and check the host
// key as this one did. --accept-new-host-key is left out: this run has
// recorded the key.
func (o *remoteOptions) hintArgs() []string {
	var args []string
	for _, id := range o.identities {
		args = append(args, "-i", id)
	}
	for _, f := range []struct{ flag, value string }{
		{"--known-hosts", o.knownHosts}, {"--ssh-config", o.sshConfig},
		{"--tlscacert", o.tlsCA}, {"--tlscert", o.tlsCert}, {"--tlskey", o.tlsKey},
	} {
		if f.value != "" {
			args = append(args, f.flag, f.value)
		}
	}
	if o.connectTimeout != 0 && o.connectTimeout != defaultConnectTimeout {
		args = append(args, "--connect-timeout", o.connectTimeout.String())
	}
	return args
}

// engineTimeoutArgs carry --engine-timeout when this run was given another
// than the default.
func (g *globalOptions) engineTimeoutArgs() []string {
	if g.EngineTimeout == deployer.DefaultCallTimeout {
		return nil
	}
	return []string{"--engine-timeout", g.EngineTimeout.String()}
}

// defaultConnectTimeout is --connect-timeout's default.
const defaultConnectTimeout = 20 * time.Second

// remoteVerbs are the local commands the remote command also has.
var remoteVerbs = map[string]bool{"up": true, "down": true, "status": true, "logs": true, "releases": true, "rollback": true, "lock": true}

// remoteRefusalHint is what a local command run against another machine's
// engine (host) suggests instead: the same command under remote (status
// for commands remote has not), with the stack flags cmd was given, at an
// address remote accepts: a plain tcp:// or http:// engine is reached over
// SSH (remote refuses unencrypted tcp to another machine), a TLS one (port
// 2376, https://) as given.
func remoteRefusalHint(g *globalOptions, cmd *cobra.Command, host string) string {
	verb := "status"
	if cmd != nil && remoteVerbs[cmd.Name()] {
		verb = cmd.Name()
	}
	target := remote.Redact(host)
	if u, err := url.Parse(host); err == nil {
		if u.User != nil {
			// remote refuses a password in the URL: suggest the key login.
			u.User = url.User(u.User.Username())
			target = u.String()
		}
		switch {
		case u.Hostname() == "":
		case u.Scheme == "https":
			port := u.Port()
			if port == "" {
				port = "2376"
			}
			target = "tcp://" + net.JoinHostPort(u.Hostname(), port)
		case u.Scheme == "http", u.Scheme == "tcp" && u.Port() != "2376":
			target = "ssh://" + u.Hostname()
			if strings.Contains(u.Hostname(), ":") {
				target = "ssh://[" + u.Hostname() + "]"
			}
		}
	}
	args := []string{"remote", verb, "--host", target}
	if cmd != nil {
		args = append(args, givenFlags(cmd, verb, "file", "project-name", "profile")...)
	}
	return g.commandLine(args...)
}

// givenFlags are the flags of cmd among names that the user gave, as
// arguments (repeated flags repeated), for the same verb under another
// command.
func givenFlags(cmd *cobra.Command, verb string, names ...string) []string {
	s := stackOptions{}
	fs := cmd.Flags()
	for _, n := range names {
		if !fs.Changed(n) {
			continue
		}
		switch n {
		case "file":
			s.Files, _ = fs.GetStringArray(n)
		case "profile":
			s.Profiles, _ = fs.GetStringArray(n)
		case "project-name":
			s.Project, _ = fs.GetString(n)
		}
	}
	return s.hintArgs(verb)
}

// redactHost is host for a message, any password in it replaced: as the
// URL parser reads it (it finds a user:password@ that remote.Redact, which
// also takes malformed addresses, may miss), else as remote.Redact does.
func redactHost(host string) string {
	if u, err := url.Parse(host); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return remote.Redact(host)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%_+=:,./~-]+$`)

// shellQuote quotes v for a POSIX shell when it holds anything but plain
// characters, so a hint can be pasted as is.
func shellQuote(v string) string {
	if shellSafe.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
