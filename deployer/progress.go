package deployer

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress reports what a long operation is doing: on a terminal a live
// status line rewritten in place plus permanent event lines, otherwise plain
// lines only (a live status is printed when it changes). Quiet keeps events
// and live lines out; errors are returned, never printed here.
type Progress struct {
	w     io.Writer
	tty   bool
	quiet bool

	mu   sync.Mutex
	live string
}

// NewProgress writes to w. A terminal is detected when w is an *os.File on a
// character device.
func NewProgress(w io.Writer, quiet bool) *Progress {
	p := &Progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	if w == nil {
		p.w, p.quiet = io.Discard, true
	}
	return p
}

// Discard is a Progress that prints nothing.
func Discard() *Progress { return NewProgress(nil, true) }

// Event prints one permanent line.
func (p *Progress) Event(format string, args ...any) {
	if p == nil || p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.live != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.live = ""
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Live shows a transient status: rewritten in place on a terminal, printed as
// a line otherwise when it differs from the previous one.
func (p *Progress) Live(line string) {
	if p == nil || p.quiet {
		return
	}
	line = strings.TrimRight(line, "\n")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.live = line
		return
	}
	if line != p.live {
		fmt.Fprintln(p.w, line)
		p.live = line
	}
}

// Done ends a live line on a terminal.
func (p *Progress) Done() {
	if p == nil || p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.live != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.live = ""
}

// LiveTimed shows a transient status with its elapsed time on a terminal;
// elsewhere the line is printed only when msg changes, not every second.
func (p *Progress) LiveTimed(msg string, elapsed time.Duration) {
	if p == nil || p.quiet {
		return
	}
	if p.tty {
		p.Live(fmt.Sprintf("%s %ds", msg, int(elapsed.Seconds())))
		return
	}
	p.Live(msg)
}
