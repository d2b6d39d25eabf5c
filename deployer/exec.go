package deployer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Exec is one command run in a running container through the Engine API
// (secret rotate's ALTER ROLE, backup's pg_basebackup).
type Exec struct {
	// Cmd is the command and its arguments.
	Cmd []string
	// User runs it; "" is the container's user.
	User string
	// Stdin, when set, is copied to the command's standard input, which is
	// then closed.
	Stdin io.Reader
	// Stdout receives the standard output; nil keeps it with the standard
	// error for the error message.
	Stdout io.Writer
	// Redact, when set, rewrites the output before it enters an error (a
	// secret the command was given).
	Redact func(string) string
}

// execOutputTail is how much of a failed command's output its error keeps.
const execOutputTail = 4096

// RunExec runs x in container id on eng and waits for it to exit; unless
// it exits 0 it fails with the end of its output (stderr, and stdout when
// x.Stdout is nil).
func RunExec(ctx context.Context, eng Engine, id string, x Exec) error {
	name := x.Cmd[0]
	ex, err := eng.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: x.Cmd, User: x.User,
		AttachStdin: x.Stdin != nil, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return fmt.Errorf("exec %s: %w", name, err)
	}
	att, err := eng.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return fmt.Errorf("exec %s: %w", name, err)
	}
	defer att.Close()
	if x.Stdin != nil {
		if _, err := io.Copy(att.Conn, x.Stdin); err != nil {
			return fmt.Errorf("exec %s: write stdin: %w", name, err)
		}
		if err := att.CloseWrite(); err != nil {
			return fmt.Errorf("exec %s: close stdin: %w", name, err)
		}
	}
	out := &tailBuffer{max: execOutputTail}
	stdout := x.Stdout
	if stdout == nil {
		stdout = out
	}
	if _, err := stdcopy.StdCopy(stdout, out, att.Reader); err != nil {
		return fmt.Errorf("exec %s: read output: %w", name, err)
	}
	// The output can end a moment before the engine records the exit.
	for i := 0; ; i++ {
		ins, err := eng.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return fmt.Errorf("exec %s: %w", name, err)
		}
		if !ins.Running {
			if ins.ExitCode == 0 {
				return nil
			}
			msg := strings.TrimSpace(out.String())
			if x.Redact != nil {
				msg = x.Redact(msg)
			}
			return fmt.Errorf("%s exited with code %d: %s", name, ins.ExitCode, msg)
		}
		if i >= 100 {
			return fmt.Errorf("exec %s: still running 5s after its output ended", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	bytes.Buffer
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n, _ := t.Buffer.Write(p)
	if over := t.Len() - t.max; over > 0 {
		t.Next(over)
		t.cut = true
	}
	return n, nil
}

// String is the tail from its first whole line once the start was cut, so
// that Redact sees every secret whole.
func (t *tailBuffer) String() string {
	s := t.Buffer.String()
	if t.cut {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			return s[i+1:]
		}
		return ""
	}
	return s
}
