// Package symptoms owns the cheap, periodic view of the symptoms nodekeeper
// exists for: CPUs saturated by softirq work (softirq share of CPU time from
// /proc/stat, time_squeeze and drops from /proc/net/softnet_stat, NET_RX per
// CPU from /proc/softirqs), starving ksoftirqd threads on those CPUs, a cgroup
// explosion (the root's cgroup.stat on v2, /proc/cgroups on v1 and hybrid
// hosts — never a walk of the tree), and kubelet's system CPU time.
//
// A Watcher reads each file once per Tick and turns the counters into
// derived signals (shares and rates over a window, a saturation verdict):
// the raw counters are node_exporter's business, not nodekeeper's.
package symptoms

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// userHZ is the unit of /proc/stat and /proc/<pid>/stat times: USER_HZ is 100
// on every Linux architecture (the kernel converts to it for user space).
const userHZ = 100

// Config is the symptoms section of the configuration.
type Config struct {
	// SoftirqBusyThreshold is the share of a CPU's time in softirq over
	// Window from which the CPU counts as saturated.
	SoftirqBusyThreshold float64 `json:"softirq_busy_threshold"`
	// Window is the span shares and rates are computed over.
	Window time.Duration `json:"window"`
	// SqueezePerSecond is the time_squeeze rate from which a CPU counts as
	// saturated.
	SqueezePerSecond float64 `json:"squeeze_per_second"`
	// CgroupWarn is the cgroup count from which it is an explosion.
	CgroupWarn uint64 `json:"cgroup_warn"`
	// KubeletSystemCPUWarn is kubelet's system-time share of one CPU from
	// which it is too high.
	KubeletSystemCPUWarn float64 `json:"kubelet_system_cpu_warn"`
}

// DefaultConfig is the documented default.
func DefaultConfig() Config {
	return Config{
		SoftirqBusyThreshold: 0.9,
		Window:               10 * time.Second,
		SqueezePerSecond:     100,
		CgroupWarn:           50000,
		KubeletSystemCPUWarn: 0.5,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case !(c.SoftirqBusyThreshold > 0 && c.SoftirqBusyThreshold <= 1):
		return fmt.Errorf("softirqBusyThreshold: %v is outside (0, 1]", c.SoftirqBusyThreshold)
	case c.Window <= 0:
		return errors.New("window: must be positive")
	case !(c.SqueezePerSecond > 0):
		return fmt.Errorf("squeezePerSecond: %v must be positive", c.SqueezePerSecond)
	case c.CgroupWarn == 0:
		return errors.New("cgroupWarn: must be positive")
	case !(c.KubeletSystemCPUWarn > 0):
		return fmt.Errorf("kubeletSystemCPUWarn: %v must be positive", c.KubeletSystemCPUWarn)
	}
	return nil
}

// TickInterval is a tick period that fits window: two samples per window,
// between 1 s and 5 s. Every tick wakes the daemon on every node; with the
// default 10 s window that is once per 5 s.
func TickInterval(window time.Duration) time.Duration {
	return min(max(window/2, time.Second), 5*time.Second)
}

// CPUSignal is one online CPU's derived signals over the snapshot's span.
type CPUSignal struct {
	CPU int `json:"cpu"`
	// SoftirqShare is the share of the CPU's time spent in softirq
	// (ksoftirqd included), 0–1.
	SoftirqShare     float64 `json:"softirq_share"`
	NetRxPerSecond   float64 `json:"net_rx_per_second"`
	SqueezePerSecond float64 `json:"time_squeeze_per_second"`
	DropsPerSecond   float64 `json:"drops_per_second"`
	// Why the CPU is saturated (any of them makes it so).
	Busy     bool `json:"busy,omitempty"`     // SoftirqShare ≥ softirqBusyThreshold
	Squeezed bool `json:"squeezed,omitempty"` // SqueezePerSecond ≥ squeezePerSecond
	Dropping bool `json:"dropping,omitempty"` // the drop counter rose
	// Ksoftirqd is the CPU's ksoftirqd thread, for saturated CPUs only.
	Ksoftirqd *KsoftirqdSignal `json:"ksoftirqd,omitempty"`
}

// Saturated reports whether any saturation signal holds.
func (c CPUSignal) Saturated() bool { return c.Busy || c.Squeezed || c.Dropping }

