package ctdrops

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
)

// Metrics are the conntrack series of the contract, from the latest sample
// at scrape time: nodekeeper_conntrack_events_total{event} (the kernel's
// counters summed over CPUs: insert_failed, drop, early_drop, clash_resolve,
// chaintoolong) and nodekeeper_udp_rcvbuf_errors_total{netns} (host, and dns:
// the cluster DNS pods' namespaces summed). Both are the kernel's own
// counters, so they restart when it restarts them (Prometheus's rate()
// handles that). The table's fill is node_exporter's.
type Metrics struct {
	events, rcvbuf *prometheus.Desc

	mu   sync.Mutex
	last *Sample
}

// NewMetrics registers the series with reg, or takes the ones already
// registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewDesc("nodekeeper_conntrack_events_total",
			"Conntrack events counted by the kernel, summed over CPUs: insert_failed, drop, early_drop, clash_resolve, chaintoolong.",
			[]string{"event"}, nil),
		rcvbuf: prometheus.NewDesc("nodekeeper_udp_rcvbuf_errors_total",
			"UDP datagrams dropped because a socket's receive buffer was full: netns=host, or dns (the cluster DNS pods' namespaces).",
			[]string{"netns"}, nil),
	}
	return metrics.Register(reg, m)
}

// Observe keeps s for the next scrape.
func (m *Metrics) Observe(s Sample) {
	m.mu.Lock()
	m.last = &s
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.events
	ch <- m.rcvbuf
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	s := m.last
	m.mu.Unlock()
	if s == nil {
		return
	}
	c := conntrack.Sum(s.CPUs)
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"insert_failed", c.InsertFailed}, {"drop", c.Drop}, {"early_drop", c.EarlyDrop},
		{"clash_resolve", c.ClashResolve}, {"chaintoolong", c.ChainTooLong},
	} {
		ch <- prometheus.MustNewConstMetric(m.events, prometheus.CounterValue, float64(e.v), e.name)
	}
	if s.HasHostUDP {
		ch <- prometheus.MustNewConstMetric(m.rcvbuf, prometheus.CounterValue, float64(s.HostUDP.RcvbufErrors), "host")
	}
	if len(s.DNS) > 0 {
		var sum uint64
		for _, p := range s.DNS {
			sum += p.RcvbufErrors
		}
		ch <- prometheus.MustNewConstMetric(m.rcvbuf, prometheus.CounterValue, float64(sum), "dns")
	}
}
