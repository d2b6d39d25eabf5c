package deployer

import (
	"io"
	"sync"
)

// LineWriter writes whole lines, each with a prefix; Flush writes a last
// line that has no newline.
type LineWriter interface {
	io.Writer
	Flush()
}

// NewLineWriter returns a LineWriter to out; writers sharing mu never
// interleave their lines (the swarm logs of several services).
func NewLineWriter(out io.Writer, prefix string, mu *sync.Mutex) LineWriter {
	return &prefixWriter{prefix: prefix, out: out, mu: mu}
}
