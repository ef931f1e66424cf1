package systemd

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestFakeUnitNotFound(t *testing.T) {
	f := NewFake(clock.NewFake(t0))
	st, err := f.Unit(t.Context(), "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	if st.Exists() || st.LoadState != "not-found" || st.Name != "kubelet.service" {
		t.Errorf("state of an unknown unit = %+v", st)
	}
	if err := f.Restart(t.Context(), "kubelet.service", ""); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("Restart of an unknown unit = %v, want ErrNoSuchUnit", err)
	}
	if err := f.SetAllowedCPUs(t.Context(), "kubelet.service", cpuset.Range(2, 3), true); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("SetAllowedCPUs of an unknown unit = %v, want ErrNoSuchUnit", err)
	}
	if err := f.Signal(t.Context(), "kubelet.service", syscall.SIGHUP); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("Signal of an unknown unit = %v, want ErrNoSuchUnit", err)
	}
}

func TestFakeRestartRecordsAndChangesPID(t *testing.T) {
	clk := clock.NewFake(t0)
	f := NewFake(clk)
	before := f.AddService("irqbalance.service")
	clk.Advance(time.Minute)
	if err := f.Restart(t.Context(), "irqbalance.service", ""); err != nil {
		t.Fatal(err)
	}
	after := f.State("irqbalance.service")
	if after.MainPID == 0 || after.MainPID == before.MainPID || !after.Active() {
		t.Errorf("after restart: %+v (before PID %d)", after, before.MainPID)
	}
	if !after.InactiveExitTimestamp.Equal(t0.Add(time.Minute)) {
		t.Errorf("InactiveExitTimestamp = %v, want %v", after.InactiveExitTimestamp, t0.Add(time.Minute))
	}
	calls := f.CallsTo("Restart")
	if len(calls) != 1 || calls[0].Unit != "irqbalance.service" || calls[0].Mode != "replace" {
		t.Errorf("Restart calls = %+v", calls)
	}
}

func TestFakeTryRestartLeavesInactiveUnit(t *testing.T) {
	f := NewFake(clock.NewFake(t0))
	f.SetUnit(UnitState{Name: "irqbalance.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"})
	if err := f.TryRestart(t.Context(), "irqbalance.service"); err != nil {
		t.Fatal(err)
	}
	if st := f.State("irqbalance.service"); st.Active() || st.MainPID != 0 {
		t.Errorf("TryRestart started an inactive unit: %+v", st)
	}
	f.AddService("irqbalance.service")
	pid := f.State("irqbalance.service").MainPID
	if err := f.TryRestart(t.Context(), "irqbalance.service"); err != nil {
		t.Fatal(err)
	}
	if st := f.State("irqbalance.service"); st.MainPID == pid || !st.Active() {
		t.Errorf("TryRestart of an active unit: %+v", st)
	}
}

func TestFakeStartLimit(t *testing.T) {
	clk := clock.NewFake(t0)
	f := NewFake(clk)
	f.AddService("irqbalance.service")
	f.SetStartLimit("irqbalance.service", 2, 10*time.Second)
	ctx := t.Context()
	for i := range 2 {
		if err := f.Restart(ctx, "irqbalance.service", ""); err != nil {
			t.Fatalf("restart %d: %v", i+1, err)
		}
	}
	err := f.Restart(ctx, "irqbalance.service", "")
	if !errors.Is(err, ErrStartLimit) || !errors.Is(err, ErrJobFailed) {
		t.Fatalf("third restart = %v, want ErrStartLimit", err)
	}
	var je *JobError
	if !errors.As(err, &je) || je.Result != "failed" || je.ServiceResult != "start-limit-hit" {
		t.Errorf("JobError = %+v", je)
	}
	if st := f.State("irqbalance.service"); st.ActiveState != "failed" || st.Result != "start-limit-hit" || st.MainPID != 0 {
		t.Errorf("state after start-limit-hit = %+v", st)
	}
	// The limit is per interval on the clock.
	clk.Advance(10 * time.Second)
	if err := f.Restart(ctx, "irqbalance.service", ""); err != nil {
		t.Errorf("restart after the interval: %v", err)
	}
}

func TestFakeFailJobsAndFailNext(t *testing.T) {
	f := NewFake(clock.NewFake(t0))
	f.AddService("irqbalance.service")
	f.FailJobs("irqbalance.service", "failed", "exit-code")
	err := f.Restart(t.Context(), "irqbalance.service", "")
	var je *JobError
	if !errors.As(err, &je) || je.Result != "failed" || je.ServiceResult != "exit-code" || errors.Is(err, ErrStartLimit) {
		t.Errorf("Restart = %v", err)
	}
	f.FailJobs("irqbalance.service", "", "")
	if err := f.Restart(t.Context(), "irqbalance.service", ""); err != nil {
		t.Errorf("Restart after FailJobs cleared = %v", err)
	}

	f.FailNext("Unit", "irqbalance.service", ErrUnavailable)
	if _, err := f.Unit(t.Context(), "irqbalance.service"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("first Unit = %v, want the scripted error", err)
	}
	if _, err := f.Unit(t.Context(), "irqbalance.service"); err != nil {
		t.Errorf("second Unit = %v, want nil (one-shot)", err)
	}
	f.FailNext("Signal", "", ErrUnavailable)
	if err := f.Signal(t.Context(), "other.service", syscall.SIGHUP); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Signal = %v, want the scripted error for any unit", err)
	}
}

