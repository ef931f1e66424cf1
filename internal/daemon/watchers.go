package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

// watchers are the symptom watcher and the compaction manager (main loop
// only, except saturated, which the compaction goroutine reads).
type watchers struct {
	sym       *symptoms.Watcher
	snap      symptoms.Snapshot
	saturated atomic.Bool
	explosion bool
	kubeHigh  bool

	written time.Time // when a softirq result last went to the state file

	comp    *compaction.Manager
	results <-chan compaction.Result
	skipLog map[string]bool
}

func symptomsConfig(cfg config.Config) symptoms.Config {
	return symptoms.Config{SoftirqBusyThreshold: cfg.Symptoms.SoftirqBusyThreshold, Window: cfg.Symptoms.Window,
		SqueezePerSecond: cfg.Symptoms.SqueezePerSecond, CgroupWarn: uint64(cfg.Symptoms.CgroupWarn),
		KubeletSystemCPUWarn: cfg.Symptoms.KubeletSystemCPUWarn}
}

func compactionConfig(cfg config.Config, dryRun bool) compaction.Config {
	return compaction.Config{Mode: compaction.Mode(cfg.Compaction.Mode), CheckInterval: cfg.Compaction.CheckInterval,
		Order: cfg.Compaction.Order, UnusableIndexThreshold: cfg.Compaction.UnusableIndexThreshold,
		SafetyInterval: cfg.Compaction.SafetyInterval, MinInterval: cfg.Compaction.MinInterval, DryRun: dryRun}
}

// startWatchers builds both; a failure disables that watcher, says why once,
// and the daemon goes on.
func (d *Daemon) startWatchers() {
	d.w.skipLog = map[string]bool{}
	sym, err := symptoms.NewWatcher(d.d.FS, symptomsConfig(d.cfg), symptoms.Options{})
	if err != nil {
		d.log.Warn("symptom watchers off: "+err.Error(), "check", symptoms.CheckName)
	} else {
		d.w.sym = sym
	}
	comp, err := compaction.NewManager(d.d.FS, compactionConfig(d.cfg, d.dryRun()), compaction.Options{
		Clock: d.d.Clock, Logger: d.log.With("component", "compaction"), Saturated: d.w.saturated.Load})
	if err != nil {
		d.log.Warn("compaction off: "+err.Error(), "check", compaction.CheckName)
		return
	}
	d.w.comp = comp
}

// tickSymptoms runs one watcher tick (a few cheap reads) and acts on it.
func (d *Daemon) tickSymptoms(ctx context.Context) {
	if d.w.sym == nil {
		return
	}
	now := d.d.Clock.Now()
	snap, err := d.w.sym.Tick(now)
	if err != nil {
		d.errorOnce(metrics.ComponentSymptoms, "symptom watchers cannot read the host: "+err.Error(), "check", symptoms.CheckName)
		return
	}
	d.errorCleared(metrics.ComponentSymptoms)
	was := d.w.snap.Active()
	d.w.snap = snap
	if !snap.Ready {
		return
	}
	d.w.saturated.Store(snap.Active())
	m := d.d.Metrics
	m.SetSoftirqSaturatedCPUs(snap.Saturated.Len())
	rep := snap.Report()
	m.SetCheckStatus(symptoms.CheckName, string(rep.Status))
	d.mu.Lock()
	prev := d.st.Checks[symptoms.CheckName].Status
	d.mu.Unlock()
	// The state file is rewritten when the verdict changes, else at most every
	// symptomsStateEvery: a tick is cheap, a file rewrite every tick is not.
	changed := prev != string(rep.Status)
	if changed || now.Sub(d.w.written) >= symptomsStateEvery {
		d.w.written = now
		raw, _ := json.Marshal(struct {
			symptoms.Report
			Snapshot symptoms.Snapshot `json:"snapshot"`
		}{rep, snap})
		d.mu.Lock()
		d.st.Checks[symptoms.CheckName] = state.Check{Time: now, Interval: state.Duration(symptomsStateEvery),
			Status: string(rep.Status), Message: rep.Message, Report: raw}
		d.mu.Unlock()
		defer d.writeState()
	}
	if snap.Cgroups.Explosion != d.w.explosion {
		d.w.explosion = snap.Cgroups.Explosion
		if snap.Cgroups.Explosion {
			d.log.Warn(fmt.Sprintf("%d cgroups on this node (symptoms.cgroupWarn %d): kubelet's housekeeping grows with them",
				snap.Cgroups.Count, d.cfg.Symptoms.CgroupWarn), logging.Msg(logging.MsgCgroupExplosion), "cgroups", snap.Cgroups.Count)
		}
	}
	if snap.Kubelet.High != d.w.kubeHigh {
		d.w.kubeHigh = snap.Kubelet.High
		if snap.Kubelet.High {
			d.log.Warn(fmt.Sprintf("kubelet spends %.0f%% of a CPU in the kernel", 100*snap.Kubelet.SystemShare),
				logging.Msg(logging.MsgKubeletSystemCPU), "unit", d.cfg.Kubelet.Unit, "cpu_share", snap.Kubelet.SystemShare)
		}
	}
	if snap.Active() && !was {
		// A saturation is the symptom itself: check the IRQ spread and
		// kubelet's CPUs now (the policy's cool-downs still apply).
		d.log.Warn("softirq saturation: "+rep.Message, logging.Msg(logging.MsgSoftirqSaturated), "cpus", snap.Saturated.List())
		d.runCheck(ctx, pending{reason: "softirq saturation"})
	}
}

