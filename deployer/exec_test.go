package deployer

import (
	"strings"
	"testing"
)

// A failed exec's error keeps the end of the output from a whole line on,
// so a secret the start of the tail would cut in half is never left
// partly unredacted.
func TestExecTailStartsAtAWholeLine(t *testing.T) {
	secret := "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
	tb := &tailBuffer{max: 64}
	tb.Write([]byte("LINE 1: ALTER ROLE x PASSWORD '" + secret + "'\nERROR: boom\n"))
	got := tb.String()
	if got != "ERROR: boom\n" {
		t.Fatalf("tail %q, want the last whole line", got)
	}
	short := &tailBuffer{max: 4096}
	short.Write([]byte("a\n" + secret))
	if !strings.Contains(short.String(), secret) || !strings.HasPrefix(short.String(), "a\n") {
		t.Fatalf("an uncut output changed: %q", short.String())
	}
}
