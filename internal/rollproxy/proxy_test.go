package rollproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// version is a backend that answers its name; /slow waits for release.
type version struct {
	name    string
	srv     *httptest.Server
	healthy atomic.Bool
	release chan struct{}
	served  atomic.Int64
}

func newVersion(t *testing.T, name string) *version {
	t.Helper()
	v := &version{name: name, release: make(chan struct{})}
	v.healthy.Store(true)
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if !v.healthy.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
		case "/slow":
			<-v.release
		}
		v.served.Add(1)
		io.WriteString(w, v.name)
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *version) addr() string { return strings.TrimPrefix(v.srv.URL, "http://") }

func fastOpts() DeployOptions {
	return DeployOptions{HealthPath: "/readyz", HealthTimeout: 2 * time.Second, HealthInterval: 10 * time.Millisecond, DrainTimeout: 5 * time.Second}
}

func get(c *http.Client, url string) (string, int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

func TestNoBackendIs503(t *testing.T) {
	p := New(nil)
	front := httptest.NewServer(p)
	defer front.Close()
	_, code, err := get(front.Client(), front.URL+"/")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("got %d %v, want 503", code, err)
	}
}

// TestSwitchUnderLoad: 16 clients, half keep-alive and half new connections,
// run through two switches; no request fails, and after each switch every
// new request reaches the new version (keep-alive clients included).
func TestSwitchUnderLoad(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := New(reg)
	front := httptest.NewServer(p)
	defer front.Close()
	v1, v2, v3 := newVersion(t, "v1"), newVersion(t, "v2"), newVersion(t, "v3")
	ctx := context.Background()
	if _, err := p.Deploy(ctx, v1.addr(), fastOpts()); err != nil {
		t.Fatal(err)
	}

	var failed, ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tr := &http.Transport{DisableKeepAlives: i%2 == 1}
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, code, err := get(c, front.URL+"/x")
				if err != nil || code != 200 {
					failed.Add(1)
					t.Errorf("request failed: %d %v", code, err)
					continue
				}
				ok.Add(1)
			}
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	for _, v := range []*version{v2, v3} {
		res, err := p.Deploy(ctx, v.addr(), fastOpts())
		if err != nil {
			t.Fatalf("deploy %s: %v", v.name, err)
		}
		if !res.Drained {
			t.Errorf("deploy %s: old backend not drained", v.name)
		}
		// The old version is now unreachable to the proxy: close it, as
		// invdeploy stops the old container after Deploy returns.
		time.Sleep(100 * time.Millisecond)
	}
	v1.srv.Close()
	v2.srv.Close()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed (of %d)", failed.Load(), ok.Load()+failed.Load())
	}
	if v2.served.Load() == 0 || v3.served.Load() == 0 {
		t.Fatalf("served: v1 %d v2 %d v3 %d: every version should have served", v1.served.Load(), v2.served.Load(), v3.served.Load())
	}
	keepAlive := &http.Client{}
	for i := 0; i < 5; i++ {
		body, code, err := get(keepAlive, front.URL+"/")
		if err != nil || code != 200 || body != "v3" {
			t.Fatalf("after the switches: %q %d %v, want v3", body, code, err)
		}
	}
	if got := counterValue(t, p.m.switches.WithLabelValues("switched")); got != 3 {
		t.Errorf("switch events = %v, want 3", got)
	}
	if got := counterValue(t, p.m.requests.WithLabelValues(v3.addr(), "200")); got == 0 {
		t.Error("no request counted for v3")
	}
}

