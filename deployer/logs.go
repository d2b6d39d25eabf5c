package deployer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// LogsOptions control Logs.
type LogsOptions struct {
	// Services limits the output to these services; empty means all.
	Services []string
	// Follow keeps streaming until ctx is cancelled.
	Follow bool
	// Tail is the number of lines per container from the end; <0 means all.
	Tail int
	// Out receives the lines, each prefixed with "<container> | ".
	Out io.Writer
}

// Logs prints the logs of a project's containers with a prefix per
// container, interleaved as they arrive.
func (d *Deployer) Logs(ctx context.Context, project string, o LogsOptions) error {
	cs, err := d.projectContainers(ctx, project, o.Services...)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		if len(o.Services) > 0 {
			return fmt.Errorf("logs: %w: no container of service %s in project %s", ErrNotFound, strings.Join(o.Services, ", "), project)
		}
		return fmt.Errorf("logs: %w: no container in project %s (is it up?)", ErrNotFound, project)
	}
	width := 0
	for _, c := range cs {
		width = max(width, len(containerName(c)))
	}
	tail := "all"
	if o.Tail >= 0 {
		tail = strconv.Itoa(o.Tail)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := fmt.Sprintf("%-*s | ", width, containerName(c))
			pw := &prefixWriter{prefix: prefix, out: o.Out, mu: &mu}
			rc, err := d.engine.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: o.Follow, Tail: tail})
			if err != nil {
				errs <- fmt.Errorf("logs of %s: %w", containerName(c), err)
				return
			}
			defer rc.Close()
			tty := false
			if ins, err := d.engine.ContainerInspect(ctx, c.ID); err == nil && ins.Config != nil {
				tty = ins.Config.Tty
			}
			if tty {
				_, err = io.Copy(pw, rc)
			} else {
				_, err = stdcopy.StdCopy(pw, pw, rc)
			}
			pw.Flush()
			if err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("logs of %s: %w", containerName(c), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// prefixWriter writes whole lines with a prefix, under a shared lock.
type prefixWriter struct {
	prefix string
	out    io.Writer
	mu     *sync.Mutex
	buf    bytes.Buffer
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := w.buf.Next(i + 1)
		w.mu.Lock()
		_, err := fmt.Fprintf(w.out, "%s%s", w.prefix, line)
		w.mu.Unlock()
		if err != nil {
			return len(p), err
		}
	}
}

// Flush writes a last line without a newline.
func (w *prefixWriter) Flush() {
	if w.buf.Len() > 0 {
		w.mu.Lock()
		fmt.Fprintf(w.out, "%s%s\n", w.prefix, w.buf.Bytes())
		w.mu.Unlock()
		w.buf.Reset()
	}
}

// tailLogs returns the last n lines of a container's output, oldest first.
func (d *Deployer) tailLogs(ctx context.Context, id string, n int) ([]string, error) {
	rc, err := d.engine.ContainerLogs(context.WithoutCancel(ctx), id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out bytes.Buffer
	raw, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	if _, err := stdcopy.StdCopy(&out, &out, bytes.NewReader(raw)); err != nil {
		out.Reset()
		out.Write(raw) // a TTY container: not multiplexed
	}
	var lines []string
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lastN(lines, n), nil
}