func TestFakeSignal(t *testing.T) {
	f := NewFake(clock.NewFake(t0))
	f.AddService("irqbalance.service")
	if err := f.Signal(t.Context(), "irqbalance.service", syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if c := f.CallsTo("Signal"); len(c) != 1 || c[0].Signal != syscall.SIGHUP {
		t.Errorf("Signal calls = %+v", c)
	}
	f.SetUnit(UnitState{Name: "irqbalance.service", LoadState: "loaded", ActiveState: "inactive"})
	if err := f.Signal(t.Context(), "irqbalance.service", syscall.SIGHUP); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Signal of a stopped unit = %v, want ErrNoProcess", err)
	}
}

func TestFakeSetAllowedCPUs(t *testing.T) {
	f := NewFake(clock.NewFake(t0))
	f.AddService("kubelet.service")
	if err := f.SetAllowedCPUs(t.Context(), "kubelet.service", cpuset.Range(2, 3), true); err != nil {
		t.Fatal(err)
	}
	st := f.State("kubelet.service")
	if !st.AllowedCPUs.Equal(cpuset.Range(2, 3)) || !st.EffectiveCPUs.IsEmpty() {
		t.Errorf("not enforced: %v / %v", st.AllowedCPUs, st.EffectiveCPUs)
	}
	f.SetEnforced(true)
	if err := f.SetAllowedCPUs(t.Context(), "kubelet.service", cpuset.Range(1, 3), false); err != nil {
		t.Fatal(err)
	}
	st = f.State("kubelet.service")
	if !st.EffectiveCPUs.Equal(cpuset.Range(1, 3)) {
		t.Errorf("enforced: EffectiveCPUs = %v", st.EffectiveCPUs)
	}
	c := f.CallsTo("SetAllowedCPUs")
	if len(c) != 2 || !c[0].Runtime || c[1].Runtime || !c[1].CPUs.Equal(cpuset.Range(1, 3)) {
		t.Errorf("calls = %+v", c)
	}
}

func TestFakeWatch(t *testing.T) {
	f := NewFake(clock.NewFake(t0))
	f.AddService("kubelet.service")
	f.AddService("irqbalance.service")
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := f.Watch(ctx, "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Restart(ctx, "irqbalance.service", ""); err != nil { // not watched
		t.Fatal(err)
	}
	if err := f.Restart(ctx, "kubelet.service", ""); err != nil {
		t.Fatal(err)
	}
	newPID := f.State("kubelet.service").MainPID
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	defer wcancel()
	stop, err := WaitChange(wctx, ch, "kubelet.service", nil)
	if err != nil || stop.MainPID != 0 || stop.ActiveState != "inactive" {
		t.Errorf("first change = %+v, %v; want the stop", stop, err)
	}
	start, err := WaitChange(wctx, ch, "kubelet.service", nil)
	if err != nil || start.MainPID != newPID || !(start.ActiveState == "active") {
		t.Errorf("second change = %+v, %v; want the start with PID %d", start, err, newPID)
	}
	f.Reconnect()
	rc, err := WaitChange(wctx, ch, "kubelet.service", nil)
	if err != nil || !rc.Reconnected || rc.MainPID != newPID {
		t.Errorf("after Reconnect: %+v, %v", rc, err)
	}
	f.Emit(Change{Unit: "kubelet.service", ActiveState: "failed"})
	if c, err := WaitChange(wctx, ch, "kubelet.service", nil); err != nil || c.ActiveState != "failed" {
		t.Errorf("emitted change = %+v, %v", c, err)
	}
	cancel()
	select {
	case _, open := <-ch:
		if open {
			t.Error("unexpected change after cancel")
		}
	case <-time.After(time.Second):
		t.Error("channel not closed after ctx ended")
	}
}

func TestRestartVerified(t *testing.T) {
	ctx := t.Context()
	f := NewFake(clock.NewFake(t0))
	if _, _, err := RestartVerified(ctx, f, "irqbalance.service", ""); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("unknown unit: %v, want ErrNoSuchUnit", err)
	}
	if n := len(f.CallsTo("Restart")); n != 0 {
		t.Errorf("restarted a unit that does not exist (%d calls)", n)
	}

	f.AddService("irqbalance.service")
	before, after, err := RestartVerified(ctx, f, "irqbalance.service", "")
	if err != nil || before.MainPID == after.MainPID || !after.Active() {
		t.Errorf("RestartVerified = %+v → %+v, %v", before, after, err)
	}

	f.SetStartLimit("irqbalance.service", 1, time.Minute)
	if _, _, err := RestartVerified(ctx, f, "irqbalance.service", ""); err != nil {
		t.Fatalf("first restart under the limit: %v", err)
	}
	if _, _, err := RestartVerified(ctx, f, "irqbalance.service", ""); !errors.Is(err, ErrStartLimit) {
		t.Errorf("start limit: %v, want ErrStartLimit", err)
	}

	// A restart that "succeeds" but leaves the same main process is caught.
	g := &samePID{Fake: NewFake(clock.NewFake(t0))}
	g.AddService("irqbalance.service")
	if _, _, err := RestartVerified(ctx, g, "irqbalance.service", ""); err == nil {
		t.Error("unchanged MainPID not reported")
	}
}

// samePID is a Fake whose restarts change nothing.
type samePID struct{ *Fake }

func (s *samePID) Restart(ctx context.Context, name, mode string) error { return nil }

func TestWaitChangeEnds(t *testing.T) {
	ch := make(chan Change)
	close(ch)
	if _, err := WaitChange(t.Context(), ch, "x.service", nil); err == nil {
		t.Error("closed channel: no error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := WaitChange(ctx, make(chan Change), "x.service", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