// TestInFlightRequestFinishesOnOldBackend: a slow request in flight at the
// switch completes with the old version's answer, and Deploy returns only
// after it did (the drain), while new requests already reach the new one.
func TestInFlightRequestFinishesOnOldBackend(t *testing.T) {
	p := New(nil)
	front := httptest.NewServer(p)
	defer front.Close()
	v1, v2 := newVersion(t, "v1"), newVersion(t, "v2")
	ctx := context.Background()
	if _, err := p.Deploy(ctx, v1.addr(), fastOpts()); err != nil {
		t.Fatal(err)
	}
	slow := make(chan string, 1)
	go func() {
		body, code, err := get(&http.Client{}, front.URL+"/slow")
		slow <- fmt.Sprintf("%s %d %v", body, code, err)
	}()
	deadline := time.Now().Add(2 * time.Second)
	for p.current.Load().inflightNow() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow request never reached v1")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan DeployResult, 1)
	go func() {
		res, err := p.Deploy(ctx, v2.addr(), fastOpts())
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	// New requests go to v2 while v1 drains.
	deadline = time.Now().Add(2 * time.Second)
	for {
		body, _, err := get(&http.Client{}, front.URL+"/")
		if err == nil && body == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new requests never reached v2 (last %q %v)", body, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("Deploy returned while a request was in flight on the old backend")
	case <-time.After(200 * time.Millisecond):
	}
	close(v1.release)
	if got := <-slow; got != "v1 200 <nil>" {
		t.Fatalf("slow request: %s, want v1 200", got)
	}
	res := <-done
	if !res.Drained || res.Previous != v1.addr() || res.Target != v2.addr() {
		t.Fatalf("result %+v", res)
	}
}

func TestDrainTimeout(t *testing.T) {
	p := New(nil)
	front := httptest.NewServer(p)
	defer front.Close()
	v1, v2 := newVersion(t, "v1"), newVersion(t, "v2")
	defer close(v1.release)
	ctx := context.Background()
	if _, err := p.Deploy(ctx, v1.addr(), fastOpts()); err != nil {
		t.Fatal(err)
	}
	go get(&http.Client{}, front.URL+"/slow")
	for p.current.Load().inflightNow() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	o := fastOpts()
	o.DrainTimeout = 100 * time.Millisecond
	start := time.Now()
	res, err := p.Deploy(ctx, v2.addr(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Drained {
		t.Fatal("drained reported with a request still in flight")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("drain timeout not honoured: %s", el)
	}
}

// TestUnhealthyTargetChangesNothing: a new backend that never answers its
// health path (or is not listening) leaves the old one serving.
func TestUnhealthyTargetChangesNothing(t *testing.T) {
	p := New(nil)
	front := httptest.NewServer(p)
	defer front.Close()
	v1, bad := newVersion(t, "v1"), newVersion(t, "bad")
	bad.healthy.Store(false)
	ctx := context.Background()
	if _, err := p.Deploy(ctx, v1.addr(), fastOpts()); err != nil {
		t.Fatal(err)
	}
	o := fastOpts()
	o.HealthTimeout = 200 * time.Millisecond
	for _, target := range []string{bad.addr(), "127.0.0.1:1"} {
		_, err := p.Deploy(ctx, target, o)
		if !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("deploy %s: err %v, want ErrUnhealthy", target, err)
		}
		if p.Target() != v1.addr() {
			t.Fatalf("target changed to %s", p.Target())
		}
		body, code, err := get(&http.Client{}, front.URL+"/")
		if err != nil || code != 200 || body != "v1" {
			t.Fatalf("after refused deploy: %q %d %v", body, code, err)
		}
	}
	if _, err := p.Deploy(ctx, "no-port", o); err == nil {
		t.Fatal("a target without a port was accepted")
	}
}

func TestAdminAPI(t *testing.T) {
	p := New(nil)
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()
	v1 := newVersion(t, "v1")
	post := func(body string) (string, int) {
		resp, err := http.Post(admin.URL+"/deploy", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.StatusCode
	}
	for _, bad := range []string{`{`, `{"target":"x:1","drain_timeout":"soon"}`, `{"target":"x:1","health_path":"readyz"}`, `{"target":"x:1","extra":1}`} {
		if body, code := post(bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, code, body)
		}
	}
	body, code := post(fmt.Sprintf(`{"target":%q,"health_path":"/readyz","health_interval":"10ms"}`, v1.addr()))
	if code != 200 || !strings.Contains(body, `"target":"`+v1.addr()) {
		t.Fatalf("deploy: %d %s", code, body)
	}
	body, code = post(`{"target":"127.0.0.1:1","health_timeout":"100ms","health_interval":"10ms"}`)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("unhealthy deploy: %d %s, want 503", code, body)
	}
	if p.Target() != v1.addr() {
		t.Fatalf("target %s", p.Target())
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestNewerDeploySupersedesOneWaitingForHealth: a deploy still waiting for
// its backend (a restarted proxy's fallback target, say) gives way at once
// to a newer one, changes nothing and is not counted as unhealthy.
func TestNewerDeploySupersedesOneWaitingForHealth(t *testing.T) {
	p := New(nil)
	slow, v2 := newVersion(t, "slow"), newVersion(t, "v2")
	slow.healthy.Store(false)
	o := fastOpts()
	o.HealthTimeout = time.Minute
	first := make(chan error, 1)
	go func() {
		_, err := p.Deploy(context.Background(), slow.addr(), o)
		first <- err
	}()
	time.Sleep(100 * time.Millisecond) // the first one is polling now
	start := time.Now()
	if _, err := p.Deploy(context.Background(), v2.addr(), fastOpts()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the newer deploy waited %s for the older one", took)
	}
	if err := <-first; !errors.Is(err, errSuperseded) {
		t.Fatalf("the older deploy: %v, want superseded", err)
	}
	if p.Target() != v2.addr() {
		t.Fatalf("target %s, want the newer one", p.Target())
	}
	if n := counterValue(t, p.m.switches.WithLabelValues("unhealthy")); n != 0 {
		t.Fatalf("a superseded deploy counted as unhealthy (%v)", n)
	}
}
