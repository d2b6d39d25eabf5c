package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a refused host key: unknown (and not accepted) or changed.
type HostKeyError struct {
	// Address is the host as checked against known_hosts (host or [host]:port).
	Address string
	// KeyType and Fingerprint describe the key the host offered
	// (Fingerprint is "SHA256:..." as ssh-keygen -l prints it).
	KeyType     string
	Fingerprint string
	// Changed is true when known_hosts has a different key for the host.
	Changed bool
	// Known lists the keys known_hosts has for the host, as "file:line".
	Known []string
	// File is the known_hosts file consulted.
	File string
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("the host key of %s has CHANGED: it offered %s %s, but %s holds a different key (%s); "+
			"this may be a man-in-the-middle attack. If the host was rebuilt, verify the new fingerprint on the host "+
			"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and remove the old entry (ssh-keygen -R %s -f %s)",
			e.Address, e.KeyType, e.Fingerprint, e.File, strings.Join(e.Known, ", "), e.Address, e.File)
	}
	return fmt.Sprintf("the host key of %s is unknown: it offered %s %s, which is not in %s. "+
		"Verify this fingerprint on the host (for EC2: the instance's system log, or ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub there), "+
		"then re-run with --accept-new-host-key to add it",
		e.Address, e.KeyType, e.Fingerprint, e.File)
}

// hostKeys checks server host keys against one known_hosts file. With
// acceptNew an unknown host's key is appended to the file; a changed or
// revoked key is always refused.
type hostKeys struct {
	file      string
	acceptNew bool
	notices   io.Writer

	mu      sync.Mutex
	refused error // the last refusal, so the handshake error can be classified
}

func newHostKeys(file string, acceptNew bool, notices io.Writer) *hostKeys {
	if notices == nil {
		notices = io.Discard
	}
	return &hostKeys{file: file, acceptNew: acceptNew, notices: notices}
}

// load reads the known_hosts file; a missing file is an empty database.
func (h *hostKeys) load() (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(h.file); errors.Is(err, fs.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(h.file)
	if err != nil {
		return nil, fmt.Errorf("read known hosts %s: %w", h.file, err)
	}
	return cb, nil
}

// check is the ssh.HostKeyCallback.
func (h *hostKeys) check(address string, remote net.Addr, key ssh.PublicKey) error {
	err := h.verify(address, remote, key)
	if err != nil {
		h.mu.Lock()
		h.refused = err
		h.mu.Unlock()
	}
	return err
}

func (h *hostKeys) verify(address string, remote net.Addr, key ssh.PublicKey) error {
	cb, err := h.load()
	if err != nil {
		return err
	}
	err = cb(address, remote, key)
	if err == nil {
		return nil
	}
	hke := &HostKeyError{
		Address:     knownhosts.Normalize(address),
		KeyType:     key.Type(),
		Fingerprint: ssh.FingerprintSHA256(key),
		File:        h.file,
	}
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		return fmt.Errorf("the host key of %s (%s) is marked @revoked in %s:%d; refusing",
			hke.Address, hke.Fingerprint, revoked.Revoked.Filename, revoked.Revoked.Line)
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return fmt.Errorf("check host key of %s: %w", hke.Address, err)
	}
	if len(ke.Want) > 0 {
		hke.Changed = true
		for _, k := range ke.Want {
			hke.Known = append(hke.Known, fmt.Sprintf("%s:%d %s", k.Filename, k.Line, ssh.FingerprintSHA256(k.Key)))
		}
		return hke
	}
	if !h.acceptNew {
		return hke
	}
	if err := h.add(address, key); err != nil {
		return fmt.Errorf("add host key of %s to %s: %w", hke.Address, h.file, err)
	}
	fmt.Fprintf(h.notices, "Added the host key of %s (%s %s) to %s\n", hke.Address, hke.KeyType, hke.Fingerprint, h.file)
	return nil
}

// add appends a known_hosts line for address.
func (h *hostKeys) add(address string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(h.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(address)}, key)
	// Start on a fresh line even if the file does not end with a newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 && !endsWithNewline(h.file) {
		line = "\n" + line
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func endsWithNewline(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return true
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return true
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// algorithms returns the host key algorithms to ask the server for: those of
// the keys already known for address, so that a host with several keys is
// verified against the one we know instead of looking "changed". Nil means
// no preference (nothing known yet).
func (h *hostKeys) algorithms(address string) []string {
	cb, err := h.load()
	if err != nil {
		return nil
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := cb(address, &net.TCPAddr{IP: net.IPv4zero}, probe); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
