package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// adminHandler is the admin API on the edge's unix socket (reached by exec
// in the edge's container: no port is published for it).
//
//	GET    /healthz                       200 once the edge serves
//	GET    /routes                        the table
//	PUT    /routes                        body: a Route; replaces its project's and service's
//	DELETE /routes?project=P[&service=S]  drops a project's routes (or one service's)
//	GET    /certificates                  the certificate of each host
func (e *Edge) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !e.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, e.Table()) })
	mux.HandleFunc("GET /certificates", func(w http.ResponseWriter, r *http.Request) {
		cs := e.Certificates()
		if cs == nil {
			cs = []CertificateInfo{}
		}
		writeJSON(w, cs)
	})
	mux.HandleFunc("PUT /routes", func(w http.ResponseWriter, r *http.Request) {
		var rt Route
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rt); err != nil {
			http.Error(w, "route: "+err.Error(), http.StatusBadRequest)
			return
		}
		t, err := e.update(r.Context(), func(t Table) (Table, error) { return t.Set(rt) })
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		writeJSON(w, t)
	})
	mux.HandleFunc("DELETE /routes", func(w http.ResponseWriter, r *http.Request) {
		project, service := r.URL.Query().Get("project"), r.URL.Query().Get("service")
		if project == "" {
			http.Error(w, "project is required", http.StatusBadRequest)
			return
		}
		t, err := e.update(r.Context(), func(t Table) (Table, error) { return t.Remove(project, service), nil })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, t)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// AdminClient talks to an edge's admin socket.
type AdminClient struct {
	c *http.Client
}

// NewAdminClient is a client of the admin API on socket.
func NewAdminClient(socket string) *AdminClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &AdminClient{c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (a *AdminClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://edge"+path, rd)
	if err != nil {
		return err
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return fmt.Errorf("edge admin: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRoutesFile))
	if err != nil {
		return fmt.Errorf("edge admin: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("edge: %s", strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Health fails unless the edge serves.
func (a *AdminClient) Health(ctx context.Context) error {
	return a.do(ctx, "GET", "/healthz", nil, nil)
}

// Routes is the edge's table.
func (a *AdminClient) Routes(ctx context.Context) (Table, error) {
	var t Table
	return t, a.do(ctx, "GET", "/routes", nil, &t)
}

// SetRoute replaces the route of r's project and service.
func (a *AdminClient) SetRoute(ctx context.Context, r Route) (Table, error) {
	var t Table
	return t, a.do(ctx, "PUT", "/routes", r, &t)
}

// RemoveRoutes drops project's routes (one service's when service != "").
func (a *AdminClient) RemoveRoutes(ctx context.Context, project, service string) (Table, error) {
	var t Table
	q := url.Values{"project": {project}}
	if service != "" {
		q.Set("service", service)
	}
	return t, a.do(ctx, "DELETE", "/routes?"+q.Encode(), nil, &t)
}

// Certificates lists the certificate of each host.
func (a *AdminClient) Certificates(ctx context.Context) ([]CertificateInfo, error) {
	var cs []CertificateInfo
	return cs, a.do(ctx, "GET", "/certificates", nil, &cs)
}
