// Package compaction owns memory compaction: the fragmentation of each NUMA node
// read from /proc/buddyinfo (never /proc/pagetypeinfo, which walks the free
// lists with the zone lock held and interrupts off), the policy that decides
// when a node is compacted (fragmentation above a threshold, a jittered
// periodic safety net, never while softirq work is saturating CPUs), the
// compaction itself with its measurements (wall time, /proc/vmstat compact_*
// deltas, the index before and after), and the compaction check.
//
// Compaction runs synchronously in the writer's context and costs CPU for up to
// hundreds of milliseconds: Manager.Start runs it on a goroutine of its own so
// the daemon's loop, its checks and its watchdog keep going.
package compaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Mode is the compaction.mode setting.
type Mode string

const (
	// ModeFragmentation compacts a node whose unusable free space index is
	// above the threshold, plus the periodic safety net.
	ModeFragmentation Mode = "fragmentation"
	// ModePeriodic runs only the periodic safety net.
	ModePeriodic Mode = "periodic"
	// ModeOff never compacts.
	ModeOff Mode = "off"
)

// Reason is why a compaction runs (the reason label of
// nodekeeper_compactions_total).
type Reason string

const (
	ReasonFragmentation Reason = "fragmentation"
	ReasonSafety        Reason = "safety"
)

// Skip says why a decided compaction does not run now. The empty Skip runs.
type Skip string

const (
	SkipNone        Skip = ""
	SkipDryRun      Skip = "dry_run"     // dry-run: logged, not written
	SkipCooldown    Skip = "cooldown"    // the node was compacted less than minInterval ago
	SkipBusy        Skip = "busy"        // a compaction is still running
	SkipSaturation  Skip = "saturation"  // a softirq saturation is active
	SkipUnsupported Skip = "unsupported" // the kernel offers no compaction file for the node
)

// Config is the compaction section of the configuration.
type Config struct {
	Mode                   Mode          `json:"mode"`
	CheckInterval          time.Duration `json:"check_interval"`
	Order                  int           `json:"order"`
	UnusableIndexThreshold float64       `json:"unusable_index_threshold"`
	SafetyInterval         time.Duration `json:"safety_interval"`
	MinInterval            time.Duration `json:"min_interval"`
	DryRun                 bool          `json:"dry_run"`
}

// DefaultConfig is the documented default: the configuration package's,
// mapped by ConfigFrom.
func DefaultConfig() Config { return ConfigFrom(config.Default(), false) }

// Validate reports the first invalid field. The bounds are the configuration
// package's (config.CompactionMinOrder…), so a value the configuration file
// accepts is one the manager accepts and the other way round.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeFragmentation, ModePeriodic, ModeOff:
	default:
		return fmt.Errorf("mode: %q is not fragmentation, periodic or off", c.Mode)
	}
	switch {
	case c.CheckInterval < config.CompactionMinCheckInterval:
		return fmt.Errorf("checkInterval: must be at least %v", config.CompactionMinCheckInterval)
	case c.Order < config.CompactionMinOrder || c.Order > config.CompactionMaxOrder:
		return fmt.Errorf("order: %d is outside %d-%d", c.Order, config.CompactionMinOrder, config.CompactionMaxOrder)
	case !(c.UnusableIndexThreshold >= 0 && c.UnusableIndexThreshold <= 1):
		return fmt.Errorf("unusableIndexThreshold: %v is outside 0-1", c.UnusableIndexThreshold)
	case c.SafetyInterval < config.CompactionMinSafetyInterval:
		return fmt.Errorf("safetyInterval: must be at least %v", config.CompactionMinSafetyInterval)
	case c.MinInterval < config.CompactionMinMinInterval:
		return fmt.Errorf("minInterval: must be at least %v", config.CompactionMinMinInterval)
	}
	return nil
}

// Decision is what the policy decided for one node at one check.
type Decision struct {
	Node     int     `json:"node"`
	Reason   Reason  `json:"reason"`
	Unusable float64 `json:"unusable_index"`
	Skip     Skip    `json:"skip,omitempty"`
}

// Run reports whether the decision is to compact now.
func (d Decision) Run() bool { return d.Skip == SkipNone }

// ErrUnsupported says the kernel offers no compaction file (no
// CONFIG_COMPACTION, or a /sys and /proc/sys that hide it).
var ErrUnsupported = errors.New("no compaction file for this node")

// ErrDeferred is the Err of a compaction Start did not run because a softirq
// saturation began or ctx ended before its turn.
var ErrDeferred = errors.New("compaction deferred")