// symptomsStateEvery paces the softirq result in the state file; `check
// softirq` takes it while it is younger than twice this.
const symptomsStateEvery = 30 * time.Second

// checkCompaction reads buddyinfo and starts the compactions the manager
// decides, off the main loop.
func (d *Daemon) checkCompaction(ctx context.Context) {
	c := d.w.comp
	if c == nil {
		return
	}
	nodes, err := c.Read()
	if err != nil {
		d.errorOnce(metrics.ComponentCompaction, "cannot read memory fragmentation: "+err.Error(), "check", compaction.CheckName)
		return
	}
	d.errorCleared(metrics.ComponentCompaction)
	var idx []metrics.UnusableIndex
	for _, n := range nodes {
		for _, z := range n.Zones {
			idx = append(idx, metrics.UnusableIndex{Node: n.Node, Zone: z.Zone, Index: z.Unusable})
		}
	}
	d.d.Metrics.SetMemoryUnusableIndexes(idx)
	decisions := c.Decide(d.d.Clock.Now(), nodes, d.w.saturated.Load())
	for _, dec := range decisions {
		if dec.Skip == compaction.SkipNone || dec.Skip == compaction.SkipBusy {
			continue
		}
		key := fmt.Sprintf("%d/%s/%s", dec.Node, dec.Reason, dec.Skip)
		if dec.Skip == compaction.SkipDryRun {
			d.d.Metrics.IncRemediation(metrics.ActionCompaction, metrics.ResultSkippedDryRun)
		}
		if !d.w.skipLog[key] {
			d.w.skipLog[key] = true
			d.log.Info(fmt.Sprintf("not compacting node %d (%s, index %.2f): %s", dec.Node, dec.Reason, dec.Unusable, dec.Skip),
				logging.Msg(logging.MsgRepairSkipped), "action", metrics.ActionCompaction, "node", dec.Node, "reason", string(dec.Skip))
		}
	}
	if d.w.results == nil {
		if ch, started := c.Start(ctx, decisions); started {
			d.w.results = ch
		}
	}
	d.recordCompaction()
}

// compacted records one compaction's result.
func (d *Daemon) compacted(r compaction.Result) {
	result := metrics.ResultSuccess
	switch {
	case errors.Is(r.Err, compaction.ErrDeferred):
		d.log.Info(fmt.Sprintf("compaction of node %d deferred: %v", r.Node, r.Err), "node", r.Node)
		return
	case r.Err != nil:
		result = metrics.ResultFailure
	}
	d.d.Metrics.ObserveCompaction(r.Node, string(r.Reason), result, r.Duration)
	attrs := []any{logging.Msg(logging.MsgCompactionRan), "node", r.Node, "reason", string(r.Reason), "result", result,
		"seconds", r.Duration.Seconds(), "index_before", r.IndexBefore, "index_after", r.IndexAfter}
	for k, v := range r.VMStatDelta {
		attrs = append(attrs, k, v)
	}
	msg := fmt.Sprintf("compacted node %d (%s) in %.0f ms: unusable index %.2f → %.2f",
		r.Node, r.Reason, float64(r.Duration)/float64(time.Millisecond), r.IndexBefore, r.IndexAfter)
	if r.Err != nil {
		d.log.Error("compaction failed: "+r.Err.Error(), attrs...)
	} else {
		d.log.Info(msg, attrs...)
	}
	d.addAction(state.Action{Action: metrics.ActionCompaction, Result: result, Detail: msg, Seconds: r.Duration.Seconds()})
	d.recordCompaction()
}

func (d *Daemon) recordCompaction() {
	rep := d.w.comp.Report()
	d.d.Metrics.SetCheckStatus(compaction.CheckName, string(rep.Status))
	raw, _ := json.Marshal(struct {
		compaction.Report
		State compaction.State `json:"state"`
	}{rep, d.w.comp.State()})
	d.mu.Lock()
	d.st.Checks[compaction.CheckName] = state.Check{Time: d.d.Clock.Now(), Interval: state.Duration(d.cfg.Compaction.CheckInterval),
		Status: string(rep.Status), Message: rep.Message, Report: raw}
	d.mu.Unlock()
	d.writeState()
}
