package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/invdeploy/invdeploy/internal/httpguard"
)

// Serve runs the edge until ctx ends, then stops taking connections and
// finishes those it serves (at most drain). Its listeners are taken over
// from the edge already running (a hand-off) when one answers on the data
// directory's socket, else bound afresh; from then on it hands them to the
// next edge that asks. metricsAddr "" serves no metrics.
func (e *Edge) Serve(ctx context.Context, metricsAddr string, gatherer prometheus.Gatherer, drain time.Duration) error {
	got, err := takeHandoff(e.handoffPath())
	if err != nil {
		e.log.Warn("no hand-off, binding afresh", "err", err)
	}
	listen := func(name, addr string) (net.Listener, error) {
		if ln, ok := got[name]; ok {
			delete(got, name)
			if sameAddr(ln, addr) {
				e.log.Info("listener taken over", "listener", name, "addr", ln.Addr().String())
				return ln, nil
			}
			ln.Close()
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return ln, nil
	}
	defer func() {
		for _, ln := range got {
			ln.Close()
		}
	}()
	httpLn, err := listen("http", e.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	httpsLn, err := listen("https", e.cfg.HTTPSAddr)
	if err != nil {
		httpLn.Close()
		return err
	}
	names, handed := []string{"http", "https"}, []net.Listener{httpLn, httpsLn}
	// The metrics listener is handed over too (the old edge holds its
	// address until it stops); one that cannot be had is not fatal.
	var metricsLn net.Listener
	if metricsAddr != "" {
		if metricsLn, err = listen("metrics", metricsAddr); err != nil {
			e.log.Error("no metrics", "addr", metricsAddr, "err", err)
		} else {
			names, handed = append(names, "metrics"), append(handed, metricsLn)
		}
	}
	files := make([]*os.File, 0, len(handed))
	for _, ln := range handed {
		f, err := listenerFile(ln)
		if err != nil {
			return err
		}
		defer f.Close()
		files = append(files, f)
	}

	if err := os.MkdirAll(filepath.Dir(e.cfg.AdminSocket), 0o700); err != nil {
		return fmt.Errorf("admin socket directory: %w", err)
	}
	_ = os.Remove(e.cfg.AdminSocket)
	adminLn, err := net.Listen("unix", e.cfg.AdminSocket)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}

	plain, plainCapped := e.cfg.Limits.Server(e.httpHandler(), httpLn)
	secure, secureCapped := e.cfg.Limits.Server(e.httpsHandler(), httpsLn)
	tc := e.tlsConfig()
	secure.TLSConfig = tc
	// The connection cap sees the TCP connection under the TLS one.
	secure.ConnState = func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		secureCapped.ConnState(c, s)
	}
	servers := []*http.Server{plain, secure, {Handler: e.adminHandler(), ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{plainCapped, tls.NewListener(secureCapped, tc), adminLn}
	if metricsLn != nil {
		servers = append(servers, &http.Server{Handler: promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, httpguard.NewListener(metricsLn, 64))
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}

	// From now on, hand the listeners to the next edge that asks.
	_ = os.Remove(e.handoffPath())
	hl, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.handoffPath(), Net: "unix"})
	if err != nil {
		return fmt.Errorf("hand-off socket: %w", err)
	}
	// The next edge replaces the socket file: closing ours must not
	// remove its.
	hl.SetUnlinkOnClose(false)
	go serveHandoff(hl, names, files)
	e.ready.Store(true)
	e.log.Info("edge listening", "http", httpLn.Addr().String(), "https", httpsLn.Addr().String(),
		"acme_directory", e.cfg.ACMEDirectory, "hosts", e.Table().Hosts())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	e.ready.Store(false)
	hl.Close()
	shut, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shut)
	}
	e.cache.Stop()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}