// Result is one compaction and what it did.
type Result struct {
	Node   int    `json:"node"`
	Reason Reason `json:"reason"`
	// Target is the file written: the node's compact file, or the
	// system-wide compact_memory (all nodes) when the node has none.
	Target   string        `json:"target,omitempty"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	// VMStatDelta is the change of every /proc/vmstat compact_* counter over
	// the compaction (compact_migrate_scanned, compact_free_scanned and
	// compact_isolated count this compaction's work).
	VMStatDelta map[string]uint64 `json:"vmstat_delta,omitempty"`
	// IndexBefore and IndexAfter are the node's unusable free space index at
	// the configured order just before and after; −1 when buddyinfo could not
	// be read.
	IndexBefore float64 `json:"index_before"`
	IndexAfter  float64 `json:"index_after"`
	Err         error   `json:"-"`
}

// MarshalJSON adds Err as "error".
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	v := struct {
		plain
		Error string `json:"error,omitempty"`
	}{plain: plain(r)}
	if r.Err != nil {
		v.Error = r.Err.Error()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads "error" back into Err (as a plain error).
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	var v struct {
		plain
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Result(v.plain)
	if v.Error != "" {
		r.Err = errors.New(v.Error)
	}
	return nil
}

// Success reports whether the compaction was written without error.
func (r Result) Success() bool { return r.Err == nil }

// Helped reports whether the compaction ran and left the node at or below
// threshold.
func (r Result) Helped(threshold float64) bool {
	return r.Err == nil && r.IndexAfter >= 0 && r.IndexAfter <= threshold
}

// Options are the Manager's collaborators; every field has a default.
type Options struct {
	Clock clock.Clock // default clock.Real
	// Jitter returns a uniform random number in [0, 1); it spreads the safety
	// net over a fleet. Default math/rand/v2.
	Jitter func() float64
	// Saturated reports an active softirq saturation; Start checks it before
	// each node so a batch stops when one begins. Optional.
	Saturated func() bool
	Logger    *slog.Logger // default: discard
}

// Manager decides and runs compactions. Its methods are safe for concurrent use.
type Manager struct {
	fs  *hostfs.FS
	clk clock.Clock
	opt Options
	log *slog.Logger

	// write is hostfs.WriteFile; tests replace it to simulate the kernel.
	write func(path string, data []byte) error

	readMu  sync.Mutex
	readBuf []byte

	mu         sync.Mutex
	cfg        Config
	nextSafety time.Time
	running    bool
	updated    time.Time
	latest     []NodeIndex
	nodes      map[int]*nodeState
}

type nodeState struct {
	aboveSince  time.Time
	lastAttempt time.Time // last start (or dry-run decision): paces minInterval
	prevAttempt time.Time // lastAttempt before the current reservation
	last        *Result
	target      string
	targetKnown bool
}

// NewManager returns a Manager for the host behind fsys.
func NewManager(fsys *hostfs.FS, cfg Config, opt Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("compaction config: %w", err)
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Jitter == nil {
		opt.Jitter = rand.Float64
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		fs: fsys, clk: opt.Clock, opt: opt, log: log,
		write: hostfs.WriteFile,
		cfg:   cfg,
		nodes: map[int]*nodeState{},
	}, nil
}

// SetConfig replaces the configuration (SIGHUP). A changed mode or safety
// interval reschedules the safety net.
func (m *Manager) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("compaction config: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cfg.Mode != m.cfg.Mode || cfg.SafetyInterval != m.cfg.SafetyInterval {
		m.nextSafety = time.Time{}
	}
	m.cfg = cfg
	return nil
}

// Config returns the configuration in use.
func (m *Manager) Config() Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Read reads /proc/buddyinfo once and returns every node's indices at the
// configured order.
func (m *Manager) Read() ([]NodeIndex, error) {
	order := m.Config().Order
	m.readMu.Lock()
	defer m.readMu.Unlock()
	zones, err := readBuddyinfo(m.fs, &m.readBuf)
	if err != nil {
		return nil, err
	}
	return Indices(zones, order), nil
}

func readBuddyinfo(fsys *hostfs.FS, buf *[]byte) ([]Zone, error) {
	path := fsys.Proc("buddyinfo")
	b, err := hostfs.ReadFile(path, *buf)
	*buf = b
	if err != nil {
		return nil, fmt.Errorf("read buddyinfo: %w", err)
	}
	zones, err := ParseBuddyinfo(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return zones, nil
}

// CompactPath is the file that compacts node: the node's own compact file,
// else the system-wide compact_memory (which compacts every node), else
// ok=false (compaction is not possible).
func CompactPath(fsys *hostfs.FS, node int) (path string, ok bool) {
	p := fsys.Sys("devices", "system", "node", "node"+strconv.Itoa(node), "compact")
	if _, err := os.Stat(p); err == nil {
		return p, true
	}
	p = fsys.Proc("sys", "vm", "compact_memory")
	if _, err := os.Stat(p); err == nil {
		return p, true
	}
	return "", false
}

func (m *Manager) node(n int) *nodeState {
	ns := m.nodes[n]
	if ns == nil {
		ns = &nodeState{}
		m.nodes[n] = ns
	}
	return ns
}

// targetLocked resolves (once per node) the file that compacts n.
func (m *Manager) targetLocked(n int) (string, bool) {
	ns := m.node(n)
	if !ns.targetKnown {
		ns.target, _ = CompactPath(m.fs, n)
		ns.targetKnown = true
	}
	return ns.target, ns.target != ""
}

// Decide is the policy, run at every check with the indices just read. It
// returns one Decision per node that is due for compaction, with Skip set
// when it must not run now. Decisions that run reserve their node: pass
// them to Start. In dry-run the decision is logged and paced as if it ran.
//
// Rules: mode off decides nothing; mode fragmentation decides a node whose
// unusable index is above the threshold, at most once per minInterval; both
// fragmentation and periodic decide every node when the safety net is due
// (every safetyInterval ± 10 %, the first one uniformly within
// [½, 1½] safetyInterval of the first check so a fleet started together does
// not compact together). Nothing starts while saturationActive or while a
// compaction is running; a deferred safety net stays due.
func (m *Manager) Decide(now time.Time, nodes []NodeIndex, saturationActive bool) []Decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := m.cfg
	m.updated = now
	m.latest = nodes
	for _, ni := range nodes {
		ns := m.node(ni.Node)
		if ni.Unusable > cfg.UnusableIndexThreshold {
			if ns.aboveSince.IsZero() {
				ns.aboveSince = now
			}
		} else {
			ns.aboveSince = time.Time{}
		}
	}
	if cfg.Mode == ModeOff {
		return nil
	}
	if m.nextSafety.IsZero() {
		m.nextSafety = now.Add(scale(cfg.SafetyInterval, 0.5+m.opt.Jitter()))
	}
	safetyDue := !now.Before(m.nextSafety)

	var out []Decision
	for _, ni := range nodes {
		ns := m.node(ni.Node)
		d := Decision{Node: ni.Node, Unusable: ni.Unusable}
		switch {
		case cfg.Mode == ModeFragmentation && ni.Unusable > cfg.UnusableIndexThreshold:
			d.Reason = ReasonFragmentation
		case safetyDue:
			d.Reason = ReasonSafety
		default:
			continue
		}
		if _, ok := m.targetLocked(ni.Node); !ok {
			d.Skip = SkipUnsupported
		} else if !ns.lastAttempt.IsZero() && now.Sub(ns.lastAttempt) < cfg.MinInterval {
			d.Skip = SkipCooldown
		}
		out = append(out, d)
	}

	deferred := false
	for i := range out {
		d := &out[i]
		if d.Skip != SkipNone {
			continue
		}
		switch {
		case m.running:
			d.Skip, deferred = SkipBusy, true
		case saturationActive:
			d.Skip, deferred = SkipSaturation, true
		case cfg.DryRun:
			d.Skip = SkipDryRun
		}
		switch d.Skip {
		case SkipNone, SkipDryRun:
			ns := m.node(d.Node)
			ns.prevAttempt, ns.lastAttempt = ns.lastAttempt, now
		}
		switch d.Skip {
		case SkipDryRun:
			m.log.Info("compaction (dry run): would compact", "node", d.Node, "reason", string(d.Reason),
				"unusable_index", d.Unusable, "order", cfg.Order)
		case SkipSaturation:
			m.log.Info("compaction deferred: softirq saturation active", "node", d.Node, "reason", string(d.Reason))
		}
	}
	if safetyDue && !deferred {
		m.nextSafety = now.Add(scale(cfg.SafetyInterval, 0.9+0.2*m.opt.Jitter()))
	}
	return out
}

func scale(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

// NextSafety is when the safety net is next due (zero before the first Decide).
func (m *Manager) NextSafety() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nextSafety
}

// Running reports whether a Start batch is still compacting.
func (m *Manager) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// compactionNice is the nice value of the thread that writes the compaction
// file: the kernel does the compaction in that thread's context, so this
// keeps it behind kubelet and the workloads' own threads.
const compactionNice = 10

// Start runs the decisions that Run, one node after the other, on a
// goroutine (and OS thread) of its own, and returns a channel that receives
// each Result and is closed when the batch ends. started is false — and the
// channel already closed — when there is nothing to run or a batch is still
// running. When ctx ends or Options.Saturated reports a saturation, the
// remaining nodes get a Result with ErrDeferred and are decided again at the
// next check.
func (m *Manager) Start(ctx context.Context, ds []Decision) (results <-chan Result, started bool) {
	var run []Decision
	for _, d := range ds {
		if d.Run() {
			run = append(run, d)
		}
	}
	closed := make(chan Result)
	close(closed)
	if len(run) == 0 {
		return closed, false
	}
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return closed, false
	}
	m.running = true
	m.mu.Unlock()

	ch := make(chan Result, len(run))
	go func() {
		// The thread is not unlocked: it ends with the goroutine, and its
		// lowered priority with it.
		runtime.LockOSThread()
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), compactionNice); err != nil {
			m.log.Warn("compaction runs at normal priority: cannot lower its thread's", "nice", compactionNice, "err", err)
		}
		defer func() {
			m.mu.Lock()
			m.running = false
			m.mu.Unlock()
			close(ch)
		}()
		for _, d := range run {
			if err := ctx.Err(); err != nil {
				ch <- m.postpone(d, fmt.Errorf("%w: %w", ErrDeferred, err))
				continue
			}
			if m.opt.Saturated != nil && m.opt.Saturated() {
				ch <- m.postpone(d, fmt.Errorf("%w: softirq saturation active", ErrDeferred))
				continue
			}
			ch <- m.Compact(ctx, d.Node, d.Reason)
		}
	}()
	return ch, true
}

// postpone undoes the reservation of a decision that did not run.
func (m *Manager) postpone(d Decision, err error) Result {
	m.mu.Lock()
	ns := m.node(d.Node)
	ns.lastAttempt = ns.prevAttempt
	if d.Reason == ReasonSafety {
		m.nextSafety = m.clk.Now()
	}
	m.mu.Unlock()
	m.log.Info("compaction deferred", "node", d.Node, "reason", string(d.Reason), "err", err)
	return Result{Node: d.Node, Reason: d.Reason, Start: m.clk.Now(), IndexBefore: -1, IndexAfter: -1, Err: err}
}

// Compact compacts node now, synchronously, and measures it: the wall time of
// the write, the compact_* counters of /proc/vmstat before and after, and the
// node's unusable index before and after. It records the result for State
// and the check. Errors are in Result.Err.
func (m *Manager) Compact(ctx context.Context, node int, reason Reason) Result {
	order := m.Config().Order
	r := Result{Node: node, Reason: reason, Start: m.clk.Now(), IndexBefore: -1, IndexAfter: -1}
	m.mu.Lock()
	path, ok := m.targetLocked(node)
	m.mu.Unlock()

	if !ok {
		r.Err = fmt.Errorf("compact node %d: %w", node, ErrUnsupported)
	} else if err := ctx.Err(); err != nil {
		r.Err = fmt.Errorf("compact node %d: %w", node, err)
	} else {
		r.Target = path
		var buf []byte
		r.IndexBefore = m.nodeUnusable(node, order, &buf)
		before, _ := m.readVMStat(&buf)
		t0 := m.clk.Now()
		err := m.write(path, []byte("1"))
		r.Duration = m.clk.Now().Sub(t0)
		after, _ := m.readVMStat(&buf)
		r.IndexAfter = m.nodeUnusable(node, order, &buf)
		r.VMStatDelta = vmstatDelta(before, after)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w (%w)", ErrUnsupported, err)
			}
			r.Err = fmt.Errorf("compact node %d: %w", node, err)
		}
	}

	m.mu.Lock()
	ns := m.node(node)
	if ns.lastAttempt.Before(r.Start) {
		ns.lastAttempt = r.Start
	}
	if errors.Is(r.Err, ErrUnsupported) {
		ns.targetKnown = false // look again next time
	}
	rc := r
	ns.last = &rc
	m.mu.Unlock()

	if r.Err != nil {
		m.log.Warn("compaction failed", "node", node, "reason", string(reason), "err", r.Err)
	} else {
		m.log.Info("compacted", "node", node, "reason", string(reason), "duration", r.Duration,
			"index_before", r.IndexBefore, "index_after", r.IndexAfter,
			"migrate_scanned", r.VMStatDelta["compact_migrate_scanned"],
			"free_scanned", r.VMStatDelta["compact_free_scanned"],
			"isolated", r.VMStatDelta["compact_isolated"])
	}
	return r
}

func (m *Manager) nodeUnusable(node, order int, buf *[]byte) float64 {
	zones, err := readBuddyinfo(m.fs, buf)
	if err != nil {
		return -1
	}
	for _, ni := range Indices(zones, order) {
		if ni.Node == node {
			return ni.Unusable
		}
	}
	return -1
}

func (m *Manager) readVMStat(buf *[]byte) (map[string]uint64, error) {
	b, err := hostfs.ReadFile(m.fs.Proc("vmstat"), *buf)
	*buf = b
	if err != nil {
		return nil, err
	}
	return ParseVMStatCompact(b), nil
}
