package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/state"
)

// kubeletState is the daemon's view of kubelet's pin (main loop only).
type kubeletState struct {
	gate     *policy.Gate
	mode     kubelet.Mode
	applied  cpuset.Set // what nodekeeper applied ("" = no pin of ours)
	partial  bool       // a pin failed, maybe after storing AllowedCPUs=: that is ours to take away too
	at       time.Time
	netrx    []uint64 // NET_RX counts at the last check, for rates
	netrxAt  time.Time
	rates    []float64
	lastWhy  string
	reserved cpuset.Set
	pid      uint32 // kubelet's main process as last seen
}

// readReserved reads kubelet's reservedSystemCPUs (start and reload).
func (d *Daemon) readReserved() {
	s, path, err := kubelet.Reserved(d.d.FS)
	switch {
	case err != nil:
		d.log.Warn("cannot read kubelet's reservedSystemCPUs: "+err.Error(), "unit", d.cfg.Kubelet.Unit)
	case !s.IsEmpty() && !s.Equal(d.kube.reserved):
		d.log.Info(fmt.Sprintf("kubelet's reservedSystemCPUs is %s (%s): preferring those CPUs for kubelet", s, path),
			"unit", d.cfg.Kubelet.Unit, "cpus", s.List())
	}
	d.kube.reserved = s
}

func (d *Daemon) pinner() *kubelet.Pinner {
	return &kubelet.Pinner{FS: d.d.FS, Units: d.units, Unit: d.cfg.Kubelet.Unit, Mode: d.kube.mode}
}

// sampleNetRx updates the NET_RX rates per CPU. The symptom watcher already
// reads /proc/softirqs every tick: its rates over the window are used when it
// has them, and /proc/softirqs is read here only when it has none.
func (d *Daemon) sampleNetRx() {
	if snap := d.w.snap; snap.Ready && len(snap.CPUs) > 0 {
		rates := make([]float64, snap.CPUs[len(snap.CPUs)-1].CPU+1)
		for _, c := range snap.CPUs {
			if c.CPU >= 0 && c.CPU < len(rates) {
				rates[c.CPU] = c.NetRxPerSecond
			}
		}
		d.kube.rates, d.kube.netrx = rates, nil
		return
	}
	counts, err := kubelet.NetRxCounts(d.d.FS)
	if err != nil {
		d.errorOnce(metrics.ComponentKubelet, "cannot read NET_RX counts for kubelet's CPUs: "+err.Error())
		return
	}
	now := d.d.Clock.Now()
	if d.kube.netrx != nil {
		d.kube.rates = kubelet.Rates(d.kube.netrx, counts, now.Sub(d.kube.netrxAt))
	}
	d.kube.netrx, d.kube.netrxAt = counts, now
}

