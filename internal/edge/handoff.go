package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// The hand-off lets a new edge take the listening sockets of the running
// one, so that an upgrade of the edge loses no connection: both processes
// accept from the very same sockets (one accept queue, not two as with
// SO_REUSEPORT, where the queue of the one that closes is reset) until the
// old one, told to stop, closes its copies and finishes what it serves.
// The sockets travel over a unix socket in the data directory both edges
// mount (SCM_RIGHTS); host networking keeps them in the host's network
// namespace whichever container holds them.

// handoffHello is the first message of a hand-off: which listener each
// passed descriptor is, in order.
type handoffHello struct {
	Names []string `json:"names"`
}

// serveHandoff passes the files to every process that connects to path
// until ln is closed.
func serveHandoff(ln *net.UnixListener, names []string, files []*os.File) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fds := make([]int, len(files))
			for i, f := range files {
				fds[i] = int(f.Fd())
			}
			b, _ := json.Marshal(handoffHello{Names: names})
			_, _, _ = c.WriteMsgUnix(b, syscall.UnixRights(fds...), nil)
		}()
	}
}

// takeHandoff asks the edge serving path for its listeners; it returns
// them by name, or nil when no edge answers there.
func takeHandoff(path string) (map[string]net.Listener, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, nil // no edge runs: bind afresh
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(4*8))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("hand-off: read: %w", err)
	}
	var hello handoffHello
	if err := json.Unmarshal(buf[:n], &hello); err != nil {
		return nil, fmt.Errorf("hand-off: %w", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("hand-off: no descriptors received")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, fmt.Errorf("hand-off: %w", err)
	}
	if len(fds) != len(hello.Names) {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("hand-off: %d descriptors for %d names", len(fds), len(hello.Names))
	}
	out := map[string]net.Listener{}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), hello.Names[i])
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hand-off: listener %s: %w", hello.Names[i], err)
		}
		out[hello.Names[i]] = ln
	}
	return out, nil
}

// listenerFile is a duplicate of ln's socket, to pass on.
func listenerFile(ln net.Listener) (*os.File, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("listener %s is not TCP", ln.Addr())
	}
	return tl.File()
}

// sameAddr reports whether a handed-off listener is bound where want
// says (":443" matches any address on port 443).
func sameAddr(ln net.Listener, want string) bool {
	wh, wp, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	gh, gp, err := net.SplitHostPort(ln.Addr().String())
	if err != nil || gp != wp {
		return false
	}
	unspecified := func(h string) bool { ip := net.ParseIP(h); return h == "" || ip != nil && ip.IsUnspecified() }
	return wh == gh || unspecified(wh) && unspecified(gh)
}