// KsoftirqdSignal is a saturated CPU's ksoftirqd thread, measured between the
// previous tick and this one while the CPU stayed saturated.
type KsoftirqdSignal struct {
	PID int `json:"pid"`
	// Measured is false on the first tick of a saturation (one sample, no rate).
	Measured bool `json:"measured"`
	// CPUShare is the thread's CPU time as a share of one CPU.
	CPUShare float64 `json:"cpu_share"`
	// RunqWaitShare is the share of wall time the thread was runnable but
	// waiting for its CPU (schedstat): ksoftirqd starving.
	RunqWaitShare float64 `json:"runq_wait_share"`
}

// CgroupSignal is the host's cgroup count.
type CgroupSignal struct {
	Known bool `json:"known"`
	// Source is "cgroup.stat" (v2: the root's nr_descendants) or "cgroups"
	// (v1 and hybrid: the largest num_cgroups of /proc/cgroups).
	Source string `json:"source,omitempty"`
	Count  uint64 `json:"count"`
	Dying  uint64 `json:"dying"` // v2 only
	// Explosion is Count ≥ cgroupWarn.
	Explosion bool `json:"explosion"`
}

// KubeletSignal is kubelet's CPU time over the snapshot's span, as a share of
// one CPU.
type KubeletSignal struct {
	PID         int     `json:"pid,omitempty"`
	Known       bool    `json:"known"`
	SystemShare float64 `json:"system_share"`
	UserShare   float64 `json:"user_share"`
	// High is SystemShare ≥ kubeletSystemCPUWarn.
	High bool `json:"high"`
}

// Snapshot is one Tick's result: plain values, ready for metrics and the
// state file.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Ready is false until two samples exist: no rates, no verdict.
	Ready bool `json:"ready"`
	// Span is the time the rates and shares cover (about the window).
	Span time.Duration `json:"span_ns"`
	CPUs []CPUSignal   `json:"cpus"`
	// Saturated are the CPUs saturated by softirq work now.
	Saturated cpuset.Set `json:"saturated_cpus"`
	// SaturatedSince is when the current saturation began (zero when none).
	SaturatedSince time.Time     `json:"saturated_since,omitzero"`
	Cgroups        CgroupSignal  `json:"cgroups"`
	Kubelet        KubeletSignal `json:"kubelet"`
	// Errors are sources that could not be read this tick (a missing
	// kernel feature is not an error and is not listed).
	Errors []string `json:"errors,omitempty"`
}

// Active reports whether a softirq saturation is active.
func (s Snapshot) Active() bool { return !s.Saturated.IsEmpty() }

// NetRxCPUs are the CPUs that did at least minShare of the node's NET_RX
// softirqs over the span.
func (s Snapshot) NetRxCPUs(minShare float64) cpuset.Set {
	var total float64
	for _, c := range s.CPUs {
		total += c.NetRxPerSecond
	}
	if total <= 0 {
		return cpuset.Set{}
	}
	var cpus []int
	for _, c := range s.CPUs {
		if c.NetRxPerSecond > 0 && c.NetRxPerSecond/total >= minShare {
			cpus = append(cpus, c.CPU)
		}
	}
	return cpuset.New(cpus...)
}

// Options are the Watcher's optional inputs.
type Options struct {
	// KubeletPID is kubelet's MainPID (0: unknown); see SetKubeletPID.
	KubeletPID int
}

const (
	haveStat uint8 = 1 << iota
	haveSoftnet
	haveNetRx
)

type cpuCounters struct {
	have                        uint8
	softirq, total              uint64
	processed, dropped, squeeze uint32
	netrx                       uint64
}

type procTimes struct {
	pid          int
	start        uint64
	utime, stime uint64
}

type sample struct {
	t       time.Time
	cpus    []cpuCounters // indexed by CPU number
	kubelet procTimes     // pid 0: none
}

type threadSample struct {
	pid      int
	t        time.Time
	ticks    uint64
	waitNs   uint64
	haveWait bool
}

const (
	cgroupUnprobed = iota
	cgroupV2
	cgroupV1
	cgroupNone
)

// maxSamples bounds the history kept for the window, whatever the tick rate.
const maxSamples = 64

// ksoftirqdRescan is the least time between two searches of /proc for
// ksoftirqd threads.
const ksoftirqdRescan = time.Minute

