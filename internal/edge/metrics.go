package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the edge's series on /metrics. The alert rules of the
// monitoring profile (stacks/monitoring) fire on
// invdeploy_edge_certificate_renewal_failing and on a certificate that
// nears its expiry: a renewal that fails is seen weeks before clients are.
type metrics struct {
	orders   *prometheus.CounterVec
	obtained *prometheus.CounterVec
	failures *prometheus.CounterVec
	failing  *prometheus.GaugeVec
	requests *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, e *Edge) *metrics {
	m := &metrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invdeploy_edge_certificate_orders_total",
			Help: "Certificate orders started (renewal=true for renewals)."}, []string{"host", "renewal"}),
		obtained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invdeploy_edge_certificates_obtained_total",
			Help: "Certificates obtained (renewal=true for renewals)."}, []string{"host", "renewal"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invdeploy_edge_certificate_failures_total",
			Help: "Certificate orders that failed after their retries (renewal=true for renewals)."}, []string{"host", "renewal"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invdeploy_edge_certificate_renewal_failing",
			Help: "1 while the last attempt to obtain or renew the host's certificate failed."}, []string{"host"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invdeploy_edge_requests_total",
			Help: "Requests answered by the edge, by listener (http, https) and status class."}, []string{"listener", "class"}),
	}
	reg.MustRegister(m.orders, m.obtained, m.failures, m.failing, m.requests, expiryCollector{e})
	return m
}

var (
	expiryDesc = prometheus.NewDesc("invdeploy_edge_certificate_expiry_timestamp_seconds",
		"When the certificate served for the host expires (Unix time).", []string{"host", "own"}, nil)
	notBeforeDesc = prometheus.NewDesc("invdeploy_edge_certificate_not_before_timestamp_seconds",
		"When the certificate served for the host became valid (Unix time): with the expiry, its lifetime.", []string{"host", "own"}, nil)
)

// expiryCollector reports the expiry of each host's certificate at scrape
// time.
type expiryCollector struct{ e *Edge }

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- notBeforeDesc
}

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ci := range c.e.Certificates() {
		own := "false"
		if ci.Own {
			own = "true"
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(ci.NotAfter.Unix()), ci.Host, own)
		ch <- prometheus.MustNewConstMetric(notBeforeDesc, prometheus.GaugeValue, float64(ci.NotBefore.Unix()), ci.Host, own)
	}
}