// reconcileKubelet chooses kubelet's CPUs from the latest IRQ report and
// applies them when the choice calls for it (hysteresis: a new choice is
// applied when the applied set overlaps net_rx CPUs while a disjoint choice
// exists, or repinInterval has passed).
func (d *Daemon) reconcileKubelet(ctx context.Context, rep *irq.Report, trigger string) {
	cfg := d.cfg.Kubelet
	if d.units == nil {
		return
	}
	if cfg.Pinning == config.PinningOff {
		if d.kube.ours() || d.pinnedInState() {
			d.unpinKubelet(ctx, "kubelet.pinning is off")
		}
		return
	}
	pin, err := d.pinner().Read(ctx)
	if err != nil {
		d.errorOnce(metrics.ComponentKubelet, "cannot read "+cfg.Unit+"'s CPUs: "+err.Error(), "unit", cfg.Unit)
		return
	}
	d.errorCleared(metrics.ComponentKubelet)
	if !pin.Unit.Exists() {
		d.kubeletWhy("not pinning kubelet: no " + cfg.Unit + " on this node")
		return
	}
	d.sampleNetRx()
	if d.w.sym != nil && pin.Unit.MainPID != 0 {
		d.w.sym.SetKubeletPID(int(pin.Unit.MainPID))
	}
	// CPUs drowning in softirq work count as net_rx CPUs: kubelet leaves them at once.
	in := kubelet.Inputs{Online: rep.Online, Isolated: d.isolated(), IRQCPUs: rep.CPUsUsed.Union(d.w.snap.Saturated),
		NetRx: d.kube.rates, Reserved: d.kube.reserved, MinCPUs: cfg.MinCPUs}
	var c kubelet.Choice
	if cfg.Pinning == config.PinningStatic {
		if c, err = kubelet.Static(cfg.CPUs, rep.Online); err != nil {
			d.kubeletWhy("cannot pin kubelet: " + err.Error())
			return
		}
		c.NetRx = kubelet.NetRxCPUs(in)
	} else {
		c = kubelet.Choose(in)
	}
	d.d.Metrics.SetKubeletNetRxOverlapCPUs(pin.Running().Intersect(c.NetRx).Len())
	if !c.Pin {
		d.kubeletWhy("not pinning kubelet: " + c.Reason)
		if d.kube.ours() {
			d.unpinKubelet(ctx, c.Reason)
		}
		return
	}
	now := d.d.Clock.Now()
	applied := d.kube.applied
	switch {
	case applied.Equal(c.CPUs) && pin.Allowed.Equal(c.CPUs):
		d.recordKubelet(c, pin)
		return
	case applied.IsEmpty(), !pin.Allowed.Equal(applied):
		// Never pinned, or someone changed AllowedCPUs behind us: apply.
	case !applied.Intersect(c.NetRx).IsEmpty() && c.Disjoint:
	case now.Sub(d.kube.at) >= cfg.RepinInterval:
	default:
		return // hysteresis: keep the applied pin
	}
	dec := d.kube.gate.Begin(now, time.Time{}, d.dryRun())
	if !dec.Allowed {
		if dec.Result != policy.SkippedBusy {
			d.d.Metrics.IncRemediation(metrics.ActionKubeletPin, dec.Result)
		}
		d.kubeletWhy(fmt.Sprintf("not pinning kubelet to %s now: %s", c.CPUs, dec.Detail))
		return
	}
	d.markStored(cfg.Unit) // before asking: a failure may come after systemd stored it
	pin, err = d.pinner().Apply(ctx, c.CPUs)
	d.kube.gate.End(err == nil)
	if err != nil {
		d.kube.partial = true
		d.d.Metrics.IncRemediation(metrics.ActionKubeletPin, metrics.ResultFailure)
		d.log.Error("cannot pin kubelet: "+err.Error(), logging.Msg(logging.MsgKubeletPinFailed), "unit", cfg.Unit, "cpus", c.CPUs.List())
		d.addAction(state.Action{Action: metrics.ActionKubeletPin, Result: metrics.ResultFailure, Detail: err.Error(), Trigger: trigger})
		return
	}
	d.kube.applied, d.kube.at, d.kube.partial = c.CPUs, now, false
	d.d.Metrics.IncRemediation(metrics.ActionKubeletPin, metrics.ResultSuccess)
	d.log.Info("kubelet pinned: "+c.Reason, logging.Msg(logging.MsgKubeletPinned), "unit", cfg.Unit, "cpus", c.CPUs.List(),
		"mode", string(d.kube.mode), "trigger", trigger)
	d.addAction(state.Action{Action: metrics.ActionKubeletPin, Result: metrics.ResultSuccess, Detail: c.Reason, Trigger: trigger})
	d.recordKubelet(c, pin)
}

// ours reports whether kubelet may carry a pin of nodekeeper's.
func (k *kubeletState) ours() bool { return !k.applied.IsEmpty() || k.partial }

func (d *Daemon) isolated() cpuset.Set {
	iso, err := d.d.FS.IsolatedCPUs()
	if err != nil {
		d.errorOnce(metrics.ComponentKubelet, "cannot read the isolated CPUs (kubelet is kept off none of them): "+err.Error())
	}
	return iso
}

// kubeletWhy logs a kubelet decision once per distinct reason.
func (d *Daemon) kubeletWhy(why string) {
	if why != d.kube.lastWhy {
		d.log.Info(why, "unit", d.cfg.Kubelet.Unit)
		d.kube.lastWhy = why
	}
}

func (d *Daemon) pinnedInState() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Kubelet.Ours()
}