// Watcher turns periodic reads into Snapshots. Tick is not safe for
// concurrent use; SetKubeletPID is.
type Watcher struct {
	fs  *hostfs.FS
	cfg Config

	kubeletPID atomic.Int64

	statPath, softnetPath, softirqsPath, cgroupStatPath, procCgroupsPath string

	statBuf, softnetBuf, softirqsBuf, smallBuf []byte
	stats                                      []CPUStat
	softnet                                    []SoftnetStat
	netrx                                      []IRQCount
	online                                     []int
	saturated                                  []int

	samples []*sample // oldest first
	spare   []*sample

	cgroupMode int

	kubeletPath    string
	kubeletPathPID int

	ksoftThreads  map[int]ksoftirqdThread // CPU → its ksoftirqd thread (cache)
	ksoftPrev     map[int]threadSample    // CPU → the thread's previous sample
	ksoftScanned  time.Time
	ksoftScanDone bool
	ksoftScans    int // searches of /proc so far

	saturatedSince time.Time
}

// NewWatcher returns a Watcher over the host behind fsys.
func NewWatcher(fsys *hostfs.FS, cfg Config, opt Options) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("symptoms config: %w", err)
	}
	w := &Watcher{
		fs:              fsys,
		cfg:             cfg,
		statPath:        fsys.Proc("stat"),
		softnetPath:     fsys.Proc("net", "softnet_stat"),
		softirqsPath:    fsys.Proc("softirqs"),
		cgroupStatPath:  fsys.Cgroup("cgroup.stat"),
		procCgroupsPath: fsys.Proc("cgroups"),
		statBuf:         make([]byte, 0, 16<<10),
		softnetBuf:      make([]byte, 0, 4<<10),
		softirqsBuf:     make([]byte, 0, 4<<10),
		smallBuf:        make([]byte, 0, 1024),
		ksoftThreads:    map[int]ksoftirqdThread{},
		ksoftPrev:       map[int]threadSample{},
	}
	w.kubeletPID.Store(int64(opt.KubeletPID))
	return w, nil
}

// SetKubeletPID sets kubelet's MainPID (0: none), e.g. when systemd reports a
// restart. The next tick starts a new measurement.
func (w *Watcher) SetKubeletPID(pid int) { w.kubeletPID.Store(int64(pid)) }

// SetConfig replaces the thresholds (SIGHUP). Call it between ticks.
func (w *Watcher) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("symptoms config: %w", err)
	}
	w.cfg = cfg
	return nil
}

// read reads path into *buf. A missing file is (nil, nil): a kernel without
// that feature.
func read(path string, buf *[]byte) ([]byte, error) {
	b, err := hostfs.ReadFile(path, *buf)
	*buf = b
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Tick reads the host once and returns the signals over the window ending
// at now. The first tick (and the first after the clock went backwards) has
// no rates: Ready is false. The error is only for /proc/stat, without which
// nothing can be judged; other sources that fail are listed in
// Snapshot.Errors.
func (w *Watcher) Tick(now time.Time) (Snapshot, error) {
	snap := Snapshot{Time: now}
	b, err := read(w.statPath, &w.statBuf)
	if err == nil && b == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return snap, fmt.Errorf("read %s: %w", w.statPath, err)
	}
	if w.stats, err = ParseStat(b, w.stats); err != nil {
		return snap, fmt.Errorf("%s: %w", w.statPath, err)
	}
	w.online = w.online[:0]
	maxCPU := 0
	for _, s := range w.stats {
		w.online = append(w.online, s.CPU)
		maxCPU = max(maxCPU, s.CPU)
	}

	w.softnet = w.softnet[:0]
	if b, err := read(w.softnetPath, &w.softnetBuf); err != nil {
		snap.Errors = append(snap.Errors, err.Error())
	} else if b != nil {
		if w.softnet, err = ParseSoftnet(b, w.online, w.softnet); err != nil {
			snap.Errors = append(snap.Errors, err.Error())
		}
	}
	for _, s := range w.softnet {
		maxCPU = max(maxCPU, s.CPU)
	}

	w.netrx = w.netrx[:0]
	if b, err := read(w.softirqsPath, &w.softirqsBuf); err != nil {
		snap.Errors = append(snap.Errors, err.Error())
	} else if b != nil {
		if w.netrx, err = ParseSoftirqs(b, "NET_RX", w.netrx); err != nil {
			snap.Errors = append(snap.Errors, err.Error())
		}
	}
	for _, s := range w.netrx {
		maxCPU = max(maxCPU, s.CPU)
	}

	cur := w.newSample(now, maxCPU+1)
	for _, s := range w.stats {
		c := &cur.cpus[s.CPU]
		c.have |= haveStat
		c.softirq, c.total = s.SoftIRQ, s.Total()
	}
	for _, s := range w.softnet {
		c := &cur.cpus[s.CPU]
		c.have |= haveSoftnet
		c.processed, c.dropped, c.squeeze = s.Processed, s.Dropped, s.TimeSqueeze
	}
	for _, s := range w.netrx {
		c := &cur.cpus[s.CPU]
		c.have |= haveNetRx
		c.netrx = s.Count
	}

	snap.Cgroups = w.cgroups(&snap)
	cur.kubelet = w.kubelet(&snap)

	// The baseline: the newest sample at least a window old, else the oldest.
	if n := len(w.samples); n > 0 && now.Before(w.samples[n-1].t) {
		w.dropSamples(n) // the clock went backwards: start over
	}
	var base *sample
	baseIdx := -1
	for i, s := range w.samples {
		if now.Sub(s.t) >= w.cfg.Window || i == 0 {
			base, baseIdx = s, i
		}
	}
	if base != nil && now.Sub(base.t) > 0 {
		w.derive(&snap, base, cur)
	} else {
		snap.CPUs = make([]CPUSignal, len(w.online))
		for i, cpu := range w.online {
			snap.CPUs[i].CPU = cpu
		}
		w.saturatedSince = time.Time{}
		w.ksoftirqdDrop(nil)
	}
	if baseIdx > 0 {
		w.dropSamples(baseIdx)
	}
	if len(w.samples) >= maxSamples {
		w.dropSamples(1)
	}
	w.samples = append(w.samples, cur)
	return snap, nil
}

