package main

import (
	"os"
	"regexp"
	"strings"

	"github.com/invdeploy/invdeploy/deployer/remote"
)

// The hints printed after a command (Stop: invdeploy down ...) carry the
// flags that chose the stack and the engine: a bare `invdeploy down` after
// `up -p shop`, run from the repository, would stop the default stack.

// hintFlags are the flags of s that select the same stack again for the
// command verb, e.g. " -f shop.yaml -p shop" (--file for logs, whose -f means
// follow).
func (s *stackOptions) hintFlags(verb string) string {
	fileFlag := "-f"
	if strings.HasPrefix(verb, "logs") {
		fileFlag = "--file"
	}
	var b strings.Builder
	for _, f := range s.Files {
		b.WriteString(" " + fileFlag + " " + shellQuote(f))
	}
	if s.Project != "" {
		b.WriteString(" -p " + shellQuote(s.Project))
	}
	return b.String()
}

// localHint is a local command line for a hint: "invdeploy VERB" with the
// -H given to this run and the stack's flags.
func localHint(g *globalOptions, s *stackOptions, verb string) string {
	h := ""
	if g.Host != "" {
		h = " -H " + shellQuote(g.Host)
	}
	return "invdeploy" + h + " " + verb + s.hintFlags(verb)
}

// remoteHint is a remote command line for a hint: the engine address (from
// --host or DOCKER_HOST, with any password redacted), the identity files
// given and the stack's flags.
func remoteHint(g *globalOptions, ro *remoteOptions, s *stackOptions, verb string) string {
	host := g.Host
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	var b strings.Builder
	b.WriteString("invdeploy remote " + verb + " --host " + shellQuote(remote.Redact(host)))
	for _, id := range ro.identities {
		b.WriteString(" -i " + shellQuote(id))
	}
	b.WriteString(s.hintFlags(verb))
	return b.String()
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
