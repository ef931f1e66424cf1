// Package metrics owns nodekeeper's Prometheus metrics and the HTTP endpoint
// that serves them: a registry of its own (never the global one) holding every
// metric of the contract, typed setters that keep label values inside the
// contract's enumerations, a collector that exports the latest snapshots
// (NIC IRQ and VMBus channel CPUs, unusable indexes) as they are at scrape
// time, and the /metrics + /healthz server.
//
// Label values that come from outside (NIC names, queue and zone names) may
// hold any bytes; they are exported escaped with package printable, because
// a label value must be valid UTF-8.
//
// A label value outside the contract is a programming error: the setter
// records nothing, counts it (InvalidLabelValues) and logs it when a logger
// was given (SetLogger), and never panics.
package metrics

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/policy"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/printable"
)

const namespace = "nodekeeper"

// Scheduled event types (label type). Azure documents these five; any other
// type is counted as EventTypeOther, so the label stays bounded whatever the
// metadata service sends.
const (
	EventTypeFreeze    = "Freeze"
	EventTypeReboot    = "Reboot"
	EventTypeRedeploy  = "Redeploy"
	EventTypePreempt   = "Preempt"
	EventTypeTerminate = "Terminate"
	EventTypeOther     = "Other"
)

var (
	statuses    = []check.Status{check.OK, check.Problem, check.Unknown}
	statusNames = []string{string(check.OK), string(check.Problem), string(check.Unknown)}
	evTypes     = []string{EventTypeFreeze, EventTypeReboot, EventTypeRedeploy, EventTypePreempt, EventTypeTerminate}
)

// Histogram buckets, in seconds.
var (
	// One check: microseconds (irq) to the 1 s sampling window (rates).
	checkBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// Resume → spread verified: settleDelay (5 s) plus a repair and its
	// verification, up to 10 minutes.
	pauseBuckets = []float64{1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600}
	// One compaction of a NUMA node: typically 0.1–0.3 s.
)

// Metrics holds nodekeeper's registry and metrics. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	checkStatus        *prometheus.GaugeVec
	checkDuration      *prometheus.HistogramVec
	snap               *snapshots
	scheduledEvents    *prometheus.CounterVec
	imdsUp             prometheus.Gauge
	vmPauses           *prometheus.CounterVec
	pauseToVerified    *prometheus.HistogramVec
	remediations       *prometheus.CounterVec
	irqbalanceBuggy    prometheus.Gauge
	kubeletAllowedCPUs prometheus.Gauge
	kubeletOverlapCPUs prometheus.Gauge
	softirqSaturated   prometheus.Gauge
	buildInfo          *prometheus.GaugeVec
	errorsTotal        *prometheus.CounterVec

	mu         sync.Mutex             // guards build, imdsOnline and the declared names
	checks     map[check.Name]bool    // declared by the daemon: the check label's values
	components map[Component]bool     // the component label's values
	actions    map[policy.Action]bool // the action label's values
	build      [2]string
	imdsOnline bool

	invalid atomic.Uint64
	log     atomic.Pointer[slog.Logger]
}

