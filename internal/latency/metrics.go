package latency

import (
	"math"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/metrics"
)

// histBounds are the upper bounds (in log2 buckets of ns) of the exported
// histogram: every second power of two from 2^10 ns (1 µs) to 2^30 ns
// (1.07 s), 11 buckets per CPU, so the series stay few on a 192-CPU node.
var histBounds = []int{10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}

// Metrics export nodekeeper_softirq_latency_seconds{cpu}, a histogram per
// CPU of NET_RX raise→entry waits since the programs were loaded, from the
// kernel's own log2 buckets at scrape time. Its _sum is estimated from the
// buckets (each wait counted at its bucket's middle): the kernel keeps no
// sum.
type Metrics struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	last []CPUCounts
}

// NewMetrics registers the histogram with reg, or takes the one already
// registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{desc: prometheus.NewDesc("nodekeeper_softirq_latency_seconds",
		"How long raised NET_RX softirqs waited before they ran, per CPU (eBPF, since the daemon started; _sum estimated from the log2 buckets).",
		[]string{"cpu"}, nil)}
	return metrics.Register(reg, m)
}

// Observe keeps the latest cumulative counts (indexed by CPU).
func (m *Metrics) Observe(c []CPUCounts) {
	m.mu.Lock()
	m.last = c
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

// Collect implements prometheus.Collector: a CPU without any sample is left
// out.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	for cpu, c := range last {
		var n uint64
		var sum float64
		for i, v := range c.Buckets {
			n += v
			sum += float64(v) * (lower(i) + upper(i)) / 2
		}
		if n == 0 {
			continue
		}
		buckets := make(map[float64]uint64, len(histBounds))
		var cum uint64
		next := 0
		for _, b := range histBounds {
			for ; next < b && next < NumBuckets; next++ {
				cum += c.Buckets[next]
			}
			buckets[math.Ldexp(1, b)/1e9] = cum
		}
		ch <- prometheus.MustNewConstHistogram(m.desc, n, sum/1e9, buckets, strconv.Itoa(cpu))
	}
}
