package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/invdeploy/invdeploy/internal/rollproxy"
)

// Route sends the requests for Hosts to Upstream, the published port of a
// service's rollout proxy on the same host (which rolls the service behind
// it with zero downtime, so the edge never changes during a roll).
type Route struct {
	// Project and Service name the compose service the route is for: a
	// project's routes are replaced or removed together.
	Project string `json:"project"`
	Service string `json:"service"`
	// Hosts are the host names the route answers (x-invdeploy hosts).
	Hosts []string `json:"hosts"`
	// Upstream is host:port of the service's rollout proxy, as the edge
	// (host networking) reaches it: 127.0.0.1:PUBLISHED.
	Upstream string `json:"upstream"`
	// HSTS, when > 0, is the max-age (seconds) of the
	// Strict-Transport-Security header the edge adds (opt-in).
	HSTS int `json:"hsts,omitempty"`
	// CertFile and KeyFile, both set, are a certificate chain and its key
	// (PEM, in the edge's data directory) served for Hosts instead of
	// ordering one by ACME.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// maxRoutesFile bounds what is read of the routes file.
const maxRoutesFile = 4 << 20

// ValidHost reports why h is not a host name the edge can get a
// certificate for by ACME, or nil: lower-case letters, digits and hyphens
// in dot-separated labels of 1 to 63 characters that neither start nor end
// with a hyphen, at least two labels, at most 253 characters, no IP
// address, no wildcard, no trailing dot, and a top-level label that is not
// all digits.
func ValidHost(h string) error {
	switch {
	case h == "":
		return errors.New("empty host name")
	case len(h) > 253:
		return fmt.Errorf("host name %.40q... is longer than 253 characters", h)
	case net.ParseIP(h) != nil:
		return fmt.Errorf("%q is an IP address: ACME certificates are for host names (give the DNS name that points at this host)", h)
	case strings.HasPrefix(h, "*."):
		return fmt.Errorf("%q is a wildcard: the edge's HTTP-01 and TLS-ALPN-01 challenges cannot prove one; name each host", h)
	case strings.HasSuffix(h, "."):
		return fmt.Errorf("%q ends with a dot: write it without", h)
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified host name (such as api.example.com)", h)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q: each dot-separated label has 1 to 63 characters", h)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q: a label may not start or end with a hyphen", h)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q: only lower-case letters, digits, hyphens and dots make a host name", h)
			}
		}
	}
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return fmt.Errorf("%q: the last label is all digits", h)
	}
	return nil
}

// Validate checks a route as the admin API receives it.
func (r Route) Validate() error {
	if r.Project == "" || r.Service == "" {
		return errors.New("route: project and service are required")
	}
	if len(r.Hosts) == 0 {
		return fmt.Errorf("route %s/%s: no host names", r.Project, r.Service)
	}
	for _, h := range r.Hosts {
		if err := ValidHost(h); err != nil {
			return fmt.Errorf("route %s/%s: %w", r.Project, r.Service, err)
		}
	}
	host, port, err := net.SplitHostPort(r.Upstream)
	if err != nil || host == "" {
		return fmt.Errorf("route %s/%s: upstream %q: want host:port", r.Project, r.Service, r.Upstream)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("route %s/%s: upstream %q: bad port", r.Project, r.Service, r.Upstream)
	}
	if r.HSTS < 0 || r.HSTS > 2*365*86400 {
		return fmt.Errorf("route %s/%s: hsts max-age %d: want 0 to two years in seconds", r.Project, r.Service, r.HSTS)
	}
	if (r.CertFile == "") != (r.KeyFile == "") {
		return fmt.Errorf("route %s/%s: a certificate needs its key (and a key its certificate)", r.Project, r.Service)
	}
	for _, f := range []string{r.CertFile, r.KeyFile} {
		if f != "" && (strings.Contains(f, "..") || strings.ContainsAny(f, "/\\")) {
			return fmt.Errorf("route %s/%s: certificate file %q: a plain file name in the edge's data directory", r.Project, r.Service, f)
		}
	}
	return nil
}

// Table is the edge's routes: a route per project and service.
type Table struct {
	Routes []Route `json:"routes"`
}

// ParseTable reads a routes file (or an admin request's body) and checks
// every route, and that no host is routed twice.
func ParseTable(b []byte) (Table, error) {
	var t Table
	if len(b) > maxRoutesFile {
		return t, fmt.Errorf("routes: %d bytes, more than %d", len(b), maxRoutesFile)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return Table{}, fmt.Errorf("routes: %w", err)
	}
	return t, t.Validate()
}

// Validate checks every route, and that no host name is routed twice.
func (t Table) Validate() error {
	owner := map[string]string{}
	for _, r := range t.Routes {
		if err := r.Validate(); err != nil {
			return err
		}
		for _, h := range r.Hosts {
			who := r.Project + "/" + r.Service
			if o, dup := owner[h]; dup && o != who {
				return fmt.Errorf("host %s is routed to both %s and %s", h, o, who)
			}
			owner[h] = who
		}
	}
	return nil
}

// Set replaces the route of r's project and service (adds it when new) and
// reports the table that results; a host another service holds refuses.
func (t Table) Set(r Route) (Table, error) {
	out := Table{Routes: []Route{}}
	for _, o := range t.Routes {
		if o.Project != r.Project || o.Service != r.Service {
			out.Routes = append(out.Routes, o)
		}
	}
	out.Routes = append(out.Routes, r)
	sort.Slice(out.Routes, func(i, j int) bool {
		a, b := out.Routes[i], out.Routes[j]
		return a.Project < b.Project || a.Project == b.Project && a.Service < b.Service
	})
	return out, out.Validate()
}

// Remove drops the routes of project (of one service when service != "").
func (t Table) Remove(project, service string) Table {
	out := Table{Routes: []Route{}}
	for _, o := range t.Routes {
		if o.Project != project || (service != "" && o.Service != service) {
			out.Routes = append(out.Routes, o)
		}
	}
	return out
}

// Hosts are the host names the table routes, sorted.
func (t Table) Hosts() []string {
	var hs []string
	for _, r := range t.Routes {
		hs = append(hs, r.Hosts...)
	}
	sort.Strings(hs)
	return hs
}

// loadTable reads the routes file at path (none yet: an empty table).
func loadTable(path string) (Table, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Table{Routes: []Route{}}, nil
	}
	if err != nil {
		return Table{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRoutesFile+1))
	if err != nil {
		return Table{}, err
	}
	return ParseTable(b)
}

// saveTable writes the routes file atomically (0600: only the edge reads
// its data directory).
func saveTable(path string, t Table) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return rollproxy.WriteFileAtomic(path, append(b, '\n'))
}
