package compaction

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/policy"
)

// Metrics are compaction's own series: nodekeeper_compactions_total{node,
// reason,result} and nodekeeper_compaction_duration_seconds{node}. They
// live here, with the reasons they count, rather than in package metrics:
// the values of their labels are this package's vocabulary.
type Metrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// durationBuckets span a quick compaction of a small node (10 ms) to a long
// one of a large, fragmented node (30 s).
var durationBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// NewMetrics registers compaction's series with reg, or takes the ones
// already registered there (a daemon restarted in the same process).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "nodekeeper", Name: "compactions_total",
		Help: "Memory compactions nodekeeper ran, by NUMA node, reason and result.",
	}, []string{"node", "reason", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "nodekeeper", Name: "compaction_duration_seconds",
		Help:    "How long one memory compaction of a NUMA node took.",
		Buckets: durationBuckets,
	}, []string{"node"})
	var err error
	m := &Metrics{}
	if m.total, err = metrics.Register(reg, total); err != nil {
		return nil, err
	}
	if m.duration, err = metrics.Register(reg, duration); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records one compaction of node: counted by reason and result
// (policy.Success or policy.Failure), its duration observed. Any other
// reason or result is a bug in the caller and is not recorded.
func (m *Metrics) Observe(node int, reason Reason, result policy.Result, d time.Duration) {
	if node < 0 || (reason != ReasonFragmentation && reason != ReasonSafety) ||
		(result != policy.Success && result != policy.Failure) {
		return
	}
	n := strconv.Itoa(node)
	m.total.WithLabelValues(n, string(reason), string(result)).Inc()
	m.duration.WithLabelValues(n).Observe(d.Seconds())
}
