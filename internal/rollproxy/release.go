package rollproxy

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Release names what a backend runs, for the invdeploy_release_info series
// that marks releases on the dashboards' time axis. Every field is optional;
// the zero Release means "not named" (a deploy without --release keeps
// working, see Proxy.Deploy).
type Release struct {
	// Project is the compose project (stack) name.
	Project string `json:"project,omitempty"`
	// Number is invdeploy's release number ("7"), a positive integer.
	Number string `json:"release,omitempty"`
	// Revision is the git revision the release was built from.
	Revision string `json:"revision,omitempty"`
	// Service is the compose service the proxy fronts.
	Service string `json:"service,omitempty"`
}

// IsZero reports whether r names nothing.
func (r Release) IsZero() bool { return r == Release{} }

var (
	// nameRE is compose's project and service name alphabet.
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	// revisionRE fits git revisions (short or full, "-dirty" and the like)
	// and tags, and nothing that could break a label or a log line.
	revisionRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.+-]{0,63}$`)
)

// Validate refuses values that are not what the fields name. They become
// label values of a series every scrape returns, so they are kept short and
// plain (valid UTF-8 is a must: the client library panics on anything else).
func (r Release) Validate() error {
	if r.Number != "" {
		n, err := strconv.ParseUint(r.Number, 10, 31)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != r.Number {
			return fmt.Errorf("release %q: want a release number such as 7", r.Number)
		}
	}
	if r.Revision != "" && !revisionRE.MatchString(r.Revision) {
		return fmt.Errorf("revision %q: want a git revision such as 1a2b3c4d5e6f (letters, digits, . _ + -; at most 64)", r.Revision)
	}
	for _, f := range []struct{ name, v string }{{"project", r.Project}, {"service", r.Service}} {
		if f.v != "" && !nameRE.MatchString(f.v) {
			return fmt.Errorf("%s %q: want a compose name (letters, digits, . _ -; at most 63)", f.name, f.v)
		}
	}
	return nil
}

// releaseInfo is the collector of invdeploy_release_info: one series, at 1,
// naming the release the current backend runs, or none while that is not
// known. Only the current release has a series (the info-metric convention
// of build_info and kube_pod_info): the history is in Prometheus' TSDB and
// in invdeploy's release records, a query needs no "== 1" filter, and the
// proxy keeps nothing it could replay wrongly after a restart. Swapping the
// labels is one assignment under a lock, so no scrape sees the series
// missing in between (which would draw a false release mark).
type releaseInfo struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	cur  Release
}

func newReleaseInfo() *releaseInfo {
	return &releaseInfo{desc: prometheus.NewDesc("invdeploy_release_info",
		"The release the proxy's current backend runs (always 1; absent while no deploy named one).",
		[]string{"project", "release", "revision", "service"}, nil)}
}

func (ri *releaseInfo) set(r Release) {
	ri.mu.Lock()
	ri.cur = r
	ri.mu.Unlock()
}

func (ri *releaseInfo) get() Release {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return ri.cur
}

// Describe implements prometheus.Collector.
func (ri *releaseInfo) Describe(ch chan<- *prometheus.Desc) { ch <- ri.desc }

// Collect implements prometheus.Collector.
func (ri *releaseInfo) Collect(ch chan<- prometheus.Metric) {
	r := ri.get()
	if r.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(ri.desc, prometheus.GaugeValue, 1, r.Project, r.Number, r.Revision, r.Service)
}
