package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultIdentities are tried, when present, after the agent's keys, in the
// order OpenSSH tries them.
var defaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// credentials collects the signers for public-key authentication: explicit
// identity files first, then the agent's keys, then the default identities.
// It returns notes about keys it skipped (never key material), and a closer
// for the agent connection.
func credentials(opts SSHOptions) (signers []ssh.Signer, notes []string, closeAgent func(), err error) {
	closeAgent = func() {}
	for _, file := range opts.IdentityFiles {
		s, err := loadIdentity(file)
		if err != nil {
			return nil, nil, closeAgent, err
		}
		signers = append(signers, s)
	}
	if opts.AgentSocket != "" {
		conn, err := net.Dial("unix", opts.AgentSocket)
		if err != nil {
			notes = append(notes, fmt.Sprintf("ssh-agent at SSH_AUTH_SOCK not reachable (%v)", err))
		} else {
			closeAgent = func() { conn.Close() }
			agentSigners, err := agent.NewClient(conn).Signers()
			if err != nil {
				notes = append(notes, fmt.Sprintf("ssh-agent did not list keys (%v)", err))
			}
			signers = append(signers, agentSigners...)
		}
	}
	if len(opts.IdentityFiles) == 0 && opts.HomeDir != "" {
		for _, name := range defaultIdentities {
			file := filepath.Join(opts.HomeDir, ".ssh", name)
			if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			s, err := loadIdentity(file)
			if err != nil {
				notes = append(notes, err.Error())
				continue
			}
			signers = append(signers, s)
		}
	}
	if len(signers) == 0 {
		msg := "no SSH key to log in with"
		if len(notes) > 0 {
			msg += " (" + strings.Join(notes, "; ") + ")"
		}
		return nil, notes, closeAgent, errors.New(msg)
	}
	return signers, notes, closeAgent, nil
}

// loadIdentity reads an unencrypted private key. An encrypted key needs its
// passphrase, which invdeploy never asks for: load it into ssh-agent instead.
func loadIdentity(file string) (ssh.Signer, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read identity %s: %w", file, err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("identity %s is passphrase-protected: add it to ssh-agent (ssh-add %s)", file, file)
	}
	if err != nil {
		return nil, fmt.Errorf("parse identity %s: %w", file, err)
	}
	return s, nil
}
