package systemd

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// Fake is a scriptable Units for tests: units are set with SetUnit (or
// AddService), every call is recorded, restarts hand out new MainPIDs and
// report Changes to watchers, and jobs can be made to fail, by result or by
// an emulated start rate limit. A unit that was never set reads as
// LoadState "not-found", like systemd. Safe for concurrent use.
type Fake struct {
	mu         sync.Mutex
	clk        clock.Clock
	units      map[string]UnitState
	calls      []Call
	failNext   map[string][]error // "Method unit" → one-shot errors, in order
	jobFail    map[string][2]string
	startLimit map[string]*fakeLimit
	enforce    bool
	nextPID    uint32
	watchers   []*fakeWatch
}

var _ Units = (*Fake)(nil)

// Call is one recorded call on a Fake.
type Call struct {
	Method  string // "Unit", "Restart", "TryRestart", "Signal", "SetAllowedCPUs", "Watch"
	Unit    string // for Watch: the names joined with ","
	Mode    string // Restart
	Signal  syscall.Signal
	CPUs    cpuset.Set // SetAllowedCPUs
	Runtime bool       // SetAllowedCPUs
}

type fakeLimit struct {
	burst    int
	interval time.Duration
	starts   []time.Time
}

type fakeWatch struct {
	names []string
	ch    chan Change
}

// NewFake returns an empty Fake whose timestamps come from clk (nil: the real
// clock).
func NewFake(clk clock.Clock) *Fake {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Fake{
		clk:        clk,
		units:      map[string]UnitState{},
		failNext:   map[string][]error{},
		jobFail:    map[string][2]string{},
		startLimit: map[string]*fakeLimit{},
		nextPID:    1000,
	}
}

// SetUnit sets a unit's state (st.Name names it) and reports a Change to
// watchers when its ActiveState or MainPID changed.
func (f *Fake) SetUnit(st UnitState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(st)
}

// AddService sets a loaded, active, running service with a fresh MainPID and
// returns its state.
func (f *Fake) AddService(name string) UnitState {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextPID++
	st := UnitState{
		Name: name, LoadState: "loaded", ActiveState: "active", SubState: "running",
		MainPID: f.nextPID, Result: "success", InactiveExitTimestamp: f.clk.Now(),
		ControlGroup: "/system.slice/" + name,
	}
	f.setLocked(st)
	return st
}

// State returns a unit's current state without recording a call.
func (f *Fake) State(name string) UnitState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stateLocked(name)
}

// Calls returns the calls so far, oldest first.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// CallsTo returns the calls of one method, oldest first.
func (f *Fake) CallsTo(method string) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// FailNext makes the next call of method ("Unit", "Restart", …) on unit
// return err, once; unit "" means any unit. Calls queue up in order.
func (f *Fake) FailNext(method, unit string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := method + " " + unit
	f.failNext[k] = append(f.failNext[k], err)
}

// FailJobs makes every following restart job of unit end with result (e.g.
// "failed", "timeout") leaving the unit failed with Service.Result
// serviceResult (e.g. "exit-code"); result "" makes jobs succeed again.
func (f *Fake) FailJobs(unit, result, serviceResult string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if result == "" {
		delete(f.jobFail, unit)
		return
	}
	f.jobFail[unit] = [2]string{result, serviceResult}
}

// SetStartLimit emulates systemd's start rate limit on unit: more than burst
// starts within interval (on the Fake's clock) fail with "start-limit-hit",
// as StartLimitBurst= and StartLimitIntervalSec= do.
func (f *Fake) SetStartLimit(unit string, burst int, interval time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startLimit[unit] = &fakeLimit{burst: burst, interval: interval}
}

// SetEnforced makes SetAllowedCPUs also set EffectiveCPUs, as on a host
// where the cpuset controller is in the unified hierarchy.
func (f *Fake) SetEnforced(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enforce = on
}

// Emit reports c to the watchers of c.Unit.
func (f *Fake) Emit(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.emitLocked(c)
}

// Reconnect reports, to every watcher, one Change with Reconnected set per
// watched unit, as Conn does after re-establishing a watch.
func (f *Fake) Reconnect() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		for _, n := range w.names {
			st := f.stateLocked(n)
			send(w.ch, Change{Unit: n, ActiveState: st.ActiveState, SubState: st.SubState, MainPID: st.MainPID, Reconnected: true})
		}
	}
}

// Unit implements UnitReader.
func (f *Fake) Unit(ctx context.Context, name string) (UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(ctx, Call{Method: "Unit", Unit: name}); err != nil {
		return UnitState{}, err
	}
	return f.stateLocked(name), nil
}

