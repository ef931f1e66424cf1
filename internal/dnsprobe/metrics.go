package dnsprobe

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/metrics"
)

// Metrics is the probe's histogram of the contract,
// nodekeeper_dns_probe_seconds{result}: per probe, the time a client waited
// (timeouts included), labelled with the probe's result (Results: a fixed
// set, every series present from the start).
type Metrics struct {
	probe *prometheus.HistogramVec
}

// probeBuckets: a healthy cluster DNS answers in about a millisecond; a
// timeout costs dns.timeout (2 s) per query, and a pod's resolver 5 s.
var probeBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics registers the histogram with reg, or takes the one already
// registered there (a daemon restarted in the same process).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "nodekeeper", Name: "dns_probe_seconds",
		Help:    "Time one cluster DNS probe took, timeouts and the TCP retry of a truncated answer included, by result.",
		Buckets: probeBuckets,
	}, []string{"result"})
	h, err := metrics.Register(reg, h)
	if err != nil {
		return nil, err
	}
	for _, r := range Results {
		h.WithLabelValues(r)
	}
	return &Metrics{probe: h}, nil
}

// Observe records one probe; one that asked nothing (no server known,
// interrupted) is not a probe of the DNS and is left out.
func (m *Metrics) Observe(r *Report) {
	if r == nil || r.Result == ResultNone {
		return
	}
	m.probe.WithLabelValues(r.Result).Observe(r.Took.Seconds())
}
