package daemon

import (
	"context"
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
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

// kubeletState is the daemon's view of kubelet's pin (main loop only).
type kubeletState struct {
	gate     *policy.Gate
	mode     kubelet.Mode
	applied  cpuset.Set // what nodekeeper applied ("" = no pin of ours)
	at       time.Time
	netrx    []uint64 // NET_RX counts at the last check, for rates
	netrxAt  time.Time
	rates    []float64
	lastWhy  string
	isoErr   string // the last error reading the isolated CPUs, logged once
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
	if rates := kubelet.NetRxRates(d.snapshot()); rates != nil {
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
		if d.ownsPin() {
			d.unpinKubelet(ctx, "kubelet.pinning is off")
		}
		return
	}
	if sp, ok := d.storedPin(); ok && sp.Unit != cfg.Unit {
		// kubelet.unit changed: what was stored on the old unit goes first.
		d.unpinKubelet(ctx, "kubelet.unit is now "+cfg.Unit)
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
	if d.sym != nil && pin.Unit.MainPID != 0 {
		d.sym.SetKubeletPID(int(pin.Unit.MainPID))
	}
	// CPUs drowning in softirq work, and CPUs whose NET_RX softirqs wait
	// past latency.p99Problem, count as net_rx CPUs: kubelet leaves them at once.
	dec, err := kubelet.Decide(cfg, kubelet.Inputs{Online: rep.Online, Isolated: d.isolated(), IRQCPUs: rep.CPUsUsed,
		Saturated: d.snapshot().Saturated.Union(d.slowCPUs()), NetRx: d.kube.rates, Reserved: d.kube.reserved})
	if err != nil {
		d.kubeletWhy("cannot pin kubelet: " + err.Error())
		return
	}
	c := dec.Choice
	d.d.Metrics.SetKubeletNetRxOverlapCPUs(pin.Running().Intersect(c.NetRx).Len())
	if !c.Pin {
		d.kubeletWhy("not pinning kubelet: " + c.Reason)
		if d.ownsPin() {
			d.unpinKubelet(ctx, c.Reason)
		}
		return
	}
	now := d.d.Clock.Now()
	applied := d.kube.applied
	switch {
	case applied.Equal(c.CPUs) && pin.Allowed.Equal(c.CPUs):
		d.recordKubelet(dec, pin)
		return
	case applied.IsEmpty(), !pin.Allowed.Equal(applied):
		// Never pinned, or someone changed AllowedCPUs behind us: apply.
	case !applied.Intersect(c.NetRx).IsEmpty() && c.Disjoint:
	case now.Sub(d.kube.at) >= cfg.RepinInterval:
	default:
		return // hysteresis: keep the applied pin
	}
	gate := d.kube.gate.Begin(now, time.Time{}, d.dryRun())
	if !gate.Allowed {
		if gate.Result != policy.SkippedBusy {
			d.d.Metrics.IncRemediation(kubelet.ActionPin, gate.Result)
		}
		d.kubeletWhy(fmt.Sprintf("not pinning kubelet to %s now: %s", c.CPUs, gate.Detail))
		return
	}
	prev, hadPrev := d.storedPin()
	d.setStored(&state.StoredPin{Unit: cfg.Unit, AllowedCPUs: c.CPUs.List()}) // before asking: a failure may come after systemd stored it
	pin, err = d.pinner().Apply(ctx, c.CPUs)
	d.kube.gate.End(err == nil)
	if err != nil {
		d.storedAfterFailure(ctx, c.CPUs, prev, hadPrev)
		d.d.Metrics.IncRemediation(kubelet.ActionPin, policy.Failure)
		d.log.Error("cannot pin kubelet: "+err.Error(), logging.Msg(logging.MsgKubeletPinFailed), "unit", cfg.Unit, "cpus", c.CPUs.List())
		d.addAction(state.Action{Action: string(kubelet.ActionPin), Result: string(policy.Failure), Detail: err.Error(), Trigger: trigger})
		return
	}
	d.kube.applied, d.kube.at = c.CPUs, now
	d.d.Metrics.IncRemediation(kubelet.ActionPin, policy.Success)
	attrs := []any{logging.Msg(logging.MsgKubeletPinned), "unit", cfg.Unit, "cpus", c.CPUs.List(),
		"mode", string(d.kube.mode), "trigger", trigger}
	if d.lat != nil {
		// The NET_RX wait before the pin; the latency watch logs the wait
		// after it one window later (MsgKubeletPinEffect).
		if p99, ok := d.lat.PinApplied(now, c.NetRx); ok {
			attrs = append(attrs, logging.KeyP99BeforeUs, p99)
		}
	}
	d.log.Info("kubelet pinned: "+c.Reason, attrs...)
	d.addAction(state.Action{Action: string(kubelet.ActionPin), Result: string(policy.Success), Detail: c.Reason, Trigger: trigger})
	d.recordKubelet(dec, pin)
}

// ownsPin reports whether kubelet's unit may carry a pin of nodekeeper's:
// applied by this process, or recorded as stored in the state file (a pin
// that failed halfway, or one from before a restart).
func (d *Daemon) ownsPin() bool {
	_, ok := d.storedPin()
	return ok || !d.kube.applied.IsEmpty()
}

// isolated reads the isolated CPUs; an error is counted every time and
// logged once per reason (a later success logs nothing: the next error of
// the same reason then logs again).
func (d *Daemon) isolated() cpuset.Set {
	iso, err := d.d.FS.IsolatedCPUs()
	if err != nil {
		d.d.Metrics.IncError(metrics.ComponentKubelet)
		msg := "cannot read the isolated CPUs (kubelet is kept off none of them): " + err.Error()
		if msg != d.kube.isoErr {
			d.log.Warn(msg, "component", metrics.ComponentKubelet, "unit", d.cfg.Kubelet.Unit)
		}
		d.kube.isoErr = msg
		return iso
	}
	d.kube.isoErr = ""
	return iso
}

// kubeletWhy logs a kubelet decision once per distinct reason.
func (d *Daemon) kubeletWhy(why string) {
	if why != d.kube.lastWhy {
		d.log.Info(why, "unit", d.cfg.Kubelet.Unit)
		d.kube.lastWhy = why
	}
}

// storedPin is what the state file records as stored by nodekeeper.
func (d *Daemon) storedPin() (state.StoredPin, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.Kubelet.StoredPin()
}

// setStored records, in the state file, what nodekeeper stored as
// AllowedCPUs= (nil: nothing).
func (d *Daemon) setStored(sp *state.StoredPin) {
	d.mu.Lock()
	d.st.Kubelet.Stored = sp
	d.mu.Unlock()
	d.writeState()
}

// storedAfterFailure records what a failed Apply left stored: cpus when
// systemd stored them, the earlier stored value when the call failed before
// systemd changed anything, nothing when the unit holds none; when the unit
// cannot be read, cpus stays recorded (it may be there).
func (d *Daemon) storedAfterFailure(ctx context.Context, cpus cpuset.Set, prev state.StoredPin, hadPrev bool) {
	pin, err := d.pinner().Read(ctx)
	if err != nil {
		return
	}
	switch {
	case pin.Allowed.Equal(cpus):
	case hadPrev && prev.Unit == d.cfg.Kubelet.Unit && pin.Allowed.List() == prev.AllowedCPUs:
		d.setStored(&prev)
	case pin.Allowed.IsEmpty():
		d.setStored(nil)
	}
}

func (d *Daemon) recordKubelet(dec kubelet.Decision, pin kubelet.Pin) {
	c := dec.Choice
	d.d.Metrics.SetKubeletAllowedCPUs(d.kube.applied.Len())
	d.d.Metrics.SetKubeletNetRxOverlapCPUs(pin.Running().Intersect(c.NetRx).Len())
	rep := dec.Judge(pin, d.kube.mode)
	d.d.Metrics.SetCheckStatus(kubelet.Name, rep.Status)
	k := state.Kubelet{Pinned: !d.kube.applied.IsEmpty(), Unit: d.cfg.Kubelet.Unit, CPUs: d.kube.applied.List(),
		NetRx: c.NetRx.List(), Mode: string(d.kube.mode), Time: d.kube.at, Reason: c.Reason, Disjoint: c.Disjoint}
	d.storeCheck(kubelet.Name, state.Check{Time: d.d.Clock.Now(), Interval: state.Duration(d.cfg.IRQ.CheckInterval),
		Status: string(rep.Status), Message: rep.Message}, rep, func(st *state.State) {
		k.Stored = st.Kubelet.Stored
		st.Kubelet = k
	})
	if rep.Status == check.Problem {
		d.kubeletWhy("kubelet check: " + rep.Message)
	}
}

// unpinKubelet removes what nodekeeper stored on kubelet's unit (the unit
// the state file records, which may be an earlier kubelet.unit): the
// AllowedCPUs= it stored, while the unit still holds it, and the v1 cpuset
// cgroup. An AllowedCPUs= someone else set since is left, and said so.
func (d *Daemon) unpinKubelet(ctx context.Context, why string) {
	if d.dryRun() {
		d.d.Metrics.IncRemediation(kubelet.ActionUnpin, policy.SkippedDryRun)
		d.kubeletWhy("dry run: would remove kubelet's pin (" + why + ")")
		return
	}
	p := d.pinner()
	stored := d.kube.applied
	if sp, ok := d.storedPin(); ok {
		p.Unit = sp.Unit
		if s, err := cpuset.ParseList(sp.AllowedCPUs); err == nil {
			stored = s
		}
	}
	removed, err := p.Undo(ctx, stored, false)
	if err != nil {
		d.d.Metrics.IncRemediation(kubelet.ActionUnpin, policy.Failure)
		d.addAction(state.Action{Action: string(kubelet.ActionUnpin), Result: string(policy.Failure), Detail: why})
		d.log.Error("cannot remove kubelet's pin: "+err.Error(), logging.Msg(logging.MsgKubeletPinFailed), "unit", p.Unit)
		return
	}
	d.kube.applied = cpuset.Set{}
	d.d.Metrics.SetKubeletAllowedCPUs(0)
	d.mu.Lock()
	d.st.Kubelet = state.Kubelet{}
	d.mu.Unlock()
	d.d.Metrics.IncRemediation(kubelet.ActionUnpin, policy.Success)
	d.addAction(state.Action{Action: string(kubelet.ActionUnpin), Result: string(policy.Success), Detail: why}) // writes the state file
	msg := "kubelet's pin removed: " + why
	switch {
	case !removed.Left.IsEmpty():
		msg = fmt.Sprintf("kubelet's pin: %s AllowedCPUs=%s left in place, nodekeeper stored %s (%s)", p.Unit, removed.Left, stored, why)
	case removed.Nothing():
		msg = fmt.Sprintf("kubelet's pin: nothing of nodekeeper's left on %s (%s)", p.Unit, why)
	}
	d.log.Info(msg, logging.Msg(logging.MsgKubeletUnpinned), "unit", p.Unit)
}

// kubeletRestarted re-applies the pin to a new kubelet process on v1 hosts
// (v2: systemd applies AllowedCPUs= to the new process itself).
func (d *Daemon) kubeletRestarted(ctx context.Context) {
	if d.kube.applied.IsEmpty() || d.units == nil {
		return
	}
	pin, err := d.pinner().Apply(ctx, d.kube.applied)
	if err != nil {
		d.d.Metrics.IncRemediation(kubelet.ActionPin, policy.Failure)
		d.log.Error("cannot re-pin the restarted kubelet: "+err.Error(), logging.Msg(logging.MsgKubeletPinFailed), "unit", d.cfg.Kubelet.Unit)
		return
	}
	d.log.Info("kubelet restarted: pin re-applied", "unit", d.cfg.Kubelet.Unit, "cpus", d.kube.applied.List(), "main_pid", pin.Unit.MainPID)
}

// symptomSource is what the kubelet pin takes from the symptom watch: its
// NET_RX rates and saturated CPUs, and kubelet's main process to follow.
// latencySource is what the kubelet pin reads of the latency watch: the CPUs
// whose NET_RX softirqs wait too long (treated like saturated CPUs), and
// the pin's effect to measure.
type latencySource interface {
	Slow() cpuset.Set
	PinApplied(now time.Time, netRx cpuset.Set) (p99us float64, ok bool)
}

// slowCPUs are the latency watch's slow CPUs (none when it is off).
func (d *Daemon) slowCPUs() cpuset.Set {
	if d.lat == nil {
		return cpuset.Set{}
	}
	return d.lat.Slow()
}

type symptomSource interface {
	Snapshot() symptoms.Snapshot
	SetKubeletPID(pid int)
}

// snapshot is the symptom watch's latest snapshot (empty when it is off).
func (d *Daemon) snapshot() symptoms.Snapshot {
	if d.sym == nil {
		return symptoms.Snapshot{}
	}
	return d.sym.Snapshot()
}
