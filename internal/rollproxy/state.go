package rollproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// State is what the proxy keeps across its own restarts: the backend the
// last deploy switched to and the release it runs, so a restarted proxy
// serves it at once instead of answering 503 until the next deploy (the
// idea of kamal-proxy's state snapshot).
type State struct {
	Target string `json:"target"`
	Release
}

// maxStateSize bounds what is read of a state file (it holds a few hundred
// bytes).
const maxStateSize = 16 << 10

// stateFile is where the state is kept and what to do when it cannot be
// written (the switch has happened; only the next restart loses it).
type stateFile struct {
	path  string
	onErr func(error)
}

// ParseState reads a state file's content, refusing what the proxy would
// not have written (the file lives on a volume, and a proxy that trusted
// it blindly would route to whatever it names).
func ParseState(b []byte) (State, error) {
	var st State
	if len(b) > maxStateSize {
		return st, fmt.Errorf("state: %d bytes, more than %d", len(b), maxStateSize)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state: %w", err)
	}
	if _, err := splitTarget(st.Target); err != nil {
		return st, fmt.Errorf("state: %w", err)
	}
	if err := st.Release.Validate(); err != nil {
		return st, fmt.Errorf("state: %w", err)
	}
	return st, nil
}

// KeepState makes the proxy keep its state in path (written after every
// switch, atomically; onErr hears of a failed write) and, when path holds
// a state, restores it at once: its target becomes the backend without a
// health wait (it was healthy when the proxy last switched to it; the next
// deploy replaces it as ever). It returns the restored state, or the zero
// State when there was none. Call it before serving.
func (p *Proxy) KeepState(path string, onErr func(error)) (State, error) {
	if onErr == nil {
		onErr = func(error) {}
	}
	p.state = &stateFile{path: path, onErr: onErr}
	b, err := readLimited(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("state %s: %w", path, err)
	}
	st, err := ParseState(b)
	if err != nil {
		return State{}, fmt.Errorf("%s: %w", path, err)
	}
	nb, err := newBackend(st.Target, p.m, p.upstreamTimeout)
	if err != nil {
		return State{}, err
	}
	p.m.release.set(st.Release)
	if old := p.current.Swap(nb); old != nil {
		old.close()
	}
	return st, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxStateSize+1))
}

// saveState writes the state after a switch: a new file renamed over the
// old one, so a crash leaves either the old state or the new.
func (p *Proxy) saveState(target string, rel Release) {
	if p.state == nil {
		return
	}
	b, err := json.Marshal(State{Target: target, Release: rel})
	if err == nil {
		err = WriteFileAtomic(p.state.path, b)
	}
	if err != nil {
		p.state.onErr(fmt.Errorf("keep state in %s: %w", p.state.path, err))
	}
}

// WriteFileAtomic writes b to path through a synced temporary file in the
// same directory and a rename (mode 0600): a crash leaves the old file or
// the new one, never half of one. The HTTPS edge keeps its routes so.
func WriteFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
