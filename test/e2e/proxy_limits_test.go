package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/invdeploy/invdeploy/deployer"
)

// memSampler polls a container's memory use (the engine's stats) until
// stopped, keeping the peak.
type memSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64 // bytes in use, page cache not counted
	max  atomic.Uint64 // the cgroup's own high-water mark (cache included)
}

func sampleMemory(e *localEnv, id string) *memSampler {
	s := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			resp, err := e.docker.ContainerStatsOneShot(context.Background(), id)
			if err == nil {
				var st container.StatsResponse
				if json.NewDecoder(resp.Body).Decode(&st) == nil {
					used := st.MemoryStats.Usage - min(st.MemoryStats.Usage, st.MemoryStats.Stats["cache"])
					if used > s.peak.Load() {
						s.peak.Store(used)
					}
					if st.MemoryStats.MaxUsage > s.max.Load() {
						s.max.Store(st.MemoryStats.MaxUsage)
					}
				}
				resp.Body.Close()
			}
			select {
			case <-s.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *memSampler) finish() (peak, max uint64) {
	close(s.stop)
	<-s.done
	return s.peak.Load(), s.max.Load()
}

// slowSender is one client sending a request body one byte a second.
type slowSender struct {
	conn   net.Conn
	start  time.Time
	ended  atomic.Int64 // ns after start when the proxy answered or closed; 0 while open
	status atomic.Int32 // the answer's status, 0 if none
}

// TestProxyUnderConnectionExhaustion: the rollout proxy `up` creates (its
// memory limit, read-only root, limits as shipped) takes 1,500 idle
// keep-alive connections and 1,000 clients sending a body one byte a
// second, while 8 clients make ordinary requests throughout: not one
// ordinary request fails, the slow senders are cut by the read timeout
// (408), the proxy is neither OOM-killed nor restarted and its memory stays
// under its limit. Then the engine restarts it, and it serves the target
// up deployed at once (its kept state), without waiting for its fallback.
func TestProxyUnderConnectionExhaustion(t *testing.T) {
	const idleConns, slowConns, clients = 1500, 1000, 8
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	e.extra = append(e.extra, "INVDEPLOY_PROXY_BINARY="+proxyBinary(t))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(rollStack), 0o644); err != nil {
		t.Fatal(err)
	}
	proj := project(t, "pxlim")
	e.cleanup(proj)
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	base := "http://" + addr
	e.extra = append(e.extra, "APP_IMAGE=rollapp:e2e-v1", "APP_MODE=ok", "APP_PORT="+strconv.Itoa(port))
	began := time.Now()
	e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "60s")
	t.Logf("up took %s", time.Since(began).Round(time.Second))
	ctx := context.Background()
	ins, err := e.docker.ContainerInspect(ctx, deployer.ProxyName(proj, "app"))
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(ins.HostConfig.Memory)
	if limit == 0 {
		t.Fatal("the proxy container has no memory limit")
	}

	mem := sampleMemory(e, ins.ID)
	load := startLoad(clients, func(c *http.Client) error {
		_, err := getOK(c, base+"/")
		return err
	})
	defer func() {
		select {
		case <-load.stop:
		default:
			load.finish()
		}
	}()

	// The idle: one request each, then the connection is kept and silent.
	var held []net.Conn
	var heldMu sync.Mutex
	var idleOK atomic.Int64
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := 0; i < idleConns; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
				idleOK.Add(1)
			}
			c.SetDeadline(time.Time{})
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()

	// The slow: a header that promises 1 MB, then a byte a second.
	attack := time.Now()
	senders := make([]*slowSender, 0, slowConns)
	for i := 0; i < slowConns; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("slow sender %d: %v", i, err)
		}
		s := &slowSender{conn: c, start: time.Now()}
		senders = append(senders, s)
		defer c.Close()
		if _, err := c.Write([]byte("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n")); err != nil {
			s.ended.Store(int64(time.Since(s.start)))
			continue
		}
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				s.status.Store(int32(resp.StatusCode))
			}
			s.ended.CompareAndSwap(0, int64(time.Since(s.start)))
		}()
		go func() {
			for s.ended.Load() == 0 {
				if _, err := c.Write([]byte("x")); err != nil {
					s.ended.CompareAndSwap(0, int64(time.Since(s.start)))
					return
				}
				time.Sleep(time.Second)
			}
		}()
	}
	t.Logf("attack in place after %s: %d idle connections answered, %d slow senders", time.Since(attack).Round(time.Millisecond), idleOK.Load(), len(senders))

	// Hold the attack past the read timeout (30 s) of the slow senders.
	time.Sleep(42*time.Second - time.Since(attack))
	ok, failed, failures := load.finish()
	peak, maxUsage := mem.finish()
	var cut, answered408 int
	var longest time.Duration
	for _, s := range senders {
		if d := time.Duration(s.ended.Load()); d > 0 {
			cut++
			longest = max(longest, d)
			if s.status.Load() == http.StatusRequestTimeout {
				answered408++
			}
		}
	}
	after, err := e.docker.ContainerInspect(ctx, ins.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("proxy memory under the attack: peak %.1f MiB in use (cgroup high-water mark %.1f MiB), limit %.0f MiB",
		float64(peak)/(1<<20), float64(maxUsage)/(1<<20), float64(limit)/(1<<20))
	t.Logf("ordinary requests: %d ok, %d failed %v; slow senders cut: %d of %d (408: %d, the last after %s); restarts %d, OOM-killed %v",
		ok, failed, failures, cut, len(senders), answered408, longest.Round(time.Second), after.RestartCount, after.State.OOMKilled)
	if after.State.OOMKilled || after.RestartCount != 0 || !after.State.Running {
		t.Fatalf("the proxy died: OOM-killed %v, restarts %d, running %v", after.State.OOMKilled, after.RestartCount, after.State.Running)
	}
	if failed != 0 || ok == 0 {
		t.Fatalf("ordinary requests under the attack: %d ok, %d failed: %v", ok, failed, failures)
	}
	if cut != len(senders) || longest > 40*time.Second {
		t.Fatalf("slow senders: %d of %d cut, the last after %s; want all within the 30 s read timeout", cut, len(senders), longest)
	}
	if answered408 < len(senders)*9/10 {
		t.Fatalf("slow senders: %d of %d answered 408", answered408, len(senders))
	}
	if peak >= limit*7/8 {
		t.Fatalf("proxy memory peaked at %d of its %d bytes", peak, limit)
	}

	// A restart of the proxy: it serves the deployed backend at once.
	for _, c := range held {
		c.Close()
	}
	stopWait := 5
	if err := e.docker.ContainerRestart(ctx, ins.ID, container.StopOptions{Timeout: &stopWait}); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		body, err := getOK(c, base+"/")
		if err == nil {
			if !strings.Contains(body, "version 1") {
				t.Fatalf("after the restart: %q", body)
			}
			break
		}
		if time.Since(restarted) > 8*time.Second {
			t.Fatalf("the restarted proxy did not serve its kept target within 8 s (its fallback waits 10 s): %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("restarted proxy served its kept target %s after the restart", time.Since(restarted).Round(10*time.Millisecond))

	// The image carries its own healthcheck (CIS Docker Benchmark 4.6).
	img, err := e.docker.ImageInspect(ctx, ins.Image)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || img.Config.Healthcheck == nil || strings.Join(img.Config.Healthcheck.Test, " ") != "CMD /invdeploy-proxy healthcheck" {
		t.Fatalf("the proxy image's healthcheck: %+v", img.Config)
	}
}
