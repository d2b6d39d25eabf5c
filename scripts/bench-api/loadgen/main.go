// Command loadgen sends HTTP requests at a fixed rate (open loop) and prints
// the latency percentiles, for make bench-api's "p99 at half the measured
// maximum load". wrk is closed-loop (a slow response delays the next
// request, hiding the queueing it caused) and wrk2 is not packaged here, so
// each request's latency is measured from the moment it was scheduled to be
// sent, not from when a connection was free to send it.
//
//	loadgen -url http://127.0.0.1:8000/v1/invoices -rate 1000 -duration 5s [-body FILE] [-ids FILE]
//
// prints one line: "requests errors achieved_rate p50_ms p99_ms".
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
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
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}}

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
			for at := range scheduled {
				target := *url
				if ids != nil {
					target += "/" + ids[rand.IntN(len(ids))]
				}
				ok := send(client, target, body)
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

// send makes one request and reports whether it got a 2xx answer.
func send(client *http.Client, url string, body []byte) bool {
	method, r := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, r = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return false
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}
