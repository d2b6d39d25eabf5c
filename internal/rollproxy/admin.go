package rollproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// DeployRequest is the body of the admin API's POST /deploy.
type DeployRequest struct {
	Target         string `json:"target"`
	HealthPath     string `json:"health_path,omitempty"`
	HealthTimeout  string `json:"health_timeout,omitempty"`
	HealthInterval string `json:"health_interval,omitempty"`
	DrainTimeout   string `json:"drain_timeout,omitempty"`
	// Project, Release, Revision and Service name what Target runs, for
	// invdeploy_release_info; all optional (see DeployOptions.Release).
	Project  string `json:"project,omitempty"`
	Release  string `json:"release,omitempty"`
	Revision string `json:"revision,omitempty"`
	Service  string `json:"service,omitempty"`
}

// Options turns the request's durations and release fields into
// DeployOptions, refusing values that are not what they name.
func (r DeployRequest) Options() (DeployOptions, error) {
	var o DeployOptions
	o.HealthPath = r.HealthPath
	o.Release = Release{Project: r.Project, Number: r.Release, Revision: r.Revision, Service: r.Service}
	if err := o.Release.Validate(); err != nil {
		return o, err
	}
	for _, f := range []struct {
		name string
		in   string
		out  *time.Duration
	}{
		{"health_timeout", r.HealthTimeout, &o.HealthTimeout},
		{"health_interval", r.HealthInterval, &o.HealthInterval},
		{"drain_timeout", r.DrainTimeout, &o.DrainTimeout},
	} {
		if f.in == "" {
			continue
		}
		d, err := time.ParseDuration(f.in)
		if err != nil || d < 0 {
			return o, fmt.Errorf("%s %q: want a duration such as 30s", f.name, f.in)
		}
		*f.out = d
	}
	if o.HealthPath != "" && o.HealthPath[0] != '/' {
		return o, fmt.Errorf("health_path %q: must start with /", o.HealthPath)
	}
	return o, nil
}

// AdminHandler is the control API, served on a unix socket inside the
// proxy's container (reached by exec, so it needs no published port):
//
//	POST /deploy  DeployRequest -> 200 DeployResult | 503 {"error"} (unhealthy, nothing changed)
//	GET  /target  -> 200 {"target": "host:port", "project", "release", "revision", "service" (as named)}
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /deploy", func(w http.ResponseWriter, r *http.Request) {
		req, o, err := decodeDeployRequest(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		res, err := p.Deploy(r.Context(), req.Target, o)
		switch {
		case errors.Is(err, ErrUnhealthy):
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
	mux.HandleFunc("GET /target", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Target string `json:"target"`
			Release
		}{p.Target(), p.Release()})
	})
	return mux
}

// decodeDeployRequest reads one DeployRequest (at most 64 KiB, no unknown
// fields) and its options.
func decodeDeployRequest(body io.Reader) (DeployRequest, DeployOptions, error) {
	var req DeployRequest
	dec := json.NewDecoder(io.LimitReader(body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, DeployOptions{}, fmt.Errorf("malformed deploy request: %w", err)
	}
	o, err := req.Options()
	return req, o, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AdminClient talks to AdminHandler over a unix socket.
type AdminClient struct {
	hc *http.Client
}

// NewAdminClient returns a client for the admin socket at path.
func NewAdminClient(path string) *AdminClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &AdminClient{hc: &http.Client{Transport: tr}}
}

// Deploy asks the proxy to switch to req.Target and returns its result.
func (c *AdminClient) Deploy(ctx context.Context, req DeployRequest) (DeployResult, error) {
	var res DeployResult
	body, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://proxy/deploy", bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hr)
	if err != nil {
		return res, fmt.Errorf("proxy admin: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode == http.StatusServiceUnavailable {
			return res, fmt.Errorf("%w: %s", ErrUnhealthy, strings.TrimPrefix(e.Error, ErrUnhealthy.Error()+": "))
		}
		return res, fmt.Errorf("proxy refused the deploy: %s", e.Error)
	}
	return res, json.NewDecoder(resp.Body).Decode(&res)
}

// Target returns the proxy's current backend.
func (c *AdminClient) Target(ctx context.Context) (string, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://proxy/target", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return "", fmt.Errorf("proxy admin: %w", err)
	}
	defer resp.Body.Close()
	var v struct{ Target string }
	return v.Target, json.NewDecoder(resp.Body).Decode(&v)
}