// New returns Metrics with a registry of their own holding every metric of
// the contract (nodekeeper_imds_up only after EnableIMDS), the compaction
// duration histogram, and the Go and process collectors.
//
// Counters are pre-initialised at 0 where an alert on their increase needs
// the series to exist before the first event: remediations_total for every
// action with result success and failure, and verify_timeout for the actions
// that are verified (irqbalance_restart, irqbalance_sighup, irq_spread,
// kubelet_pin); vm_pauses_total{source="clock"} (and source="imds" plus
// scheduled_events_total{type="Freeze"} once IMDS is enabled); every outcome
// of pause_to_verified_seconds. Skips, compactions (their NUMA nodes are not
// known yet) and check statuses (absent until a check ran) are not.
func New() *Metrics {
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		checks:     map[check.Name]bool{},
		components: map[Component]bool{},
		actions:    map[policy.Action]bool{},
	}
	m.checkStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "check_status",
		Help: "1 for the check's current status (ok, problem or unknown), 0 for the other two.",
	}, []string{"check", "status"})
	m.checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "check_duration_seconds",
		Help:    "How long one run of a check took.",
		Buckets: checkBuckets,
	}, []string{"check"})
	m.snap = newSnapshots()
	m.scheduledEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "scheduled_events_total",
		Help: "Distinct Azure scheduled events seen for this VM, by event type.",
	}, []string{"type"})
	m.imdsUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "imds_up",
		Help: "1 when the last poll of the Azure instance metadata service succeeded, else 0.",
	})
	m.vmPauses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "vm_pauses_total",
		Help: "VM pauses seen, by how they were seen: a gap in the daemon's clock, or an Azure Freeze event.",
	}, []string{"source"})
	m.pauseToVerified = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "pause_to_verified_seconds",
		Help:    "Time from the end of a VM pause until the NIC IRQ spread was verified, by outcome; only pauses whose resume time is known.",
		Buckets: pauseBuckets,
	}, []string{"outcome"})
	m.remediations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "remediations_total",
		Help: "Repairs nodekeeper ran, or held back, by action and result.",
	}, []string{"action", "result"})
	m.irqbalanceBuggy = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "irqbalance_known_buggy",
		Help: "1 when the installed irqbalance is a release that never migrates IRQs once placed, else 0.",
	})
	m.kubeletAllowedCPUs = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "kubelet_allowed_cpus",
		Help: "Number of CPUs kubelet may run on; 0 when nodekeeper has not pinned it.",
	})
	m.kubeletOverlapCPUs = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "kubelet_netrx_overlap_cpus",
		Help: "Number of kubelet's CPUs that also serve network receive (net_rx) work.",
	})
	m.softirqSaturated = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "softirq_saturated_cpus",
		Help: "Number of CPUs saturated by softirq work now.",
	})
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which nodekeeper version runs and the Go version it was built with.",
	}, []string{"version", "goversion"})

	m.errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "errors_total",
		Help: "Errors nodekeeper met and went on from (each is logged once per reason), by component.",
	}, []string{"component"})

	m.reg.MustRegister(
		m.errorsTotal,
		m.checkStatus, m.checkDuration, m.snap,
		m.scheduledEvents, m.vmPauses, m.pauseToVerified, m.remediations,
		m.irqbalanceBuggy, m.kubeletAllowedCPUs, m.kubeletOverlapCPUs,
		m.softirqSaturated,
		m.buildInfo,
		// The same Go and process collectors as the collectors package's, built
		// from the prometheus package: importing collectors links database/sql
		// (its DB stats collector) into every run of the binary, and `nodekeeper
		// check`, which the node-problem-detector starts every minute, paid
		// about 0.5 ms of its start-up for it (median of 400 interleaved runs).
		//lint:ignore SA1019 the collectors package only forwards to these
		prometheus.NewGoCollector(),
		//lint:ignore SA1019 the collectors package only forwards to these
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
	)

	m.vmPauses.WithLabelValues(string(freeze.SourceClock))
	for _, o := range freeze.Outcomes {
		m.pauseToVerified.WithLabelValues(string(o))
	}
	for _, c := range components {
		m.DeclareComponent(c)
	}
	m.SetBuildInfo(defaultVersion())
	return m
}

// Component names a part of the daemon that counts the errors it goes on
// from (label component of errors_total). The daemon's own are here; each
// watcher's is its name, declared when it is registered.
type Component string

// The daemon's own components.
const (
	ComponentReload     Component = "reload"
	ComponentSymptoms   Component = "symptoms"
	ComponentKubelet    Component = "kubelet"
	ComponentCompaction Component = "compaction"
	ComponentState      Component = "state"
	ComponentNotify     Component = "notify"
)

var components = []Component{ComponentReload, ComponentSymptoms, ComponentKubelet, ComponentCompaction, ComponentState, ComponentNotify}

// DeclareComponent makes c a value of the component label: its errors_total
// series exists, at zero, from now on.
func (m *Metrics) DeclareComponent(c Component) {
	if !m.validName("errors_total", "component", string(c)) {
		return
	}
	m.mu.Lock()
	m.components[c] = true
	m.mu.Unlock()
	m.errorsTotal.WithLabelValues(string(c))
}

// DeclareCheck makes c a value of the check label (check_status,
// check_duration_seconds). The daemon declares every check it runs; a check
// not declared is not recorded, so the label stays the contract's set.
func (m *Metrics) DeclareCheck(c check.Name) {
	if !m.validName("check_status", "check", string(c)) {
		return
	}
	m.mu.Lock()
	m.checks[c] = true
	m.mu.Unlock()
}

// declared reports whether v is in set, counting and logging it when not.
func declared[T ~string](m *Metrics, metric, label string, v T, set map[T]bool) bool {
	m.mu.Lock()
	ok := set[v]
	m.mu.Unlock()
	return ok || m.valid(metric, label, string(v), nil)
}

// IncError counts one error a component went on from.
func (m *Metrics) IncError(c Component) {
	if !declared(m, "errors_total", "component", c, m.components) {
		return
	}
	m.errorsTotal.WithLabelValues(string(c)).Inc()
}