func (w *Watcher) newSample(t time.Time, n int) *sample {
	var s *sample
	if k := len(w.spare); k > 0 {
		s, w.spare = w.spare[k-1], w.spare[:k-1]
	} else {
		s = &sample{}
	}
	s.t = t
	if cap(s.cpus) < n {
		s.cpus = make([]cpuCounters, n)
	} else {
		s.cpus = s.cpus[:n]
		clear(s.cpus)
	}
	s.kubelet = procTimes{}
	return s
}

// dropSamples moves the n oldest samples to the spare list.
func (w *Watcher) dropSamples(n int) {
	w.spare = append(w.spare, w.samples[:n]...)
	w.samples = append(w.samples[:0], w.samples[n:]...)
}

// derive fills the rates, shares and verdicts of snap from base to cur.
func (w *Watcher) derive(snap *Snapshot, base, cur *sample) {
	span := cur.t.Sub(base.t)
	secs := span.Seconds()
	snap.Ready, snap.Span = true, span
	snap.CPUs = make([]CPUSignal, len(w.online))
	w.saturated = w.saturated[:0]
	for i, cpu := range w.online {
		sig := &snap.CPUs[i]
		sig.CPU = cpu
		c := cur.cpus[cpu]
		if cpu >= len(base.cpus) {
			continue
		}
		p := base.cpus[cpu]
		both := c.have & p.have
		if both&haveStat != 0 && c.total > p.total && c.softirq >= p.softirq {
			sig.SoftirqShare = min(float64(c.softirq-p.softirq)/float64(c.total-p.total), 1)
			sig.Busy = sig.SoftirqShare >= w.cfg.SoftirqBusyThreshold
		}
		if both&haveSoftnet != 0 {
			sig.SqueezePerSecond = float64(c.squeeze-p.squeeze) / secs // 32-bit counters: wrap-safe
			sig.DropsPerSecond = float64(c.dropped-p.dropped) / secs
			sig.Squeezed = sig.SqueezePerSecond >= w.cfg.SqueezePerSecond
			sig.Dropping = c.dropped != p.dropped
		}
		if both&haveNetRx != 0 {
			sig.NetRxPerSecond = float64(counterDelta32(p.netrx, c.netrx)) / secs
		}
		if sig.Saturated() {
			w.saturated = append(w.saturated, cpu)
		}
	}
	w.deriveKubelet(snap, base, cur)
	if len(w.saturated) == 0 {
		w.saturatedSince = time.Time{}
		w.ksoftirqdDrop(nil)
		return
	}
	snap.Saturated = cpuset.New(w.saturated...)
	if w.saturatedSince.IsZero() {
		w.saturatedSince = snap.Time
	}
	snap.SaturatedSince = w.saturatedSince
	w.ksoftirqdDrop(w.saturated)
	for i := range snap.CPUs {
		if snap.CPUs[i].Saturated() {
			snap.CPUs[i].Ksoftirqd = w.ksoftirqdSignal(snap, snap.CPUs[i].CPU)
		}
	}
}

