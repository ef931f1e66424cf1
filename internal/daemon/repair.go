package daemon

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/irqbalance"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
)

// repairResult is what a repair goroutine reports back to the main loop.
type repairResult struct {
	action  policy.Action
	result  policy.Result
	detail  string
	took    time.Duration
	trigger pending
	report  *irq.Report // the last verification check; nil when the action failed
}

// choice is the repair chosen for the current irqbalance state.
type choice struct {
	action policy.Action // "" = none possible
	why    string        // said in the journal when the choice differs from the setting
	since  time.Time
}

// chooseRepair applies irq.remediation to what systemd says of irqbalance.
func (d *Daemon) chooseRepair(ctx context.Context) choice {
	rem := d.cfg.IRQ.Remediation
	if rem == config.RemediationNone {
		return choice{why: "irq.remediation is none: report only"}
	}
	if d.units == nil {
		// Without systemd nobody can tell whether irqbalance runs: spreading
		// the IRQs ourselves could fight it, so nothing is written.
		return choice{why: "systemd's D-Bus API is unreachable: cannot tell whether irqbalance runs, not repairing"}
	}
	st, err := d.units.Unit(ctx, irqbalance.Unit)
	if err != nil {
		return choice{why: "cannot read irqbalance.service over D-Bus: " + err.Error()}
	}
	fallback := func(why string) choice {
		if d.cfg.IRQ.FallbackSpread {
			return choice{action: irq.ActionSpread, why: why + ": spreading the IRQs ourselves (irq.fallbackSpread)"}
		}
		return choice{why: why + " and irq.fallbackSpread is off: not repairing"}
	}
	switch {
	case !st.Exists():
		return fallback("irqbalance is not installed")
	case st.LoadState == "masked":
		return fallback("irqbalance.service is masked")
	case st.Result == "start-limit-hit":
		return fallback("irqbalance.service hit systemd's start rate limit")
	case !st.Active():
		return fallback("irqbalance.service is " + st.ActiveState)
	}
	switch rem {
	case config.RemediationRestart:
		return choice{action: irqbalance.ActionRestart, since: st.InactiveExitTimestamp}
	case config.RemediationSighup:
		return choice{action: irqbalance.ActionSighup}
	default: // spread while irqbalance is active would fight it
		return choice{action: irqbalance.ActionSighup,
			why: "irq.remediation is spread but irqbalance is active: sending it SIGHUP instead, so the two do not fight"}
	}
}

// proposeRepair passes a repair of rep through the policy gate and, if
// allowed, runs it in the background.
func (d *Daemon) proposeRepair(ctx context.Context, rep *irq.Report, p pending) {
	if d.busy {
		// The running repair verifies the spread; pauses whose check landed
		// meanwhile get its outcome.
		if len(p.pauses) > 0 {
			d.waiting = append(d.waiting, p)
		}
		return
	}
	c := d.chooseRepair(ctx)
	if c.action == "" {
		d.skip("", "none", c.why, p)
		return
	}
	if c.why != "" && c.why != d.last.why {
		d.log.Info(c.why, "action", string(c.action))
	}
	d.last.why = c.why
	dec := d.gate.Begin(d.d.Clock.Now(), c.since, d.dryRun())
	if !dec.Allowed {
		detail := dec.Detail
		if dec.Result == policy.SkippedDryRun {
			detail = fmt.Sprintf("dry run: would %s to fix: %s", describe(c.action), rep.Message)
		}
		if dec.Result != policy.SkippedBusy {
			d.d.Metrics.IncRemediation(c.action, dec.Result)
		}
		d.skip(c.action, string(dec.Reason), detail, p)
		return
	}
	d.log.Info("repairing the IRQ spread: "+describe(c.action), logging.Msg(logging.MsgRepairStarted),
		"action", string(c.action), "trigger", p.reason, "interface", firstProblem(rep))
	d.busy = true
	d.addAction(state.Action{Action: string(c.action), Result: "started", Detail: rep.Message, Trigger: p.reason})
	d.status()
	d.wg.Add(1)
	cfg, units := d.cfg, d.units // the loop may reload or redial meanwhile
	go func() {
		defer d.wg.Done()
		d.done <- d.repair(ctx, cfg, units, c.action, rep, p)
	}()
}

