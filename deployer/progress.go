package deployer

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	controlapi "github.com/moby/buildkit/api/services/control"

	"github.com/invdeploy/invdeploy/deployer/internal/enginestream"
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

// streamView renders an engine progress stream (build, either builder, or
// pull) on a Progress: classic build steps and finished BuildKit steps as
// events, everything else as the live line. It keeps the last lines of
// output so that a failure can show them.
type streamView struct {
	out *Progress
	// tail is the last output lines, for a failure's context.
	tail []string
	// BuildKit vertices by digest: name, and whether reported complete.
	names map[string]string
	done  map[string]bool
}

func newStreamView(out *Progress) *streamView {
	return &streamView{out: out, names: map[string]string{}, done: map[string]bool{}}
}

const tailLines = 10

func (v *streamView) keep(line string) {
	v.tail = append(v.tail, line)
	if len(v.tail) > tailLines {
		v.tail = v.tail[1:]
	}
}

// show renders one message of the stream.
func (v *streamView) show(m *enginestream.Message) error {
	if st, ok, err := enginestream.Trace(m); ok {
		if err != nil {
			return err
		}
		v.buildkit(st)
		return nil
	}
	if m.Stream != "" {
		for _, line := range strings.Split(strings.TrimRight(m.Stream, "\n"), "\n") {
			line = strings.TrimRight(line, "\r")
			if line == "" {
				continue
			}
			v.keep(line)
			if strings.HasPrefix(line, "Step ") {
				v.out.Event("  %s", line)
			} else {
				v.out.Live("  " + line)
			}
		}
	}
	if m.Status != "" {
		line := m.Status
		if m.ID != "" {
			line = m.ID + ": " + line
		}
		if p := m.Progress; p != nil && p.Total > 0 {
			line += fmt.Sprintf(" %s/%s", units.BytesSize(float64(p.Current)), units.BytesSize(float64(p.Total)))
		}
		v.out.Live("  " + line)
	}
	return nil
}

// buildkit renders one BuildKit status update: a step that finished becomes
// a permanent line like the classic builder's "Step N/M" (with CACHED or its
// time), a running step, transfer or output line is the live line. Internal
// steps (loading the context and the Dockerfile) stay live only.
func (v *streamView) buildkit(st *controlapi.StatusResponse) {
	for _, vx := range st.Vertexes {
		if vx.Name != "" {
			v.names[vx.Digest] = vx.Name
		}
		name := v.names[vx.Digest]
		internal := strings.HasPrefix(name, "[internal]")
		switch {
		case vx.Completed == nil:
			if vx.Started != nil {
				v.out.Live("  " + name)
			}
		case v.done[vx.Digest]:
		case vx.Error != "":
			v.done[vx.Digest] = true
			v.out.Event("  %s: ERROR %s", name, vx.Error)
		case vx.Cached:
			v.done[vx.Digest] = true
			if !internal {
				v.out.Event("  %s CACHED", name)
			}
		default:
			v.done[vx.Digest] = true
			switch {
			case internal:
			case vx.Started == nil:
				v.out.Event("  %s", name)
			default:
				d := vx.Completed.AsTime().Sub(vx.Started.AsTime())
				v.out.Event("  %s %.1fs", name, d.Seconds())
			}
		}
	}
	for _, s := range st.Statuses {
		line := "  " + s.ID
		if s.Total > 0 {
			line += fmt.Sprintf(" %s/%s", units.BytesSize(float64(s.Current)), units.BytesSize(float64(s.Total)))
		}
		if s.Completed == nil {
			v.out.Live(line)
		}
	}
	for _, l := range st.Logs {
		for _, line := range strings.Split(strings.TrimRight(string(l.Msg), "\n"), "\n") {
			line = strings.TrimRight(line, "\r")
			if line == "" {
				continue
			}
			v.keep(line)
			v.out.Live("  " + line)
		}
	}
}

// fail adds the last output lines to a stream's error.
func (v *streamView) fail(err error) error {
	if len(v.tail) == 0 {
		return err
	}
	return fmt.Errorf("%w\n%s", err, strings.Join(v.tail, "\n"))
}
