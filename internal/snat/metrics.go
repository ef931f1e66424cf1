package snat

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/printable"
)

// Metrics are the SNAT series of the contract, exported from the latest scan
// at scrape time (a source that went away is simply not emitted):
// nodekeeper_snat_demand_ports{proto}, nodekeeper_snat_allocated_ports,
// nodekeeper_snat_public_flows, nodekeeper_snat_flows{namespace,pod} (the
// top sources by flows, then one "other" series: never more than
// MaxFlowSeries+1), and the histogram nodekeeper_conntrack_dump_seconds.
type Metrics struct {
	demand, allocated, public, flows *prometheus.Desc
	dump                             prometheus.Histogram

	mu   sync.Mutex
	last *Report // nil until a scan judged the table
}

// MaxFlowSeries bounds nodekeeper_snat_flows: the top sources, the rest summed
// into pod="other".
const MaxFlowSeries = 10

// dumpBuckets: a quiet node's table dumps in milliseconds; a million entries
// take seconds.
var dumpBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics registers the SNAT series with reg, or takes the ones already
// registered there (a daemon restarted in the same process).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		demand: prometheus.NewDesc("nodekeeper_snat_demand_ports",
			"Concurrent public flows that need distinct SNAT ports towards the busiest destination, by protocol.", []string{"proto"}, nil),
		allocated: prometheus.NewDesc("nodekeeper_snat_allocated_ports",
			"The node's SNAT port budget per destination (snat.allocatedPorts, Azure's default table, or 1024).", nil, nil),
		public: prometheus.NewDesc("nodekeeper_snat_public_flows",
			"Conntrack flows towards public destinations: each spends a load-balancer SNAT port.", nil, nil),
		flows: prometheus.NewDesc("nodekeeper_snat_flows",
			"Public flows by source: the top pods (or pod=\"host\", pod=\"unknown\"), the rest in pod=\"other\".", []string{"namespace", "pod"}, nil),
		dump: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "nodekeeper", Name: "conntrack_dump_seconds",
			Help: "Wall time of one read of the conntrack table.", Buckets: dumpBuckets,
		}),
	}
	return metrics.Register(reg, m)
}

// Observe records a scan: its report (nil or unknown keeps the last good
// one, so a failed dump does not make the series vanish and reappear) and the
// dump's wall time.
func (m *Metrics) Observe(r *Report, took time.Duration) {
	m.dump.Observe(took.Seconds())
	if r == nil || r.Status == "unknown" {
		return
	}
	m.mu.Lock()
	m.last = r
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.demand
	ch <- m.allocated
	ch <- m.public
	ch <- m.flows
	m.dump.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.dump.Collect(ch)
	m.mu.Lock()
	r := m.last
	m.mu.Unlock()
	if r == nil {
		return
	}
	for _, proto := range []string{"tcp", "udp"} {
		ch <- prometheus.MustNewConstMetric(m.demand, prometheus.GaugeValue, float64(r.DemandByProto[proto]), proto)
	}
	ch <- prometheus.MustNewConstMetric(m.allocated, prometheus.GaugeValue, float64(r.AllocatedPorts))
	ch <- prometheus.MustNewConstMetric(m.public, prometheus.GaugeValue, float64(r.PublicFlows))
	for _, s := range FlowSeries(r) {
		ch <- prometheus.MustNewConstMetric(m.flows, prometheus.GaugeValue, float64(s.Flows), s.Namespace, s.Pod)
	}
}

// FlowSeries are the snat_flows series of a report: one per pod, "host" and
// "unknown" (sources merged by name), the first MaxFlowSeries by flows, and
// the rest — including the flows past the report's own top sources — in
// pod="other". Names are escaped to printable UTF-8.
func FlowSeries(r *Report) []FlowSeriesValue {
	var out []FlowSeriesValue
	at := map[[2]string]int{}
	named := 0
	for _, s := range r.Sources {
		key := [2]string{"", s.Kind} // host, unknown
		if s.Kind == KindPod {
			key = [2]string{printable.Escape(s.Namespace), printable.Escape(s.Pod)}
		}
		named += s.Flows
		if i, ok := at[key]; ok {
			out[i].Flows += s.Flows
			continue
		}
		at[key] = len(out)
		out = append(out, FlowSeriesValue{Namespace: key[0], Pod: key[1], Flows: s.Flows})
	}
	// Sources come sorted by flows; merging can raise an entry.
	slices.SortStableFunc(out, func(a, b FlowSeriesValue) int { return b.Flows - a.Flows })
	other := max(r.PublicFlows-named, 0)
	if len(out) > MaxFlowSeries {
		for _, s := range out[MaxFlowSeries:] {
			other += s.Flows
		}
		out = out[:MaxFlowSeries]
	}
	if other > 0 {
		out = append(out, FlowSeriesValue{Pod: "other", Flows: other})
	}
	return out
}

// FlowSeriesValue is one nodekeeper_snat_flows series.
type FlowSeriesValue struct {
	Namespace, Pod string
	Flows          int
}