// Restart implements Restarter.
func (f *Fake) Restart(ctx context.Context, name, mode string) error {
	if mode == "" {
		mode = "replace"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(ctx, Call{Method: "Restart", Unit: name, Mode: mode}); err != nil {
		return err
	}
	return f.restartLocked("restart", name)
}

// TryRestart implements Restarter: a unit that is not active is left alone.
func (f *Fake) TryRestart(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(ctx, Call{Method: "TryRestart", Unit: name}); err != nil {
		return err
	}
	if st := f.stateLocked(name); !st.Active() && st.ActiveState != "activating" && st.ActiveState != "reloading" {
		return nil
	}
	return f.restartLocked("try-restart", name)
}

// Signal implements Restarter. The unit's state does not change.
func (f *Fake) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(ctx, Call{Method: "Signal", Unit: name, Signal: sig}); err != nil {
		return err
	}
	st := f.stateLocked(name)
	what := fmt.Sprintf("send %s to the main process of %s", sigName(sig), name)
	if !st.Exists() {
		return fmt.Errorf("%s: %w", what, ErrNoSuchUnit)
	}
	if st.MainPID == 0 {
		return fmt.Errorf("%s: %w", what, ErrNoProcess)
	}
	return nil
}

// SetAllowedCPUs implements CPUPinner.
func (f *Fake) SetAllowedCPUs(ctx context.Context, name string, cpus cpuset.Set, runtime bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(ctx, Call{Method: "SetAllowedCPUs", Unit: name, CPUs: cpus, Runtime: runtime}); err != nil {
		return err
	}
	st := f.stateLocked(name)
	if !st.Exists() {
		return fmt.Errorf("set AllowedCPUs=%s on %s: %w", cpus.List(), name, ErrNoSuchUnit)
	}
	st.AllowedCPUs = cpus
	if f.enforce {
		st.EffectiveCPUs = cpus
	}
	f.units[name] = st
	return nil
}

// Watch implements Watcher. Changes are buffered (256); beyond that they are
// dropped. The channel is closed when ctx ends.
func (f *Fake) Watch(ctx context.Context, names ...string) (<-chan Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(ctx, Call{Method: "Watch", Unit: joinNames(names)}); err != nil {
		return nil, err
	}
	w := &fakeWatch{names: slices.Clone(names), ch: make(chan Change, 256)}
	f.watchers = append(f.watchers, w)
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.watchers = slices.DeleteFunc(f.watchers, func(x *fakeWatch) bool { return x == w })
		close(w.ch)
	})
	return w.ch, nil
}

func joinNames(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ","
		}
		out += n
	}
	return out
}

// beginLocked records the call and returns a scripted or context error.
func (f *Fake) beginLocked(ctx context.Context, c Call) error {
	f.calls = append(f.calls, c)
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, k := range []string{c.Method + " " + c.Unit, c.Method + " "} {
		if errs := f.failNext[k]; len(errs) > 0 {
			f.failNext[k] = errs[1:]
			return errs[0]
		}
	}
	return nil
}

func (f *Fake) stateLocked(name string) UnitState {
	st, ok := f.units[name]
	if !ok {
		return UnitState{Name: name, LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
	}
	return st
}

func (f *Fake) setLocked(st UnitState) {
	prev, had := f.units[st.Name]
	f.units[st.Name] = st
	if !had || prev.ActiveState != st.ActiveState || prev.MainPID != st.MainPID {
		f.emitLocked(Change{Unit: st.Name, ActiveState: st.ActiveState, SubState: st.SubState, MainPID: st.MainPID})
	}
}

func (f *Fake) emitLocked(c Change) {
	for _, w := range f.watchers {
		if slices.Contains(w.names, c.Unit) {
			send(w.ch, c)
		}
	}
}

func send(ch chan Change, c Change) {
	select {
	case ch <- c:
	default:
	}
}

// restartLocked emulates a restart job: stop (MainPID 0), then start, which
// can fail by script or by the start rate limit.
func (f *Fake) restartLocked(job, name string) error {
	st := f.stateLocked(name)
	switch st.LoadState {
	case "not-found", "":
		return fmt.Errorf("%s %s: %w", job, name, ErrNoSuchUnit)
	case "masked":
		return fmt.Errorf("%s %s: %w", job, name, ErrMasked)
	}
	now := f.clk.Now()
	if st.MainPID != 0 || st.Active() {
		st.ActiveState, st.SubState, st.MainPID = "inactive", "dead", 0
		f.setLocked(st)
	}
	if lim := f.startLimit[name]; lim != nil {
		lim.starts = slices.DeleteFunc(lim.starts, func(t time.Time) bool { return now.Sub(t) >= lim.interval })
		if len(lim.starts) >= lim.burst {
			st.ActiveState, st.SubState, st.Result = "failed", "failed", "start-limit-hit"
			f.setLocked(st)
			return jobError(job, name, "failed", st.Result)
		}
		lim.starts = append(lim.starts, now)
	}
	if fail, ok := f.jobFail[name]; ok {
		st.ActiveState, st.SubState, st.Result = "failed", "failed", fail[1]
		f.setLocked(st)
		return jobError(job, name, fail[0], fail[1])
	}
	f.nextPID++
	st.ActiveState, st.SubState, st.MainPID, st.Result = "active", "running", f.nextPID, "success"
	st.InactiveExitTimestamp = now
	f.setLocked(st)
	return nil
}
