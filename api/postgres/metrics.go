package postgres

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports pgxpool statistics as Prometheus metrics.
type PoolCollector struct {
	pool                                           *pgxpool.Pool
	acquired, idle, total, max                     *prometheus.Desc
	acquires, emptyAcquires, acquireSecs, canceled *prometheus.Desc
	// emptyWaitSecs is the time spent only by acquires that had to wait.
	emptyWaitSecs *prometheus.Desc
}

// NewPoolCollector returns a collector of pool's statistics.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("invoicing_db_pool_"+name, help, nil, nil)
	}
	return &PoolCollector{
		pool:          pool,
		acquired:      d("acquired_connections", "Connections currently in use."),
		idle:          d("idle_connections", "Idle connections in the pool."),
		total:         d("total_connections", "Open connections in the pool."),
		max:           d("max_connections", "Maximum size of the pool."),
		acquires:      d("acquires_total", "Connections acquired from the pool."),
		emptyAcquires: d("empty_acquires_total", "Acquires that had to wait for a connection."),
		acquireSecs:   d("acquire_seconds_total", "Time spent acquiring connections."),
		canceled:      d("canceled_acquires_total", "Acquires canceled by their context."),
		emptyWaitSecs: d("empty_acquire_wait_seconds_total", "Time spent waiting by acquires that found no idle connection."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.emptyAcquires, c.acquireSecs, c.canceled, c.emptyWaitSecs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := prometheus.GaugeValue
	k := prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(c.acquired, g, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.idle, g, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.total, g, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(c.max, g, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquires, k, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.emptyAcquires, k, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.acquireSecs, k, s.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(c.canceled, k, float64(s.CanceledAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.emptyWaitSecs, k, s.EmptyAcquireWaitTime().Seconds())
}
