// Command loadgen sends HTTP requests at a fixed rate (open loop) and prints
// the latency percentiles, for make bench-api's "p99 at half the measured
// maximum load". wrk is closed-loop (a slow response delays the next
// request, hiding the queueing it caused) and wrk2 is not packaged here, so
// each request's latency is measured from the moment it was scheduled to be
// sent, not from when a connection was free to send it. Requests go over
// plain keep-alive TCP connections with pre-built HTTP/1.1 requests, so the
// generator costs a fraction of the CPU of the server it measures (with
// net/http's client it cost about as much, and on 2 cores that alone
// saturated the machine at half the server's maximum).
//
//	loadgen -url http://127.0.0.1:8000/v1/invoices -rate 1000 -duration 5s [-body FILE] [-ids FILE]
//
// prints one line: "requests errors achieved_rate p50_ms p99_ms".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "target URL; with -ids, a random id is appended as a last path segment")
	bodyFile := flag.String("body", "", "POST this file's content as application/json (else GET)")
	idsFile := flag.String("ids", "", "file of ids, one a line")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	conns := flag.Int("conns", 64, "most requests in flight (connections)")
	flag.Parse()
	if *url == "" || *rate <= 0 {
		return fmt.Errorf("-url and a positive -rate are required")
	}
	var body []byte
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			return err
		}
		body = b
	}
	var ids []string
	if *idsFile != "" {
		f, err := os.Open(*idsFile)
		if err != nil {
			return err
		}
		for s := bufio.NewScanner(f); s.Scan(); {
			if id := strings.TrimSpace(s.Text()); id != "" {
				ids = append(ids, id)
			}
		}
		f.Close()
		if len(ids) == 0 {
			return fmt.Errorf("%s holds no ids", *idsFile)
		}
	}
	u, err := neturl.Parse(*url)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url must be http://HOST:PORT/PATH")
	}
	n := int(*rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / *rate)
	scheduled := make(chan time.Time, n)
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		errs      int
		wg        sync.WaitGroup
	)
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{host: u.Host}
			defer c.close()
			for at := range scheduled {
				path := u.Path
				if ids != nil {
					path += "/" + ids[rand.IntN(len(ids))]
				}
				ok := c.do(path, body)
				d := time.Since(at)
				mu.Lock()
				latencies = append(latencies, d)
				if !ok {
					errs++
				}
				mu.Unlock()
			}
		}()
	}
	// The pacer never waits for a worker (the channel holds every request),
	// so a stall shows up as latency, as a real client's would.
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		scheduled <- at
	}
	close(scheduled)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	pct := func(q float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]) / float64(time.Millisecond)
	}
	fmt.Printf("%d %d %.0f %.2f %.2f\n", len(latencies), errs, float64(len(latencies))/elapsed.Seconds(), pct(0.5), pct(0.99))
	return nil
}

// client is one keep-alive HTTP/1.1 connection, redialled after an error.
type client struct {
	host string
	conn net.Conn
	r    *bufio.Reader
	req  []byte
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
	}
}

// do sends one request and reports whether a 2xx response came back whole.
func (c *client) do(path string, body []byte) bool {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.host, 5*time.Second)
		if err != nil {
			return false
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	ok, err := c.roundTrip(path, body)
	if err != nil {
		c.conn.Close()
		c.conn = nil
		return false
	}
	return ok
}

func (c *client) roundTrip(path string, body []byte) (bool, error) {
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	c.req = c.req[:0]
	if body != nil {
		c.req = fmt.Appendf(c.req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, c.host, len(body))
		c.req = append(c.req, body...)
	} else {
		c.req = fmt.Appendf(c.req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, c.host)
	}
	if _, err := c.conn.Write(c.req); err != nil {
		return false, err
	}
	status, err := c.r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	ok := len(status) > 9 && status[9] == '2'
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(line) <= 2 { // the blank line ending the headers
			break
		}
		if k, v, found := strings.Cut(string(line), ":"); found && strings.EqualFold(k, "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return false, err
			}
		}
	}
	if length < 0 {
		return false, fmt.Errorf("response without Content-Length")
	}
	if _, err := c.r.Discard(length); err != nil {
		return false, err
	}
	return ok, nil
}
