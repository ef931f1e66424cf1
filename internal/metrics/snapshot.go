package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/printable"
)

// The snapshot series: each is replaced whole by its setter and exported as
// it is at scrape time, as node_exporter's collectors do, so a series that
// went away (an IRQ after a VF was re-added, a zone) simply is not emitted;
// nothing to delete, nothing to linger.
const (
	snapNICIRQ = iota
	snapVMBus
	snapUnusable
	snapCount
)

// snapshots is the prometheus.Collector of the snapshot series.
type snapshots struct {
	descs [snapCount]*prometheus.Desc

	mu   sync.Mutex
	last [snapCount][]series
}

// series is one sample of a snapshot: its label values (escaped, in the
// order of the Desc's labels) and value.
type series struct {
	labels []string
	value  float64
}

func newSnapshots() *snapshots {
	var s snapshots
	s.descs[snapNICIRQ] = prometheus.NewDesc(namespace+"_nic_irq_cpu",
		"The CPU a NIC queue IRQ is assigned to.",
		[]string{"interface", "queue", "irq"}, nil)
	s.descs[snapVMBus] = prometheus.NewDesc(namespace+"_vmbus_channel_cpu",
		"The CPU an Azure synthetic NIC (VMBus) channel targets.",
		[]string{"interface", "channel"}, nil)
	s.descs[snapUnusable] = prometheus.NewDesc(namespace+"_memory_unusable_index",
		"Unusable free space index at the configured compaction order, by NUMA node and zone: 0 when all free memory is usable, 1 when none is.",
		[]string{"node", "zone"}, nil)
	return &s
}

var _ prometheus.Collector = (*snapshots)(nil)

func (s *snapshots) set(which int, ss []series) {
	s.mu.Lock()
	s.last[which] = ss
	s.mu.Unlock()
}

// Describe sends the three Descs.
func (s *snapshots) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

// Collect sends the latest snapshots as const gauges. The slices are never
// changed once set, so they are sent outside the lock.
func (s *snapshots) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	for i, ss := range last {
		for _, x := range ss {
			m, err := prometheus.NewConstMetric(s.descs[i], prometheus.GaugeValue, x.value, x.labels...)
			if err != nil {
				continue // cannot happen with escaped values and the right count; never panic over a label
			}
			ch <- m
		}
	}
}

// seriesBuilder collects one snapshot: label values escaped (a NIC name may
// hold any byte; a label value must be UTF-8), and a series whose labels
// come again replaces the earlier one in place, since a registry refuses
// two samples with the same labels.
type seriesBuilder struct {
	out   []series
	index map[string]int
}

func (b *seriesBuilder) add(v float64, labels ...string) {
	esc := make([]string, len(labels))
	for i, l := range labels {
		esc[i] = printable.Escape(l)
	}
	key := strings.Join(esc, "\xff") // 0xff never occurs in escaped text
	if i, ok := b.index[key]; ok {
		b.out[i].value = v
		return
	}
	if b.index == nil {
		b.index = make(map[string]int)
	}
	b.index[key] = len(b.out)
	b.out = append(b.out, series{labels: esc, value: v})
}

func (b *seriesBuilder) series() []series { return b.out }
