package latency

import (
	"context"
	"fmt"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Watch is the latency measurement as the daemon runs it (a
// watch.Watcher): the programs stay attached, the maps are read every
// latency.window and judged; a CPU whose p99 newly reaches latency.p99Problem
// asks for an IRQ check (and through it a kubelet re-pin, which counts such
// CPUs as net_rx CPUs), and a kubelet pin's effect on the net_rx CPUs' p99 is
// logged one window after the pin.
type Watch struct {
	env   watch.Env
	cfg   Config
	meter *Meter
	why   error // the programs could not be loaded or attached: unknown, said once
	said  bool
	om    *Metrics

	last    Report
	slow    cpuset.Set
	pending *pinEffect
}

type pinEffect struct {
	at     time.Time
	netRx  cpuset.Set
	before float64 // the largest p99 on netRx in the window before the pin, µs (-1: unknown)
}

var _ watch.Watcher = (*Watch)(nil)

// NewWatch measures through r; a nil r with why set makes a watch that
// reports the measurement unavailable (unknown), never a problem.
func NewWatch(env watch.Env, cfg config.Config, r Reader, why error) (*Watch, error) {
	c := ConfigFrom(cfg)
	om, err := NewMetrics(env.Metrics.Registry())
	if err != nil {
		return nil, err
	}
	w := &Watch{env: env, cfg: c, om: om, why: why}
	if r != nil && why == nil {
		if w.meter, err = NewMeter(r); err != nil {
			w.why = err
		}
	}
	if w.why == nil && w.meter == nil {
		w.why = fmt.Errorf("no probe")
	}
	return w, nil
}

// Name is the watcher's name.
func (*Watch) Name() string { return "latency" }

// Check is the check it judges.
func (*Watch) Check() check.Name { return Name }

// Interval is latency.window.
func (w *Watch) Interval() time.Duration { return w.cfg.Window }

// Reconfigure applies the latency.* keys (enabled needs a restart).
func (w *Watch) Reconfigure(cfg config.Config) error {
	w.cfg = ConfigFrom(cfg)
	return nil
}

// Slow returns the CPUs whose p99 reached latency.p99Problem in the last
// window: the kubelet pin treats them as net_rx CPUs.
func (w *Watch) Slow() cpuset.Set { return w.slow }

// PinApplied records that kubelet was just pinned off netRx and returns the
// largest p99 on those CPUs in the last window (µs; false when unknown). One
// full window later the watch logs the p99 after the pin.
func (w *Watch) PinApplied(now time.Time, netRx cpuset.Set) (float64, bool) {
	before, ok := maxP99(w.last, netRx)
	if !ok {
		before = -1
	}
	if w.meter != nil {
		w.pending = &pinEffect{at: now, netRx: netRx, before: before}
	}
	return before, ok
}

func maxP99(r Report, cpus cpuset.Set) (float64, bool) {
	best, ok := 0.0, false
	for _, s := range r.CPUs {
		if cpus.Contains(s.CPU) && (!ok || s.P99us > best) {
			best, ok = s.P99us, true
		}
	}
	return best, ok
}

// Tick reads the maps and judges the window.
func (w *Watch) Tick(_ context.Context, now time.Time) watch.Report {
	if w.meter == nil {
		r := Unavailable(w.why, w.cfg)
		if !w.said {
			w.said = true
			w.env.Log.Info("NET_RX softirq latency is not measured: "+w.why.Error(), logging.KeyCheck, string(Name))
		}
		return watch.Report{Verdict: r.Verdict, Detail: r, Every: w.cfg.Window}
	}
	stats, err := w.meter.Next()
	if err != nil {
		return watch.Report{Err: fmt.Errorf("read the latency maps: %w", err)}
	}
	w.om.Observe(w.meter.prev)
	r := Judge(stats, w.cfg.Window, w.cfg)
	w.last = r
	slow := r.Slow(w.cfg.P99Problem)
	rep := watch.Report{Verdict: r.Verdict, Detail: r, Every: w.cfg.Window}
	if added := slow.Difference(w.slow); !added.IsEmpty() {
		worst, _ := maxP99(r, added)
		rep.Trigger = fmt.Sprintf("NET_RX softirqs wait p99 %s on CPUs %s", fmtUs(worst), added)
	}
	w.slow = slow
	if p := w.pending; p != nil && now.Sub(p.at) >= w.cfg.Window {
		w.pending = nil
		after, ok := maxP99(r, p.netRx)
		if !ok {
			after = -1
		}
		w.env.Log.Info(fmt.Sprintf("kubelet pin's effect: NET_RX softirq wait p99 on the net_rx CPUs %s: %s before, %s after",
			p.netRx, usText(p.before), usText(after)),
			logging.Msg(logging.MsgKubeletPinEffect), logging.KeyCheck, string(Name), logging.KeyCPUs, p.netRx.List(),
			logging.KeyP99BeforeUs, p.before, logging.KeyP99AfterUs, after)
	}
	return rep
}

func usText(v float64) string {
	if v < 0 {
		return "no samples"
	}
	return fmtUs(v)
}