func (d *Daemon) recordKubelet(c kubelet.Choice, pin kubelet.Pin) {
	d.d.Metrics.SetKubeletAllowedCPUs(d.kube.applied.Len())
	d.d.Metrics.SetKubeletNetRxOverlapCPUs(pin.Running().Intersect(c.NetRx).Len())
	rep := kubelet.Judge(d.cfg.Kubelet.Pinning, pin, kubelet.Inputs{Online: pin.Running().Union(c.CPUs), NetRx: d.kube.rates,
		MinCPUs: d.cfg.Kubelet.MinCPUs}, c, d.kube.mode)
	raw, _ := json.Marshal(rep)
	d.d.Metrics.SetCheckStatus(kubelet.Name, string(rep.Status))
	d.mu.Lock()
	d.st.Kubelet = state.Kubelet{Pinned: !d.kube.applied.IsEmpty(), Stored: d.st.Kubelet.Stored || !d.kube.applied.IsEmpty(),
		Unit: d.cfg.Kubelet.Unit, CPUs: d.kube.applied.List(),
		NetRx: c.NetRx.List(), Mode: string(d.kube.mode), Time: d.kube.at, Reason: c.Reason, Disjoint: c.Disjoint}
	d.st.Checks[kubelet.Name] = state.Check{Time: d.d.Clock.Now(), Interval: state.Duration(d.cfg.IRQ.CheckInterval),
		Status: string(rep.Status), Message: rep.Message, Report: raw}
	d.mu.Unlock()
	d.writeState()
	if rep.Status == check.Problem {
		d.kubeletWhy("kubelet check: " + rep.Message)
	}
}

// unpinKubelet removes nodekeeper's pin.
func (d *Daemon) unpinKubelet(ctx context.Context, why string) {
	if d.dryRun() {
		d.d.Metrics.IncRemediation(metrics.ActionKubeletUnpin, metrics.ResultSkippedDryRun)
		d.kubeletWhy("dry run: would remove kubelet's pin (" + why + ")")
		return
	}
	err := d.pinner().Undo(ctx)
	result := metrics.ResultSuccess
	if err != nil {
		result = metrics.ResultFailure
		d.log.Error("cannot remove kubelet's pin: "+err.Error(), logging.Msg(logging.MsgKubeletPinFailed), "unit", d.cfg.Kubelet.Unit)
	} else {
		d.log.Info("kubelet's pin removed: "+why, logging.Msg(logging.MsgKubeletUnpinned), "unit", d.cfg.Kubelet.Unit)
		d.kube.applied, d.kube.partial = cpuset.Set{}, false
		d.d.Metrics.SetKubeletAllowedCPUs(0)
		d.mu.Lock()
		d.st.Kubelet = state.Kubelet{}
		d.mu.Unlock()
	}
	d.d.Metrics.IncRemediation(metrics.ActionKubeletUnpin, result)
	d.addAction(state.Action{Action: metrics.ActionKubeletUnpin, Result: result, Detail: why})
}

// kubeletRestarted re-applies the pin to a new kubelet process on v1 hosts
// (v2: systemd applies AllowedCPUs= to the new process itself).
func (d *Daemon) kubeletRestarted(ctx context.Context) {
	if d.kube.applied.IsEmpty() || d.units == nil {
		return
	}
	pin, err := d.pinner().Apply(ctx, d.kube.applied)
	if err != nil {
		d.d.Metrics.IncRemediation(metrics.ActionKubeletPin, metrics.ResultFailure)
		d.log.Error("cannot re-pin the restarted kubelet: "+err.Error(), logging.Msg(logging.MsgKubeletPinFailed), "unit", d.cfg.Kubelet.Unit)
		return
	}
	d.log.Info("kubelet restarted: pin re-applied", "unit", d.cfg.Kubelet.Unit, "cpus", d.kube.applied.List(), "main_pid", pin.Unit.MainPID)
}

// markStored records, in the state file, that AllowedCPUs= may be stored on
// unit by nodekeeper.
func (d *Daemon) markStored(unit string) {
	d.mu.Lock()
	d.st.Kubelet.Stored, d.st.Kubelet.Unit = true, unit
	d.mu.Unlock()
	d.writeState()
}