// Registry returns the registry holding the metrics, for serving and tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetLogger makes invalid label values be logged (at error level) as well as
// counted.
func (m *Metrics) SetLogger(l *slog.Logger) { m.log.Store(l) }

// InvalidLabelValues is the number of setter calls dropped because a label
// value was outside the contract. Anything but 0 is a bug in the caller.
func (m *Metrics) InvalidLabelValues() uint64 { return m.invalid.Load() }

// valid reports whether v is one of allowed for label of metric; if not it
// counts (and logs) the programming error.
func (m *Metrics) valid(metric, label, v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	m.invalid.Add(1)
	if l := m.log.Load(); l != nil {
		l.Error("metric not recorded: label value outside the contract",
			"metric", namespace+"_"+metric, "label", label, "value", v)
	}
	return false
}

// SetCheckStatus sets check_status to 1 for status and to 0 for the two other
// statuses of check.
func (m *Metrics) SetCheckStatus(c check.Name, status check.Status) {
	if !declared(m, "check_status", "check", c, m.checks) || !m.valid("check_status", "status", string(status), statusNames) {
		return
	}
	// The zeros go first, so a scrape in between never sees two statuses at 1.
	for _, s := range statuses {
		if s != status {
			m.checkStatus.WithLabelValues(string(c), string(s)).Set(0)
		}
	}
	m.checkStatus.WithLabelValues(string(c), string(status)).Set(1)
}

// ObserveCheckDuration records how long one run of check took.
func (m *Metrics) ObserveCheckDuration(c check.Name, d time.Duration) {
	if !declared(m, "check_duration_seconds", "check", c, m.checks) {
		return
	}
	m.checkDuration.WithLabelValues(string(c)).Observe(d.Seconds())
}

// validName accepts a declared name (a check, a component) that is a short
// identifier: the types keep outside strings out, this keeps a future
// conversion from making a label of anything.
func (m *Metrics) validName(metric, label, v string) bool {
	ok := len(v) > 0 && len(v) <= 32
	for _, r := range v {
		ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}
	return ok || m.valid(metric, label, v, nil)
}

// NICIRQ is one NIC queue IRQ and the CPU it is assigned to.
type NICIRQ struct {
	Interface string // the interface users know the NIC by
	Queue     string // the queue name, e.g. comp0 or input.0
	IRQ       int
	CPU       int // negative when unknown: no series
}

// SetNICIRQs makes irqs the nic_irq_cpu snapshot: the next scrape exports
// exactly these (IRQs no longer listed are gone). If an (interface, queue,
// irq) appears twice, the last one counts.
func (m *Metrics) SetNICIRQs(irqs []NICIRQ) {
	var b seriesBuilder
	for _, q := range irqs {
		if q.CPU >= 0 {
			b.add(float64(q.CPU), q.Interface, q.Queue, strconv.Itoa(q.IRQ))
		}
	}
	m.snap.set(snapNICIRQ, b.series())
}

// VMBusChannel is one channel of an Azure synthetic NIC and its target CPU.
type VMBusChannel struct {
	Interface string
	Channel   string
	CPU       int // negative when unknown: no series
}

// SetVMBusChannels makes chans the vmbus_channel_cpu snapshot: channels no
// longer listed are gone from the next scrape.
func (m *Metrics) SetVMBusChannels(chans []VMBusChannel) {
	var b seriesBuilder
	for _, c := range chans {
		if c.CPU >= 0 {
			b.add(float64(c.CPU), c.Interface, c.Channel)
		}
	}
	m.snap.set(snapVMBus, b.series())
}

// IncScheduledEvent counts one distinct scheduled event for this VM (call it
// once per event id, not once per poll). Types Azure does not document are
// counted as EventTypeOther.
func (m *Metrics) IncScheduledEvent(eventType string) {
	t := EventTypeOther
	for _, k := range evTypes {
		if eventType == k {
			t = k
		}
	}
	m.scheduledEvents.WithLabelValues(t).Inc()
}

// EnableIMDS registers nodekeeper_imds_up (at 0 until SetIMDSUp) and
// pre-initialises the IMDS series; calling it again does nothing.
func (m *Metrics) EnableIMDS() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.imdsOnline {
		return
	}
	m.imdsUp.Set(0)
	m.reg.MustRegister(m.imdsUp)
	m.vmPauses.WithLabelValues(string(freeze.SourceIMDS))
	m.scheduledEvents.WithLabelValues(EventTypeFreeze)
	m.imdsOnline = true
}

