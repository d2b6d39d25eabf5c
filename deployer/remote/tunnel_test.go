package remote

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// TestTunnelOverTheOneSSHConnection: a local port forwarded with Forward
// and SSHConn.DialTCP reaches a TCP service "on the host" (here the SSH
// server's loopback), every request over the one SSH connection.
func TestTunnelOverTheOneSSHConnection(t *testing.T) {
	r := newRig(t)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "prometheus is ready: "+req.URL.Path)
	}))
	defer svc.Close()
	conn, err := DialSSH(context.Background(), r.endpoint(t), r.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	addr := strings.TrimPrefix(svc.URL, "http://")
	go func() {
		done <- Forward(ctx, ln, func(ctx context.Context) (net.Conn, error) { return conn.DialTCP(ctx, addr) }, func(err error) { t.Errorf("tunnel: %v", err) })
	}()

	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	const requests = 5
	for i := 0; i < requests; i++ {
		resp, err := hc.Get("http://" + ln.Addr().String() + "/-/ready")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "prometheus is ready: /-/ready" {
			t.Fatalf("through the tunnel: %q", b)
		}
	}
	if got := r.srv.forwards.Load(); got != requests {
		t.Errorf("%d direct-tcpip channels for %d connections, want one each", got, requests)
	}
	if got := r.srv.accepted.Load(); got != 1 {
		t.Errorf("SSH server accepted %d TCP connections, want the one", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Forward after cancel: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the local port still accepts after the tunnel ended")
	}
}

// TestTunnelToAClosedPortFailsThatConnectionOnly: a dial that sshd cannot
// complete is reported and closes the local connection; the tunnel stays up.
func TestTunnelToAClosedPortFailsThatConnectionOnly(t *testing.T) {
	r := newRig(t)
	conn, err := DialSSH(context.Background(), r.endpoint(t), r.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	go Forward(ctx, ln, func(ctx context.Context) (net.Conn, error) { return conn.DialTCP(ctx, dead) }, func(err error) { errs <- err })
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("connection %d: the tunnel stopped accepting: %v", i, err)
		}
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("read data from a tunnel to a closed port")
		}
		c.Close()
		if err := <-errs; !strings.Contains(err.Error(), dead) {
			t.Fatalf("dial error does not name the target: %v", err)
		}
	}
}

type listFake struct{ cs []container.Summary }

func (f listFake) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return f.cs, nil
}

func TestTargetOf(t *testing.T) {
	nets := &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{"shop_default": {IPAddress: "172.18.0.4"}}}
	prom := container.Summary{ID: "a", Names: []string{"/shop-prometheus-1"}, NetworkSettings: nets,
		Ports: []container.Port{{IP: "127.0.0.1", PrivatePort: 9090, PublicPort: 19090, Type: "tcp"}}}
	exporter := container.Summary{ID: "b", Names: []string{"/shop-postgres-exporter-1"}, NetworkSettings: nets,
		Ports: []container.Port{{PrivatePort: 9187, Type: "tcp"}}}
	two := container.Summary{ID: "c", Names: []string{"/shop-x-1"}, NetworkSettings: nets,
		Ports: []container.Port{{PrivatePort: 80, Type: "tcp"}, {PrivatePort: 443, Type: "tcp"}}}
	for _, tc := range []struct {
		name string
		c    []container.Summary
		port int
		want TunnelTarget
		err  string
	}{
		{"published port by default", []container.Summary{prom}, 0, TunnelTarget{Container: "shop-prometheus-1", Port: 9090, Addr: "127.0.0.1:19090", HostPort: 19090}, ""},
		{"published port named", []container.Summary{prom}, 9090, TunnelTarget{Container: "shop-prometheus-1", Port: 9090, Addr: "127.0.0.1:19090", HostPort: 19090}, ""},
		{"unpublished port: the container IP", []container.Summary{prom}, 8080, TunnelTarget{Container: "shop-prometheus-1", Port: 8080, Addr: "172.18.0.4:8080"}, ""},
		{"only exposed port", []container.Summary{exporter}, 0, TunnelTarget{Container: "shop-postgres-exporter-1", Port: 9187, Addr: "172.18.0.4:9187"}, ""},
		{"ambiguous", []container.Summary{two}, 0, TunnelTarget{}, "name one"},
		{"not running", nil, 0, TunnelTarget{}, "no running prometheus container"},
	} {
		got, err := TargetOf(context.Background(), listFake{tc.c}, "shop", "prometheus", tc.port)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestTunnelNeedsSSH(t *testing.T) {
	c, err := Connect(context.Background(), "tcp://127.0.0.1:2375", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DialTCP(context.Background(), "127.0.0.1:9090")
	if err == nil || !strings.Contains(err.Error(), "ssh://") {
		t.Fatalf("tunnel over tcp://: %v, want a refusal naming ssh://", err)
	}
}
