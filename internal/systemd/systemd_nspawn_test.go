package systemd

// Tests against a real systemd and D-Bus in a systemd-nspawn container (see
// package nspawn for when they skip). The Conn dials the container's system bus
// from the host.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
)

// testLog is an slog.Logger writing to t.Log until the test ends (a watch
// goroutine may still log while it shuts down).
func testLog(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var _ io.Writer = (*tWriter)(nil)

// boot boots a container and dials its system bus with a Conn.
func boot(t *testing.T) (*nspawn.Container, *Conn, context.Context) {
	t.Helper()
	log := testLog(t) // registered first: closed last
	c := nspawn.Boot(t, nspawn.Options{Name: "nk-systemd"})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	start := time.Now()
	conn, err := Dial(ctx, c.BusAddress(), log, nil)
	if err != nil {
		t.Fatalf("Dial(%s): %v", c.BusAddress(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Logf("Dial: %v", since(start))
	return c, conn, ctx
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Microsecond) }

func mustUnit(ctx context.Context, t *testing.T, conn *Conn, name string) UnitState {
	t.Helper()
	st, err := conn.Unit(ctx, name)
	if err != nil {
		t.Fatalf("Unit(%s): %v", name, err)
	}
	return st
}

func execIn(ctx context.Context, t *testing.T, c *nspawn.Container, args ...string) string {
	t.Helper()
	out, err := c.Exec(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNspawnUnits(t *testing.T) {
	c, conn, ctx := boot(t)

	// Unit: the two units nodekeeper cares about, and one that does not exist.
	start := time.Now()
	irq := mustUnit(ctx, t, conn, "irqbalance.service")
	t.Logf("Unit(irqbalance.service) in %v: %+v", since(start), irq)
	if irq.LoadState != "loaded" || !irq.Active() || irq.SubState != "running" || irq.MainPID == 0 {
		t.Fatalf("irqbalance.service: %+v", irq)
	}
	if irq.ControlGroup != "/system.slice/irqbalance.service" || irq.Result != "success" {
		t.Errorf("irqbalance.service ControlGroup %q Result %q", irq.ControlGroup, irq.Result)
	}
	if irq.InactiveExitTimestamp.IsZero() || time.Since(irq.InactiveExitTimestamp) > time.Minute {
		t.Errorf("irqbalance.service InactiveExitTimestamp = %v", irq.InactiveExitTimestamp)
	}
	kub := mustUnit(ctx, t, conn, "kubelet.service")
	if !kub.Active() || kub.MainPID == 0 || !kub.AllowedCPUs.IsEmpty() {
		t.Fatalf("kubelet.service: %+v", kub)
	}
	nf, err := conn.Unit(ctx, "no-such-unit.service")
	if err != nil || nf.Exists() || nf.LoadState != "not-found" || nf.MainPID != 0 {
		t.Errorf("Unit(no-such-unit.service) = %+v, %v; want not-found without error", nf, err)
	}

	// Restart: a new main process, and InactiveExitTimestamp moves.
	start = time.Now()
	if err := conn.Restart(ctx, "irqbalance.service", ""); err != nil {
		t.Fatalf("Restart(irqbalance.service): %v", err)
	}
	t.Logf("Restart(irqbalance.service): job done in %v", since(start))
	irq2 := mustUnit(ctx, t, conn, "irqbalance.service")
	if !irq2.Active() || irq2.MainPID == 0 || irq2.MainPID == irq.MainPID {
		t.Fatalf("after Restart: %+v (MainPID before %d)", irq2, irq.MainPID)
	}
	if !irq2.InactiveExitTimestamp.After(irq.InactiveExitTimestamp) {
		t.Errorf("InactiveExitTimestamp %v not after %v", irq2.InactiveExitTimestamp, irq.InactiveExitTimestamp)
	}
	t.Logf("irqbalance MainPID %d -> %d", irq.MainPID, irq2.MainPID)

	// RestartVerified does the same with its own checks.
	before, after, err := RestartVerified(ctx, conn, "irqbalance.service", "replace")
	if err != nil {
		t.Fatalf("RestartVerified: %v", err)
	}
	t.Logf("RestartVerified: MainPID %d -> %d", before.MainPID, after.MainPID)

	if err := conn.Restart(ctx, "no-such-unit.service", ""); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("Restart(no-such-unit.service) = %v, want ErrNoSuchUnit", err)
	}

	// Signal SIGHUP to irqbalance: it rescans and keeps running, same process.
	// Only once it catches SIGHUP: right after a restart its main process may
	// not have exec'd irqbalance or installed the handler yet, and SIGHUP's
	// default action ends it (cleanly, as far as systemd is concerned).
	waitCaught(ctx, t, c, after.MainPID, syscall.SIGHUP)
	start = time.Now()
	if err := conn.Signal(ctx, "irqbalance.service", syscall.SIGHUP); err != nil {
		t.Fatalf("Signal(irqbalance.service, SIGHUP): %v", err)
	}
	t.Logf("Signal(irqbalance.service, SIGHUP) in %v", since(start))
	time.Sleep(200 * time.Millisecond)
	if irq3 := mustUnit(ctx, t, conn, "irqbalance.service"); !irq3.Active() || irq3.MainPID != after.MainPID {
		t.Errorf("irqbalance after SIGHUP: %+v, want active with MainPID %d", irq3, after.MainPID)
		logJournal(ctx, t, c, "irqbalance.service")
	}

	// SetAllowedCPUs stores a runtime drop-in (not enforced on this host's
	// hybrid cgroups: EffectiveCPUs stays as it is).
	const dropinDir = "/run/systemd/system.control/kubelet.service.d"
	start = time.Now()
	if err := conn.SetAllowedCPUs(ctx, "kubelet.service", cpuset.New(0), true); err != nil {
		t.Fatalf("SetAllowedCPUs(kubelet.service, 0): %v", err)
	}
	t.Logf("SetAllowedCPUs(kubelet.service, 0, runtime) in %v", since(start))
	dropin := readDropin(t, c, dropinDir, "AllowedCPUs=")
	if !strings.Contains(dropin, "AllowedCPUs=0\n") {
		t.Errorf("drop-in: %q, want AllowedCPUs=0", dropin)
	}
	kub2 := mustUnit(ctx, t, conn, "kubelet.service")
	if !kub2.AllowedCPUs.Equal(cpuset.New(0)) {
		t.Errorf("AllowedCPUs read back = %q, want 0", kub2.AllowedCPUs)
	}
	t.Logf("kubelet AllowedCPUs=%q EffectiveCPUs=%q", kub2.AllowedCPUs, kub2.EffectiveCPUs)
	// A wider set, written as systemd's byte array: CPUs 0-1.
	if err := conn.SetAllowedCPUs(ctx, "kubelet.service", cpuset.Range(0, 1), true); err != nil {
		t.Fatal(err)
	}
	if got := mustUnit(ctx, t, conn, "kubelet.service").AllowedCPUs; !got.Equal(cpuset.Range(0, 1)) {
		t.Errorf("AllowedCPUs = %q, want 0-1", got)
	}
	if d := readDropin(t, c, dropinDir, "AllowedCPUs="); !strings.Contains(d, "AllowedCPUs=0-1\n") {
		t.Errorf("drop-in: %q, want AllowedCPUs=0-1", d)
	}
	// The empty set resets.
	if err := conn.SetAllowedCPUs(ctx, "kubelet.service", cpuset.Set{}, true); err != nil {
		t.Fatalf("SetAllowedCPUs(kubelet.service, empty): %v", err)
	}
	if got := mustUnit(ctx, t, conn, "kubelet.service").AllowedCPUs; !got.IsEmpty() {
		t.Errorf("AllowedCPUs after reset = %q, want empty", got)
	}
	if err := conn.SetAllowedCPUs(ctx, "no-such-unit.service", cpuset.New(0), true); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("SetAllowedCPUs(no-such-unit.service) = %v, want ErrNoSuchUnit", err)
	}

	// Signal reaches the main process: SIGHUP ends the sleep that stands in
	// for kubelet. Then there is no process left to signal, and TryRestart
	// leaves the stopped unit alone.
	if err := conn.Signal(ctx, "kubelet.service", syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kub3 := waitUnit(ctx, t, conn, "kubelet.service", func(s UnitState) bool { return !s.Active() })
	t.Logf("kubelet after SIGHUP: %s/%s result %s", kub3.ActiveState, kub3.SubState, kub3.Result)
	if kub3.MainPID != 0 {
		t.Errorf("kubelet MainPID %d after SIGHUP", kub3.MainPID)
	}
	if err := conn.Signal(ctx, "kubelet.service", syscall.SIGHUP); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Signal of a stopped unit = %v, want ErrNoProcess", err)
	}
	if err := conn.TryRestart(ctx, "kubelet.service"); err != nil {
		t.Errorf("TryRestart(stopped kubelet.service) = %v", err)
	}
	if s := mustUnit(ctx, t, conn, "kubelet.service"); s.Active() {
		t.Errorf("TryRestart started a stopped unit: %+v", s)
	}
	if err := conn.Restart(ctx, "kubelet.service", ""); err != nil {
		t.Fatal(err)
	}
	if err := conn.TryRestart(ctx, "kubelet.service"); err != nil {
		t.Errorf("TryRestart(kubelet.service) = %v", err)
	}
}

// waitCaught waits until process pid in the container catches sig (its bit
// in SigCgt of /proc/pid/status).
func waitCaught(ctx context.Context, t *testing.T, c *nspawn.Container, pid uint32, sig syscall.Signal) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		b, err := c.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if hex, ok := strings.CutPrefix(line, "SigCgt:"); ok {
					if mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64); err == nil && mask&(1<<(sig-1)) != 0 {
						t.Logf("pid %d catches signal %d after %v", pid, sig, since(start))
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d does not catch signal %d: %v", pid, sig, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logJournal(ctx context.Context, t *testing.T, c *nspawn.Container, unit string) {
	t.Helper()
	entries, err := c.Journal(ctx, unit)
	if err != nil {
		t.Logf("journal of %s: %v", unit, err)
		return
	}
	for _, e := range entries {
		t.Logf("journal %s: [%s] %s", unit, e["_PID"], e["MESSAGE"])
	}
}

// readDropin returns the drop-in in dir (inside the container) that contains
// want.
func readDropin(t *testing.T, c *nspawn.Container, dir, want string) string {
	t.Helper()
	out, err := c.Exec(t.Context(), "ls", "-1", dir)
	if err != nil {
		t.Fatalf("no drop-in directory %s: %v", dir, err)
	}
	for _, name := range strings.Fields(out) {
		b, err := c.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), want) {
			t.Logf("drop-in %s/%s:\n%s", dir, name, b)
			return string(b)
		}
	}
	t.Fatalf("no drop-in in %s contains %q (files: %q)", dir, want, out)
	return ""
}

// waitUnit polls the unit until ok or ctx ends.
func waitUnit(ctx context.Context, t *testing.T, conn *Conn, name string, ok func(UnitState) bool) UnitState {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		st, err := conn.Unit(ctx, name)
		if err == nil && ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("unit %s: condition not met: %+v, %v", name, st, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nextChange waits for a change of unit that satisfies ok, logging the others.
func nextChange(ctx context.Context, t *testing.T, ch <-chan Change, unit string, timeout time.Duration, ok func(Change) bool) Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := WaitChange(ctx, ch, unit, func(c Change) bool {
		t.Logf("change: %+v", c)
		// Every report is one moment of systemd's state, never a mix of an
		// old signal and a newer read: a running service has a main process.
		// (systemd itself publishes "inactive" with the new MainPID for an
		// instant while starting: it flushes the pending change signal before
		// the state transition.)
		if c.ActiveState == "active" && c.SubState == "running" && c.MainPID == 0 {
			t.Errorf("inconsistent change: %+v", c)
		}
		return ok(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNspawnWatch(t *testing.T) {
	c, conn, ctx := boot(t)
	start := time.Now()
	ch, err := conn.Watch(ctx, "kubelet.service", "irqbalance.service")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Watch established in %v", since(start))
	old := mustUnit(ctx, t, conn, "kubelet.service")

	// A restart from inside the container, not through this Conn.
	start = time.Now()
	execIn(ctx, t, c, "systemctl", "restart", "kubelet.service")
	got := nextChange(ctx, t, ch, "kubelet.service", 10*time.Second, func(c Change) bool {
		return c.MainPID != 0 && c.MainPID != old.MainPID && c.ActiveState == "active"
	})
	t.Logf("change with the new MainPID %d (was %d) %v after systemctl restart began", got.MainPID, old.MainPID, since(start))
	if got.Reconnected {
		t.Error("a plain change marked Reconnected")
	}
	if now := mustUnit(ctx, t, conn, "kubelet.service"); now.MainPID != got.MainPID {
		t.Errorf("Unit MainPID %d, change said %d", now.MainPID, got.MainPID)
	}

	// The process dying is a change too (ActiveState and MainPID).
	execIn(ctx, t, c, "systemctl", "kill", "--signal=SIGKILL", "kubelet.service")
	dead := nextChange(ctx, t, ch, "kubelet.service", 10*time.Second, func(c Change) bool { return c.MainPID == 0 })
	if dead.ActiveState == "active" {
		t.Errorf("change after SIGKILL: %+v", dead)
	}

	// Other watched units report too; a unit not watched never shows up.
	irq := mustUnit(ctx, t, conn, "irqbalance.service")
	execIn(ctx, t, c, "systemctl", "restart", "irqbalance.service")
	nextChange(ctx, t, ch, "irqbalance.service", 10*time.Second, func(c Change) bool {
		return c.MainPID != 0 && c.MainPID != irq.MainPID
	})
	execIn(ctx, t, c, "systemctl", "restart", "systemd-journald.service")
	time.Sleep(300 * time.Millisecond)
	for len(ch) > 0 {
		if c := <-ch; c.Unit != "kubelet.service" && c.Unit != "irqbalance.service" {
			t.Errorf("change of an unwatched unit: %+v", c)
		}
	}

	// The channel closes when the context ends.
	wctx, cancel := context.WithCancel(ctx)
	ch2, err := conn.Watch(wctx, "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, open := <-ch2:
		for open {
			_, open = <-ch2
		}
	case <-time.After(5 * time.Second):
		t.Error("Watch channel not closed after its context ended")
	}
}

func TestNspawnReconnect(t *testing.T) {
	c, conn, ctx := boot(t)
	ch, err := conn.Watch(ctx, "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	old := mustUnit(ctx, t, conn, "kubelet.service")
	dbusBefore := mustUnit(ctx, t, conn, "dbus.service")

	// Restarting D-Bus drops every connection; systemd re-joins the new bus.
	start := time.Now()
	execIn(ctx, t, c, "systemctl", "restart", "dbus.service")
	t.Logf("dbus.service (pid %d) restarted in %v", dbusBefore.MainPID, since(start))

	rc := nextChange(ctx, t, ch, "kubelet.service", 30*time.Second, func(c Change) bool { return c.Reconnected })
	t.Logf("Reconnected change %v after the restart began: %+v", since(start), rc)
	if rc.MainPID != old.MainPID || rc.ActiveState != "active" {
		t.Errorf("Reconnected change %+v, want the running kubelet (MainPID %d)", rc, old.MainPID)
	}

	// Calls work again (the first after the loss reconnects).
	st := waitUnit(ctx, t, conn, "dbus.service", func(s UnitState) bool { return s.Active() })
	t.Logf("Unit() works again %v after the restart began; new dbus-daemon pid %d", since(start), st.MainPID)
	if st.MainPID == dbusBefore.MainPID {
		t.Errorf("dbus-daemon MainPID unchanged (%d)", st.MainPID)
	}
	restartStart := time.Now()
	if err := conn.Restart(ctx, "irqbalance.service", ""); err != nil {
		t.Fatalf("Restart after reconnect: %v", err)
	}
	t.Logf("Restart(irqbalance.service) after reconnect: %v", since(restartStart))

	// The watch resumed: a later change arrives.
	start = time.Now()
	execIn(ctx, t, c, "systemctl", "restart", "kubelet.service")
	got := nextChange(ctx, t, ch, "kubelet.service", 10*time.Second, func(c Change) bool {
		return !c.Reconnected && c.MainPID != 0 && c.MainPID != old.MainPID
	})
	t.Logf("change after reconnect: MainPID %d (%v)", got.MainPID, since(start))

	// A bus daemon that dies (dbus.socket stays and starts a new one on the
	// next connection) is handled the same way.
	start = time.Now()
	execIn(ctx, t, c, "systemctl", "kill", "--signal=SIGKILL", "dbus.service")
	nextChange(ctx, t, ch, "kubelet.service", 30*time.Second, func(c Change) bool { return c.Reconnected })
	waitUnit(ctx, t, conn, "kubelet.service", func(s UnitState) bool { return s.MainPID == got.MainPID })
	t.Logf("after SIGKILL of dbus-daemon: watch and calls back in %v", since(start))
}

func TestNspawnStartLimit(t *testing.T) {
	c, conn, ctx := boot(t)
	const unit = "nk-start-limit.service"
	err := c.WriteFile("/run/systemd/system/"+unit, []byte(`[Unit]
Description=start rate limit test unit
StartLimitIntervalSec=1h
StartLimitBurst=2

[Service]
ExecStart=/bin/sleep infinity
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	execIn(ctx, t, c, "systemctl", "daemon-reload")

	for i := 1; i <= 2; i++ {
		if err := conn.Restart(ctx, unit, ""); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
	}
	start := time.Now()
	err = conn.Restart(ctx, unit, "")
	t.Logf("third restart (%v): %v", since(start), err)
	if !errors.Is(err, ErrStartLimit) || !errors.Is(err, ErrJobFailed) {
		t.Fatalf("third restart = %v, want ErrStartLimit", err)
	}
	var je *JobError
	if !errors.As(err, &je) || je.Result != "failed" || je.ServiceResult != "start-limit-hit" {
		t.Errorf("JobError = %+v", je)
	}
	st := mustUnit(ctx, t, conn, unit)
	if st.Result != "start-limit-hit" || st.ActiveState != "failed" {
		t.Errorf("state = %+v", st)
	}
	// A job failing for another reason is not the start limit.
	const bad = "nk-fails.service"
	if err := c.WriteFile("/run/systemd/system/"+bad, []byte("[Service]\nType=oneshot\nExecStart=/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	execIn(ctx, t, c, "systemctl", "daemon-reload")
	err = conn.Restart(ctx, bad, "")
	if !errors.Is(err, ErrJobFailed) || errors.Is(err, ErrStartLimit) || !errors.As(err, &je) || je.ServiceResult != "exit-code" {
		t.Errorf("restart of a failing unit = %v (%+v), want a job failure with exit-code", err, je)
	}
}