// DisableIMDS takes nodekeeper_imds_up away again (IMDS turned off by a
// configuration reload); calling it when not enabled does nothing.
func (m *Metrics) DisableIMDS() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.imdsOnline {
		return
	}
	m.reg.Unregister(m.imdsUp)
	m.imdsOnline = false
}

// SetIMDSUp records whether the last IMDS poll succeeded. It is exported only
// while IMDS is enabled.
func (m *Metrics) SetIMDSUp(up bool) { m.imdsUp.Set(b2f(up)) }

// IncVMPause counts one VM pause seen by source (SourceClock or SourceIMDS).
func (m *Metrics) IncVMPause(source freeze.Source) {
	if source != freeze.SourceClock && source != freeze.SourceIMDS {
		m.valid("vm_pauses_total", "source", string(source), nil)
		return
	}
	m.vmPauses.WithLabelValues(string(source)).Inc()
}

// ObservePauseToVerified records the time from a resume to the verified IRQ
// spread, for a pause whose resume time is known.
func (m *Metrics) ObservePauseToVerified(outcome freeze.Outcome, d time.Duration) {
	if !slices.Contains(freeze.Outcomes, outcome) {
		m.valid("pause_to_verified_seconds", "outcome", string(outcome), nil)
		return
	}
	m.pauseToVerified.WithLabelValues(string(outcome)).Observe(d.Seconds())
}

// DeclareAction makes a a value of the action label of remediations_total,
// with the series of results pre-initialised at zero (so a rate over the
// first repair is not lost). The daemon declares the repairs it may run; a
// watcher that repairs declares its own.
func (m *Metrics) DeclareAction(a policy.Action, results ...policy.Result) {
	if !m.validName("remediations_total", "action", string(a)) {
		return
	}
	m.mu.Lock()
	m.actions[a] = true
	m.mu.Unlock()
	for _, r := range results {
		m.remediations.WithLabelValues(string(a), string(r))
	}
}

// IncRemediation counts one repair (or one held back) by action and result.
func (m *Metrics) IncRemediation(a policy.Action, r policy.Result) {
	if !declared(m, "remediations_total", "action", a, m.actions) ||
		(!slices.Contains(policy.Results, r) && !m.valid("remediations_total", "result", string(r), nil)) {
		return
	}
	m.remediations.WithLabelValues(string(a), string(r)).Inc()
}

// SetIrqbalanceKnownBuggy records whether the installed irqbalance is a
// release that never migrates IRQs.
func (m *Metrics) SetIrqbalanceKnownBuggy(buggy bool) { m.irqbalanceBuggy.Set(b2f(buggy)) }

// SetKubeletAllowedCPUs records how many CPUs kubelet may run on (0 when
// nodekeeper has not pinned it).
func (m *Metrics) SetKubeletAllowedCPUs(n int) { m.kubeletAllowedCPUs.Set(float64(n)) }

// SetKubeletNetRxOverlapCPUs records how many of kubelet's CPUs are net_rx
// CPUs too.
func (m *Metrics) SetKubeletNetRxOverlapCPUs(n int) { m.kubeletOverlapCPUs.Set(float64(n)) }

// SetSoftirqSaturatedCPUs records how many CPUs are saturated by softirq work.
func (m *Metrics) SetSoftirqSaturatedCPUs(n int) { m.softirqSaturated.Set(float64(n)) }

// UnusableIndex is the unusable free space index of one zone of one NUMA node.
type UnusableIndex struct {
	Node  int
	Zone  string // as /proc/buddyinfo names it: DMA, DMA32, Normal, Movable…
	Index float64
}

// SetMemoryUnusableIndexes makes idx the memory_unusable_index snapshot:
// zones no longer listed are gone from the next scrape.
func (m *Metrics) SetMemoryUnusableIndexes(idx []UnusableIndex) {
	var b seriesBuilder
	for _, u := range idx {
		b.add(u.Index, strconv.Itoa(u.Node), u.Zone)
	}
	m.snap.set(snapUnusable, b.series())
}

// SetBuildInfo sets build_info to the running version (New starts with the
// module version Go recorded, or "unknown"); the Go version comes from the
// runtime.
func (m *Metrics) SetBuildInfo(version string) {
	if version == "" {
		version = "unknown"
	}
	k := [2]string{printable.Escape(version), runtime.Version()}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.build != k && m.build != ([2]string{}) {
		m.buildInfo.DeleteLabelValues(m.build[:]...)
	}
	m.buildInfo.WithLabelValues(k[:]...).Set(1)
	m.build = k
}

func defaultVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "unknown"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