// skip reports a refused or impossible repair once per distinct reason.
func (d *Daemon) skip(action policy.Action, reason, detail string, p pending) {
	key := string(action) + "/" + reason
	if key != d.last.skip {
		d.log.Info("not repairing the IRQ spread: "+detail, logging.Msg(logging.MsgRepairSkipped),
			"action", string(action), "reason", reason, "trigger", p.reason)
		d.last.skip = key
		d.addAction(state.Action{Action: string(action), Result: "skipped_" + reason, Detail: detail, Trigger: p.reason})
	}
	if len(p.pauses) > 0 {
		d.pauseVerified(p, freeze.OutcomeFailed, d.d.Clock.Now())
	}
}

func describe(action policy.Action) string {
	switch action {
	case irqbalance.ActionRestart:
		return "restart irqbalance.service"
	case irqbalance.ActionSighup:
		return "send irqbalance SIGHUP (full rescan)"
	case irq.ActionSpread:
		return "write a round-robin spread of the NIC queue IRQs"
	}
	return string(action)
}

// repair performs the action and verifies the spread; it runs off the main
// loop with its own checker, and with the configuration and D-Bus
// connection of when it was decided (it must not read the loop's).
func (d *Daemon) repair(ctx context.Context, cfg config.Config, units systemd.Units, action policy.Action, rep *irq.Report, p pending) repairResult {
	clk := d.d.Clock
	start := clk.Now()
	res := repairResult{action: action, trigger: p}
	err := d.perform(ctx, units, action, rep)
	if errors.Is(err, systemd.ErrStartLimit) && cfg.IRQ.FallbackSpread {
		// irqbalance is down now and will not be started again: spreading
		// ourselves cannot fight it.
		d.log.Warn("irqbalance.service hit systemd's start rate limit: spreading the IRQs ourselves", "action", string(action))
		res.action = irq.ActionSpread
		err = d.perform(ctx, units, irq.ActionSpread, rep)
	}
	if err != nil {
		res.result, res.detail, res.took = policy.Failure, err.Error(), clk.Now().Sub(start)
		return res
	}
	verifier := irq.NewChecker(d.d.FS, d.d.Links, irq.OptionsFrom(cfg), clk.Now)
	deadline := start.Add(cfg.IRQ.VerifyTimeout)
	for {
		v := verifier.Run(ctx)
		res.report = v
		if v.Status == check.OK {
			res.result, res.detail, res.took = policy.Success, v.Message, clk.Now().Sub(start)
			return res
		}
		if !clk.Now().Before(deadline) || ctx.Err() != nil {
			res.result, res.detail, res.took = policy.VerifyTimeout, v.Message, clk.Now().Sub(start)
			return res
		}
		if err := clock.Sleep(ctx, clk, d.d.VerifyEvery); err != nil {
			res.result, res.detail, res.took = policy.VerifyTimeout, "stopped while verifying", clk.Now().Sub(start)
			return res
		}
	}
}

func (d *Daemon) perform(ctx context.Context, units systemd.Units, action policy.Action, rep *irq.Report) error {
	switch action {
	case irqbalance.ActionRestart:
		before, after, err := systemd.RestartVerified(ctx, units, irqbalance.Unit, "replace")
		if err == nil {
			d.log.Info("irqbalance restarted", "unit", irqbalance.Unit, "old_pid", before.MainPID, "new_pid", after.MainPID)
		}
		return err
	case irqbalance.ActionSighup:
		if err := d.waitHandlesSIGHUP(ctx, units); err != nil {
			return err
		}
		return units.Signal(ctx, irqbalance.Unit, syscall.SIGHUP)
	case irq.ActionSpread:
		applied, err := irq.Apply(ctx, d.d.FS, rep.Plan, rep.Online)
		for _, m := range applied.Managed {
			d.log.Info("IRQ affinity is managed by the kernel: left as it is", "irq", m.IRQ, "interface", m.Interface)
		}
		if err == nil {
			d.log.Info("IRQ masks written", "written", len(applied.Written), "unchanged", len(applied.Unchanged),
				"managed", len(applied.Managed))
		}
		return err
	}
	return fmt.Errorf("unknown repair %q", action)
}