// deriveKubelet measures kubelet from the oldest sample, from base on, of
// the same process (same PID and start time): a restarted kubelet is measured
// from its first sample instead of waiting out a window.
func (w *Watcher) deriveKubelet(snap *Snapshot, base, cur *sample) {
	k := cur.kubelet
	if k.pid == 0 {
		return
	}
	var from *sample
	for _, s := range w.samples {
		if s.t.Before(base.t) {
			continue
		}
		if s.kubelet.pid == k.pid && s.kubelet.start == k.start {
			from = s
			break
		}
	}
	if from == nil || k.stime < from.kubelet.stime || k.utime < from.kubelet.utime {
		return
	}
	secs := cur.t.Sub(from.t).Seconds()
	if secs <= 0 {
		return
	}
	snap.Kubelet.Known = true
	snap.Kubelet.SystemShare = float64(k.stime-from.kubelet.stime) / userHZ / secs
	snap.Kubelet.UserShare = float64(k.utime-from.kubelet.utime) / userHZ / secs
	snap.Kubelet.High = snap.Kubelet.SystemShare >= w.cfg.KubeletSystemCPUWarn
}

// counterDelta32 is b − a for a kernel counter that is 32 bits wide (and
// wraps) while it fits in 32 bits, 64-bit otherwise.
func counterDelta32(a, b uint64) uint64 {
	if a <= 0xffffffff && b <= 0xffffffff {
		return uint64(uint32(b) - uint32(a))
	}
	if b < a {
		return 0
	}
	return b - a
}

func (w *Watcher) cgroups(snap *Snapshot) CgroupSignal {
	var sig CgroupSignal
	if w.cgroupMode == cgroupUnprobed || w.cgroupMode == cgroupV2 {
		b, err := read(w.cgroupStatPath, &w.smallBuf)
		switch {
		case err != nil:
			snap.Errors = append(snap.Errors, err.Error())
			return sig
		case b != nil:
			st, err := ParseCgroupStat(b)
			if err != nil {
				snap.Errors = append(snap.Errors, fmt.Sprintf("%s: %v", w.cgroupStatPath, err))
				return sig
			}
			w.cgroupMode = cgroupV2
			sig = CgroupSignal{Known: true, Source: "cgroup.stat", Count: st.Descendants, Dying: st.DyingDescendants}
			sig.Explosion = sig.Count >= w.cfg.CgroupWarn
			return sig
		}
		w.cgroupMode = cgroupV1 // no unified root: v1 or hybrid
	}
	if w.cgroupMode == cgroupV1 {
		b, err := read(w.procCgroupsPath, &w.smallBuf)
		switch {
		case err != nil:
			snap.Errors = append(snap.Errors, err.Error())
		case b == nil:
			w.cgroupMode = cgroupNone
		default:
			n, err := ParseProcCgroups(b)
			if err != nil {
				snap.Errors = append(snap.Errors, fmt.Sprintf("%s: %v", w.procCgroupsPath, err))
				return sig
			}
			sig = CgroupSignal{Known: true, Source: "cgroups", Count: n}
			sig.Explosion = sig.Count >= w.cfg.CgroupWarn
		}
	}
	return sig
}

func (w *Watcher) kubelet(snap *Snapshot) procTimes {
	pid := int(w.kubeletPID.Load())
	snap.Kubelet.PID = pid
	if pid <= 0 {
		return procTimes{}
	}
	if pid != w.kubeletPathPID {
		w.kubeletPath, w.kubeletPathPID = w.fs.Proc(strconv.Itoa(pid), "stat"), pid
	}
	b, err := read(w.kubeletPath, &w.smallBuf)
	if err != nil || b == nil { // gone: it restarts, systemd tells the new PID
		return procTimes{}
	}
	st, err := ParsePidStat(b)
	if err != nil {
		snap.Errors = append(snap.Errors, fmt.Sprintf("%s: %v", w.kubeletPath, err))
		return procTimes{}
	}
	return procTimes{pid: pid, start: st.StartTime, utime: st.UTime, stime: st.STime}
}
