package symptoms

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Watch is the symptom watchers as the daemon runs them (a watch.Watcher):
// a Watcher sampled every TickInterval(window), its verdict recorded, its
// transitions logged once each, and a saturation turned into an immediate
// IRQ check.
type Watch struct {
	env     watch.Env
	w       *Watcher
	cfg     config.Config
	snap    Snapshot
	active  atomic.Bool // read by the compaction goroutine
	cgroups bool        // the cgroup explosion was said
	kubelet bool        // kubelet's kernel time was said
}

var _ watch.Watcher = (*Watch)(nil)

// StateEvery paces the softirq result in the state file: a tick is cheap, a
// file rewrite every tick is not. `check softirq` takes the result while it
// is younger than twice this.
const StateEvery = 30 * time.Second

// NewWatch builds the watch over env's host.
func NewWatch(env watch.Env, cfg config.Config) (*Watch, error) {
	w, err := NewWatcher(env.FS, ConfigFrom(cfg), Options{})
	if err != nil {
		return nil, err
	}
	return &Watch{env: env, w: w, cfg: cfg}, nil
}

// Check is the check it judges.
func (*Watch) Check() check.Name { return CheckName }

// Name is the watcher's name.
func (*Watch) Name() string { return "symptoms" }

// Interval is the sampling period for the configured window.
func (s *Watch) Interval() time.Duration { return TickInterval(s.cfg.Symptoms.Window) }

// Reconfigure applies the symptoms.* keys.
func (s *Watch) Reconfigure(cfg config.Config) error {
	if err := s.w.SetConfig(ConfigFrom(cfg)); err != nil {
		return err
	}
	s.cfg = cfg
	return nil
}

// Snapshot is the latest tick's snapshot (main loop only).
func (s *Watch) Snapshot() Snapshot { return s.snap }

// Saturated reports whether a softirq saturation is active; safe from any
// goroutine.
func (s *Watch) Saturated() bool { return s.active.Load() }

// SetKubeletPID follows kubelet to a new main process.
func (s *Watch) SetKubeletPID(pid int) { s.w.SetKubeletPID(pid) }

// Tick samples the host once.
func (s *Watch) Tick(_ context.Context, now time.Time) watch.Report {
	snap, err := s.w.Tick(now)
	if err != nil {
		return watch.Report{Err: fmt.Errorf("symptom watchers cannot read the host: %w", err)}
	}
	was := s.snap.Active()
	s.snap = snap
	if !snap.Ready {
		return watch.Report{}
	}
	s.active.Store(snap.Active())
	s.env.Metrics.SetSoftirqSaturatedCPUs(snap.Saturated.Len())
	rep := snap.Report()
	out := watch.Report{Verdict: rep.Verdict, Every: StateEvery, Detail: struct {
		Report
		Snapshot Snapshot `json:"snapshot"`
	}{rep, snap}}
	log := s.env.Log
	if snap.Cgroups.Explosion != s.cgroups {
		s.cgroups = snap.Cgroups.Explosion
		if snap.Cgroups.Explosion {
			log.Warn(fmt.Sprintf("%d cgroups on this node (symptoms.cgroupWarn %d): kubelet's housekeeping grows with them",
				snap.Cgroups.Count, s.cfg.Symptoms.CgroupWarn), logging.Msg(logging.MsgCgroupExplosion), "cgroups", snap.Cgroups.Count)
		}
	}
	if snap.Kubelet.High != s.kubelet {
		s.kubelet = snap.Kubelet.High
		if snap.Kubelet.High {
			log.Warn(fmt.Sprintf("kubelet spends %.0f%% of a CPU in the kernel", 100*snap.Kubelet.SystemShare),
				logging.Msg(logging.MsgKubeletSystemCPU), "unit", s.cfg.Kubelet.Unit, "cpu_share", snap.Kubelet.SystemShare)
		}
	}
	if snap.Active() && !was {
		// A saturation is the symptom itself: check the IRQ spread and
		// kubelet's CPUs now.
		log.Warn("softirq saturation: "+rep.Message, logging.Msg(logging.MsgSoftirqSaturated), "cpus", snap.Saturated.List())
		out.Trigger = "softirq saturation"
	}
	return out
}