// waitHandlesSIGHUP waits (up to 5 s) until irqbalance's main process has
// installed its SIGHUP handler: systemd reports a start as done as soon as it
// forked, and a SIGHUP before the handler exists kills irqbalance — which
// systemd then records as a clean exit and does not restart.
func (d *Daemon) waitHandlesSIGHUP(ctx context.Context, units systemd.Units) error {
	deadline := d.d.Clock.Now().Add(5 * time.Second)
	for {
		st, err := units.Unit(ctx, irqbalance.Unit)
		if err != nil {
			return err
		}
		ok, err := d.d.HandlesSignal(int(st.MainPID), syscall.SIGHUP)
		if ok {
			return nil
		}
		if !d.d.Clock.Now().Before(deadline) {
			return fmt.Errorf("irqbalance (pid %d) does not handle SIGHUP: not sending it (%v)", st.MainPID, err)
		}
		if err := clock.Sleep(ctx, d.d.Clock, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// finishRepair records a repair's outcome in the main loop.
func (d *Daemon) finishRepair(r repairResult) {
	d.busy = false
	if r.report != nil {
		d.record(r.report)
		d.last.status = r.report.Status
	}
	ok := r.result == policy.Success
	d.gate.End(ok)
	d.d.Metrics.IncRemediation(r.action, r.result)
	attrs := []any{"action", string(r.action), "result", string(r.result), "seconds", r.took.Seconds(), "trigger", r.trigger.reason}
	if ok {
		d.log.Info(fmt.Sprintf("IRQ spread repaired in %.1fs: %s", r.took.Seconds(), r.detail),
			append(attrs, logging.Msg(logging.MsgRepairSucceeded))...)
	} else {
		d.log.Error(fmt.Sprintf("IRQ spread repair %s: %s", r.result, r.detail),
			append(attrs, logging.Msg(logging.MsgRepairFailed))...)
	}
	d.last.skip = ""
	d.addAction(state.Action{Action: string(r.action), Result: string(r.result), Detail: r.detail, Trigger: r.trigger.reason, Seconds: r.took.Seconds()})
	outcome := freeze.OutcomeRepaired
	if !ok {
		outcome = freeze.OutcomeFailed
	}
	for _, p := range append([]pending{r.trigger}, d.waiting...) {
		if len(p.pauses) > 0 {
			d.pauseVerified(p, outcome, d.d.Clock.Now())
		}
	}
	d.waiting = nil
	d.status()
}

func (d *Daemon) addAction(a state.Action) {
	a.Time = d.d.Clock.Now()
	d.mu.Lock()
	d.st.AddAction(a)
	d.mu.Unlock()
	d.writeState()
}

// pauseVerified records the outcome of the check after VM pauses and, for
// pauses with a known resume time (the clock saw them), observes resume →
// verified.
func (d *Daemon) pauseVerified(p pending, outcome freeze.Outcome, at time.Time) {
	secs := at.Sub(p.resume)
	if !p.resume.IsZero() {
		d.d.Metrics.ObservePauseToVerified(outcome, secs)
	}
	d.mu.Lock()
	for _, id := range p.pauses {
		if id < len(d.st.Pauses) {
			d.st.Pauses[id].Outcome = string(outcome)
		}
	}
	d.mu.Unlock()
	d.writeState()
	if p.resume.IsZero() {
		d.log.Info("after the VM pause: spread "+string(outcome), "outcome", string(outcome))
		return
	}
	d.log.Info(fmt.Sprintf("after the VM pause: spread %s, %.1fs after the resume", outcome, secs.Seconds()),
		"outcome", string(outcome), "seconds", secs.Seconds())
}
