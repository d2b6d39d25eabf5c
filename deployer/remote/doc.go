// Package remote connects invdeploy to a Docker engine on another machine.
//
// An ssh:// host is reached over exactly one SSH connection per invdeploy run
// (golang.org/x/crypto/ssh): every Engine API request opens a
// "direct-streamlocal@openssh.com" channel on that connection to the remote
// engine's unix socket, so the host needs only sshd and Docker, and sshd's
// MaxSessions and MaxStartups never limit a deploy. Host keys are checked
// against known_hosts and never skipped silently. A tcp:// host needs TLS
// client certificates unless it is a loopback address.
//
// The package also moves images to the remote engine (Transfer) and runs the
// checks that only a remote deploy needs (Preflight).
package remote
