package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/irqbalance"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// fakeNotifier records sd_notify messages.
type fakeNotifier struct {
	mu       sync.Mutex
	ready    int
	statuses []string
	pings    int
	wd       time.Duration
	err      error // returned by Status and Watchdog
}

func (n *fakeNotifier) Ready() error { n.mu.Lock(); n.ready++; n.mu.Unlock(); return nil }
func (n *fakeNotifier) Status(s string) error {
	n.mu.Lock()
	n.statuses = append(n.statuses, s)
	n.mu.Unlock()
	return n.err
}
func (n *fakeNotifier) Stopping() error { return nil }
func (n *fakeNotifier) Watchdog() error { n.mu.Lock(); n.pings++; n.mu.Unlock(); return n.err }
func (n *fakeNotifier) WatchdogInterval() (time.Duration, bool) {
	return n.wd, n.wd > 0
}
func (n *fakeNotifier) get() (ready, pings int, last string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.statuses) > 0 {
		last = n.statuses[len(n.statuses)-1]
	}
	return n.ready, n.pings, last
}

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type rig struct {
	t       *testing.T
	paths   hostfs.Paths
	clk     *clock.Fake
	units   *systemd.Fake
	notify  *fakeNotifier
	metrics *metrics.Metrics
	logs    *syncBuffer
	d       *Daemon
	cancel  context.CancelFunc
	stopped chan struct{}
	reload  chan struct{}
	cfgFile string
	handles bool // the fake irqbalance handles SIGHUP
}

// skewedHost is 4 CPUs with a 4-queue mlx5 NIC whose IRQs all sit on CPU 3.
func skewedHost() hostfixture.Host {
	return hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1,
		Affinity: func(int) (cpuset.Set, cpuset.Set) { c := cpuset.New(3); return c, c }}}}
}

func newRig(t *testing.T, host hostfixture.Host, mutate func(*config.Config), setup func(*systemd.Fake)) *rig {
	t.Helper()
	r := &rig{t: t, paths: host.MustBuild(t), clk: clock.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)),
		notify: &fakeNotifier{}, metrics: metrics.New(), logs: &syncBuffer{}, reload: make(chan struct{}, 1), handles: true}
	r.units = systemd.NewFake(r.clk)
	if setup != nil {
		setup(r.units)
	}
	cfg := config.Default()
	cfg.Metrics.Listen = ""
	cfg.IRQ.VerifyTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	r.cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	h, err := hostfs.New(r.paths)
	if err != nil {
		t.Fatal(err)
	}
	r.d = New(Deps{
		FS: h, Config: cfg, ConfigFile: r.cfgFile, Log: logging.New(r.logs, "text", -4), Metrics: r.metrics,
		Notifier: r.notify, Clock: r.clk, Links: irq.SysfsLinks{FS: h},
		DialUnits:     func(context.Context) (systemd.Units, error) { return r.units, nil },
		StatePath:     filepath.Join(r.paths.Root, state.RelPath),
		HandlesSignal: func(int, syscall.Signal) (bool, error) { return r.handles, nil },
	})
	return r
}

func (r *rig) start() {
	before, _, _ := r.notify.get() // a restart's READY=1 is the next one
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.stopped = cancel, make(chan struct{})
	go func() {
		defer close(r.stopped)
		if err := r.d.Run(ctx, r.reload); err != nil {
			r.t.Errorf("Run: %v", err)
		}
	}()
	r.t.Cleanup(r.stop)
	r.until("READY=1", func() bool { ready, _, _ := r.notify.get(); return ready == before+1 })
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.stopped
		r.cancel = nil
	}
}

// untilAdvancing waits until cond holds: it lets every goroutine of the
// test's bubble run until all are blocked (synctest.Wait), then checks; with
// advance it moves the fake clock a second per round (verification waits on
// it), else a false cond is final: nothing is left to run.
func (r *rig) untilAdvancing(what string, advance bool, cond func() bool) {
	r.t.Helper()
	for range 3000 {
		synctest.Wait()
		if cond() {
			return
		}
		if !advance {
			break
		}
		r.clk.Advance(time.Second)
	}
	r.t.Fatalf("timed out waiting for %s; log:\n%s", what, r.logs.String())
}

func (r *rig) until(what string, cond func() bool) { r.t.Helper(); r.untilAdvancing(what, false, cond) }

func (r *rig) remediations(action policy.Action, result policy.Result) float64 {
	mfs, err := r.metrics.Registry().Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nodekeeper_remediations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["action"] == string(action) && l["result"] == string(result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (r *rig) masks() []string {
	var out []string
	dirs, _ := os.ReadDir(filepath.Join(r.paths.Proc, "irq"))
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(r.paths.Proc, "irq", d.Name(), "smp_affinity"))
		out = append(out, d.Name()+"="+strings.TrimSpace(string(b)))
	}
	return out
}

func TestFallbackSpreadWhenIrqbalanceMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), nil, nil) // no irqbalance.service: LoadState not-found
		r.start()
		r.until("a verified spread", func() bool { return r.remediations(irq.ActionSpread, policy.Success) == 1 })
		if !strings.Contains(r.logs.String(), "irqbalance is not installed: spreading the IRQs ourselves") {
			t.Errorf("the journal must say why it spreads itself:\n%s", r.logs.String())
		}
		r.until("the outcome in the state file", func() bool {
			st, _ := state.Read(filepath.Join(r.paths.Root, state.RelPath))
			return st != nil && len(st.Actions) >= 2 && st.Actions[len(st.Actions)-1].Result == string(policy.Success)
		})
		r.clk.Advance(time.Minute) // the next periodic check finds it healthy
		r.until("status ok", func() bool { _, _, s := r.notify.get(); return strings.HasPrefix(s, "IRQ spread ok: ") })
	})
}

func TestRestartVerifyTimeoutThenCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), nil, func(f *systemd.Fake) { f.AddService(irqbalance.Unit) })
		r.clk.Advance(10 * time.Minute) // irqbalance has been up for a while
		r.start()
		// The fake irqbalance moves nothing: the restart happens, verification times out.
		r.untilAdvancing("verify timeout", true, func() bool {
			return r.remediations(irqbalance.ActionRestart, policy.VerifyTimeout) == 1
		})
		if n := len(r.units.CallsTo("Restart")); n != 1 {
			t.Fatalf("%d restarts, want 1", n)
		}
		// The next checks fall within the cool-down from irqbalance's restart: no loop.
		r.clk.Advance(time.Minute)
		r.until("a cool-down skip", func() bool {
			return r.remediations(irqbalance.ActionRestart, policy.SkippedCooldown) >= 1
		})
		if n := len(r.units.CallsTo("Restart")); n != 1 {
			t.Fatalf("restarted %d times within the cool-down", n)
		}
		if !strings.Contains(r.logs.String(), "message_id="+logging.MsgRepairFailed) {
			t.Errorf("a failed verification is logged with its MESSAGE_ID")
		}
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.DryRun = true }, nil)
		before := r.masks()
		r.start()
		r.until("a dry-run skip", func() bool { return r.remediations(irq.ActionSpread, policy.SkippedDryRun) == 1 })
		if got := r.masks(); strings.Join(got, " ") != strings.Join(before, " ") {
			t.Errorf("dry run wrote masks: %v → %v", before, got)
		}
		if !strings.Contains(r.logs.String(), "dry run: would write a round-robin spread") {
			t.Errorf("dry run must say what it would do:\n%s", r.logs.String())
		}
		_, _, s := r.notify.get()
		if !strings.HasSuffix(s, "(dry run)") {
			t.Errorf("STATUS= %q", s)
		}
	})
}

func TestCapPerHour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.MaxRepairsPerHour = 0 }, nil)
		r.start()
		r.until("a cap skip", func() bool { return r.remediations(irq.ActionSpread, policy.SkippedCap) == 1 })
		if !strings.Contains(r.logs.String(), "reason=cap") || !strings.Contains(r.logs.String(), "message_id="+logging.MsgRepairSkipped) {
			t.Errorf("a cap skip is visible in the journal:\n%s", r.logs.String())
		}
	})
}

func TestStartLimitFallsBackToSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), nil, func(f *systemd.Fake) {
			f.AddService(irqbalance.Unit)
			f.SetStartLimit(irqbalance.Unit, 0, time.Hour)
		})
		r.clk.Advance(10 * time.Minute)
		r.start()
		r.until("fallback spread", func() bool { return r.remediations(irq.ActionSpread, policy.Success) == 1 })
		if !strings.Contains(r.logs.String(), "start rate limit") {
			t.Errorf("the journal must name the start rate limit:\n%s", r.logs.String())
		}
		// irqbalance is now failed with start-limit-hit: later problems go straight to spreading, no restart loop.
		if n := len(r.units.CallsTo("Restart")); n != 1 {
			t.Errorf("%d restart attempts", n)
		}
	})
}

func TestSpreadWhileIrqbalanceActiveSendsSighup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.Remediation = config.RemediationSpread },
			func(f *systemd.Fake) { f.AddService(irqbalance.Unit) })
		r.start()
		r.untilAdvancing("a SIGHUP", true, func() bool { return len(r.units.CallsTo("Signal")) == 1 })
		if !strings.Contains(r.logs.String(), "sending it SIGHUP instead") {
			t.Errorf("the journal must say why it did not spread:\n%s", r.logs.String())
		}
		if c := r.units.CallsTo("Signal")[0]; c.Signal != 1 || c.Unit != irqbalance.Unit {
			t.Errorf("signal call %+v", c)
		}
	})
}

// A SIGHUP before irqbalance installed its handler would kill it: none is sent.
func TestNoSighupBeforeTheHandlerExists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.Remediation = config.RemediationSighup },
			func(f *systemd.Fake) { f.AddService(irqbalance.Unit) })
		r.handles = false
		r.start()
		r.untilAdvancing("a failed repair", true, func() bool {
			return r.remediations(irqbalance.ActionSighup, policy.Failure) == 1
		})
		if n := len(r.units.CallsTo("Signal")); n != 0 {
			t.Fatalf("%d signals sent to a process without a SIGHUP handler", n)
		}
		if !strings.Contains(r.logs.String(), "does not handle SIGHUP") {
			t.Errorf("the journal must say why:\n%s", r.logs.String())
		}
	})
}

func TestNoneOnlyReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.Remediation = config.RemediationNone },
			func(f *systemd.Fake) { f.AddService(irqbalance.Unit) })
		r.start()
		r.until("a problem status", func() bool { _, _, s := r.notify.get(); return strings.HasPrefix(s, "IRQ spread problem") })
		r.clk.Advance(2 * time.Minute)
		synctest.Wait() // everything the clock set off has run
		if n := len(r.units.CallsTo("Restart")) + len(r.units.CallsTo("Signal")); n != 0 {
			t.Errorf("remediation none made %d calls", n)
		}
		if strings.Count(r.logs.String(), "report only") != 1 {
			t.Errorf("'report only' is said once, not at every check:\n%s", r.logs.String())
		}
	})
}

func TestIrqbalanceRestartedByOthersTriggersRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}}
		r := newRig(t, host, nil, func(f *systemd.Fake) { f.AddService(irqbalance.Unit) })
		r.start()
		if err := r.units.Restart(context.Background(), irqbalance.Unit, "replace"); err != nil {
			t.Fatal(err)
		}
		r.until("the re-check announcement", func() bool { return strings.Contains(r.logs.String(), "re-checking after it settles") })
		checks := func() float64 { return histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds") }
		before := checks()
		r.clk.Advance(5 * time.Second) // settleDelay
		r.until("the re-check", func() bool { return checks() == before+1 })
	})
}

func TestWatchdogPingsFromTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.Remediation = config.RemediationNone }, nil)
		r.notify.wd = 20 * time.Second
		r.start()
		for i := 1; i <= 3; i++ {
			r.clk.Advance(10 * time.Second)
			r.until("a watchdog ping", func() bool { _, p, _ := r.notify.get(); return p >= i })
		}
	})
}

func TestReloadKeepsOldConfigOnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.Remediation = config.RemediationNone }, nil)
		r.start()
		os.WriteFile(r.cfgFile, []byte("irq:\n  remediation: sometimes\n"), 0o644)
		r.reload <- struct{}{}
		r.until("the reload error", func() bool {
			return strings.Contains(r.logs.String(), "message_id="+logging.MsgConfigReloadFailed)
		})
		os.WriteFile(r.cfgFile, []byte("dryRun: true\nirq:\n  remediation: none\n"), 0o644)
		r.reload <- struct{}{}
		r.until("the reload", func() bool { return strings.Contains(r.logs.String(), "configuration reloaded") })
	})
}

func TestWithoutSystemdNothingIsWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), nil, nil)
		r.d.d.DialUnits = func(context.Context) (systemd.Units, error) { return nil, os.ErrNotExist }
		before := r.masks()
		r.start()
		r.until("the explanation", func() bool { return strings.Contains(r.logs.String(), "cannot tell whether irqbalance runs") })
		if got := r.masks(); strings.Join(got, " ") != strings.Join(before, " ") {
			t.Errorf("masks written without knowing about irqbalance")
		}
		if strings.Count(r.logs.String(), "cannot reach systemd") != 1 {
			t.Errorf("the D-Bus failure is logged once")
		}
	})
}

func histogramCount(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, x := range mf.GetMetric() {
				n += float64(x.GetHistogram().GetSampleCount())
			}
		}
	}
	return n
}

func histogramCountLabel(t *testing.T, m *metrics.Metrics, name, label, value string) float64 {
	t.Helper()
	mfs, _ := m.Registry().Gather()
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, x := range mf.GetMetric() {
			for _, l := range x.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					n += float64(x.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return n
}

func TestPausePipelineRepairsAndTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resumes := make(chan freeze.Resume, 4)
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.MaxRepairsPerHour = 6 }, nil)
		r.d.d.Resumes = resumes
		// The start check repairs the skew; skew again before the pause.
		r.start()
		r.until("the start repair", func() bool { return r.remediations(irq.ActionSpread, policy.Success) == 1 })
		r.clk.Advance(3 * time.Minute) // past the cool-down
		synctest.Wait()                // everything the clock set off has run
		for _, m := range r.masks() {  // the pause collapses the IRQs onto CPU 3
			irqN, _, _ := strings.Cut(m, "=")
			os.WriteFile(filepath.Join(r.paths.Proc, "irq", irqN, "smp_affinity"), []byte("8"), 0o644)
		}
		resumeAt := r.clk.Now()
		resumes <- freeze.Resume{At: resumeAt, Length: 5 * time.Second, Source: freeze.SourceClock, EventID: "E1"}
		resumes <- freeze.Resume{At: resumeAt.Add(time.Second), Length: 2 * time.Second, Source: freeze.SourceClock} // same window
		r.until("the pause log", func() bool { return strings.Count(r.logs.String(), "message_id="+logging.MsgVMPause) == 2 })
		checks := histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds")
		r.clk.Advance(5 * time.Second) // settleDelay
		r.until("the post-resume repair", func() bool {
			return histogramCountLabel(t, r.metrics, "nodekeeper_pause_to_verified_seconds", "outcome", string(freeze.OutcomeRepaired)) == 1
		})
		if got := histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds"); got != checks+1 {
			t.Errorf("two resumes in one settle window ran %v checks, want one", got-checks)
		}
		r.until("both pauses' outcome in the state file", func() bool {
			st, _ := state.Read(filepath.Join(r.paths.Root, state.RelPath))
			return st != nil && len(st.Pauses) == 2 && st.Pauses[0].EventID == "E1" &&
				st.Pauses[0].Outcome == string(freeze.OutcomeRepaired) && st.Pauses[1].Outcome == string(freeze.OutcomeRepaired)
		})
	})
}

// A periodic check that fell due during a VM pause runs as the VM resumes,
// before the pause detector reports the pause: the new problem it sees waits
// for irq.settleDelay, and the pause's check takes it over (one repair, timed
// from the resume).
func TestOverdueTimerCheckWaitsForThePause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resumes := make(chan freeze.Resume, 4)
		host := hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}}
		r := newRig(t, host, nil, nil)
		r.d.d.Resumes = resumes
		r.start()
		for _, m := range r.masks() { // the pause collapses the IRQs onto CPU 3
			irqN, _, _ := strings.Cut(m, "=")
			os.WriteFile(filepath.Join(r.paths.Proc, "irq", irqN, "smp_affinity"), []byte("8"), 0o644)
		}
		checks := func() float64 { return histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds") }
		before := checks()
		r.clk.Advance(time.Minute) // the periodic check, at the resume
		r.until("the periodic check", func() bool { return checks() == before+1 })
		synctest.Wait() // everything the clock set off has run
		if n := r.remediations(irq.ActionSpread, policy.Success); n != 0 || strings.Contains(r.logs.String(), "IRQ spread problem") {
			t.Fatalf("the periodic check at the resume judged at once (%v repairs):\n%s", n, r.logs.String())
		}
		resumes <- freeze.Resume{At: r.clk.Now(), Length: 5 * time.Second, Source: freeze.SourceClock}
		r.until("the pause", func() bool { return strings.Contains(r.logs.String(), "VM pause of 5.0s") })
		r.clk.Advance(5 * time.Second) // settleDelay
		r.until("the pause's repair", func() bool {
			return histogramCountLabel(t, r.metrics, "nodekeeper_pause_to_verified_seconds", "outcome", string(freeze.OutcomeRepaired)) == 1
		})
		if n := r.remediations(irq.ActionSpread, policy.Success); n != 1 {
			t.Errorf("%v repairs, want 1", n)
		}
		if !strings.Contains(r.logs.String(), `trigger="timer (re-check), vm pause (clock)"`) {
			t.Errorf("the problem is judged once, by the check after the pause:\n%s", r.logs.String())
		}
	})
}

func TestPauseAlreadyOKAndIMDSFallbackNotTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resumes := make(chan freeze.Resume, 4)
		host := hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}}
		r := newRig(t, host, nil, nil)
		r.d.d.Resumes = resumes
		r.start()
		resumes <- freeze.Resume{At: r.clk.Now(), Length: 3 * time.Second, Source: freeze.SourceClock}
		r.until("the pause", func() bool { return strings.Contains(r.logs.String(), "VM pause of 3.0s") })
		r.clk.Advance(5 * time.Second)
		r.until("already ok", func() bool {
			return histogramCountLabel(t, r.metrics, "nodekeeper_pause_to_verified_seconds", "outcome", string(freeze.OutcomeAlreadyOK)) == 1
		})
		resumes <- freeze.Resume{Source: freeze.SourceIMDS, EventID: "E2"} // the event left the list unseen by the clock
		r.until("the imds pause", func() bool { return strings.Contains(r.logs.String(), "event_id=E2") })
		r.clk.Advance(5 * time.Second)
		synctest.Wait() // everything the clock set off has run
		if n := histogramCount(t, r.metrics, "nodekeeper_pause_to_verified_seconds"); n != 1 {
			t.Errorf("an imds-fallback pause has no resume time and is not timed: %v observations", n)
		}
	})
}

// kubeletHost is 8 CPUs, cgroup v2 with cpuset, NIC queue IRQs on CPUs 4-5.
func kubeletHost() hostfixture.Host {
	return hostfixture.Host{CPUs: 8, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1,
		Affinity: func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(4 + i%2); return c, c }}}}
}

func v2(r *rig) {
	os.MkdirAll(r.paths.Cgroup, 0o755)
	os.WriteFile(filepath.Join(r.paths.Cgroup, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
}

func TestKubeletPinnedBeforeReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, kubeletHost(), func(c *config.Config) { c.IRQ.MinSpreadRatio = 0.2 }, func(f *systemd.Fake) {
			f.SetEnforced(true)
			f.AddService("kubelet.service")
		})
		v2(r)
		r.d = New(r.d.d) // re-detect the cgroup mode with the v2 marker in place
		r.start()
		calls := r.units.CallsTo("SetAllowedCPUs")
		if len(calls) != 1 || calls[0].CPUs.String() != "0-3,6-7" || !calls[0].Runtime {
			t.Fatalf("at READY=1 the pin must be stored: %+v", calls)
		}
		if !strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletPinned) {
			t.Errorf("the pin is journaled:\n%s", r.logs.String())
		}
		// Later checks keep it (hysteresis): no new call while nothing changed.
		r.clk.Advance(3 * time.Minute)
		synctest.Wait() // everything the clock set off has run
		if n := len(r.units.CallsTo("SetAllowedCPUs")); n != 1 {
			t.Errorf("%d SetAllowedCPUs calls while nothing changed", n)
		}
		// The IRQs move onto CPUs 0-1: the pin now overlaps net_rx CPUs and a disjoint choice exists: re-pin.
		for i, m := range r.masks() {
			irqN, _, _ := strings.Cut(m, "=")
			os.WriteFile(filepath.Join(r.paths.Proc, "irq", irqN, "smp_affinity"), []byte(strconv.Itoa(1+i%2)), 0o644)
		}
		r.clk.Advance(time.Minute)
		r.until("a re-pin off the new net_rx CPUs", func() bool {
			c := r.units.CallsTo("SetAllowedCPUs")
			return len(c) == 2 && c[1].CPUs.String() == "2-7"
		})
	})
}

func TestKubeletPinningOffUndoesOurPin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, kubeletHost(), func(c *config.Config) { c.IRQ.MinSpreadRatio = 0.2 }, func(f *systemd.Fake) {
			f.SetEnforced(true)
			f.AddService("kubelet.service")
		})
		v2(r)
		r.d = New(r.d.d)
		r.start()
		r.stop()
		// Restart with pinning off: the state file says the pin is ours, so it is removed.
		r.d.d.Config.Kubelet.Pinning = config.PinningOff
		r.d = New(r.d.d)
		r.start()
		r.until("the unpin", func() bool { return strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletUnpinned) })
		if st := r.units.State("kubelet.service"); !st.AllowedCPUs.IsEmpty() {
			t.Errorf("AllowedCPUs still %s", st.AllowedCPUs)
		}
	})
}

func TestKubeletTooFewCPUs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := hostfixture.Host{CPUs: 2, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 1, NUMANode: -1}}}
		r := newRig(t, host, nil, func(f *systemd.Fake) { f.AddService("kubelet.service") })
		r.start()
		if n := len(r.units.CallsTo("SetAllowedCPUs")); n != 0 {
			t.Errorf("pinned on a 2-CPU node")
		}
		if !strings.Contains(r.logs.String(), "pinning kubelet would not help") {
			t.Errorf("the journal must say why:\n%s", r.logs.String())
		}
	})
}

func compactions(r *rig, reason, result string) float64 {
	mfs, _ := r.metrics.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() != "nodekeeper_compactions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["reason"] == reason && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestCompactionWhenFragmented(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := hostfixture.Host{CPUs: 4, Buddyinfo: hostfixture.FragmentedBuddyinfo,
			NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}}
		r := newRig(t, host, nil, nil)
		r.start()
		r.until("a compaction", func() bool { return compactions(r, "fragmentation", "success") == 1 })
		b, _ := os.ReadFile(filepath.Join(r.paths.Sys, "devices", "system", "node", "node0", "compact"))
		if strings.TrimSpace(string(b)) != "1" {
			t.Errorf("node0/compact = %q, want 1 written", b)
		}
		r.until("the journal entry", func() bool { return strings.Contains(r.logs.String(), "message_id="+logging.MsgCompactionRan) })
		// The index stays high (a fixture does not defragment): no second compaction within minInterval.
		r.clk.Advance(15 * time.Minute)
		synctest.Wait() // everything the clock set off has run
		if n := compactions(r, "fragmentation", "success"); n != 1 {
			t.Errorf("%v compactions within minInterval", n)
		}
	})
}

func TestSoftirqSaturationTriggersACheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}}
		r := newRig(t, host, func(c *config.Config) { c.Symptoms.Window = 2 * time.Second }, nil)
		times := [][4]uint64{{100, 100, 800, 0}, {100, 100, 800, 0}, {100, 100, 800, 0}, {100, 100, 800, 0}}
		if err := hostfixture.WriteStat(r.paths, times); err != nil {
			t.Fatal(err)
		}
		r.start()
		checks := histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds")
		// CPU 2 now spends all its time in softirq.
		for step := 0; step < 4; step++ {
			times[2][3] += 300
			for i := range times {
				if i != 2 {
					times[i][2] += 300
				}
			}
			hostfixture.WriteStat(r.paths, times)
			r.clk.Advance(time.Second)
			synctest.Wait() // the tick read this sample
		}
		r.until("the saturation entry", func() bool { return strings.Contains(r.logs.String(), "message_id="+logging.MsgSoftirqSaturated) })
		if got := histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds"); got <= checks {
			t.Errorf("a saturation must run an IRQ check at once")
		}
		if !strings.Contains(r.logs.String(), "cpus=2") {
			t.Errorf("the entry names the CPU:\n%s", r.logs.String())
		}
	})
}

// A pause whose check lands while a repair (started by another trigger) is
// verifying takes that repair's outcome instead of being lost.
func TestPauseDuringRunningRepairGetsItsOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resumes := make(chan freeze.Resume, 2)
		r := newRig(t, skewedHost(), func(c *config.Config) { c.IRQ.SettleDelay = 0 },
			func(f *systemd.Fake) { f.AddService(irqbalance.Unit) })
		r.d.d.Resumes = resumes
		r.clk.Advance(10 * time.Minute)
		r.start() // the start check restarts irqbalance; the fixture stays skewed, so verification runs on
		r.until("the restart", func() bool { return len(r.units.CallsTo("Restart")) == 1 })
		resumes <- freeze.Resume{At: r.clk.Now(), Length: 3 * time.Second, Source: freeze.SourceClock}
		r.until("the pause", func() bool { return strings.Contains(r.logs.String(), "VM pause of 3.0s") })
		r.untilAdvancing("the verify timeout", true, func() bool {
			return r.remediations(irqbalance.ActionRestart, policy.VerifyTimeout) == 1
		})
		r.until("the pause's outcome", func() bool {
			return histogramCountLabel(t, r.metrics, "nodekeeper_pause_to_verified_seconds", "outcome", string(freeze.OutcomeFailed)) == 1
		})
	})
}

// With the symptom watcher's rates at hand, kubelet's choice uses them
// instead of reading /proc/softirqs again.
func TestKubeletUsesTheWatchersNetRx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, kubeletHost(), nil, nil)
		r.d.sym = fixedSymptoms{symptoms.Snapshot{Ready: true, CPUs: []symptoms.CPUSignal{{CPU: 0, NetRxPerSecond: 10}, {CPU: 3, NetRxPerSecond: 4000}}}}
		os.Remove(filepath.Join(r.paths.Proc, "softirqs")) // a read here would fail
		r.d.sampleNetRx()
		if got := r.d.kube.rates; len(got) != 4 || got[3] != 4000 || got[0] != 10 {
			t.Errorf("rates %v, want the watcher's", got)
		}
	})
}

// fixedSymptoms is a symptom source with a fixed snapshot.
type fixedSymptoms struct{ snap symptoms.Snapshot }

func (f fixedSymptoms) Snapshot() symptoms.Snapshot { return f.snap }
func (fixedSymptoms) SetKubeletPID(int)             {}

// A clean stop says so in the state file, so that check and status stop
// taking its last results for a running daemon's; a new start clears it.
func TestStopIsRecordedInTheStateFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, skewedHost(), nil, nil)
		path := filepath.Join(r.paths.Root, state.RelPath)
		r.start()
		r.until("a state file", func() bool { st, _ := state.Read(path); return st != nil })
		if st, _ := state.Read(path); !st.Stopped.IsZero() {
			t.Fatalf("a running daemon's state says it stopped at %v", st.Stopped)
		}
		r.stop()
		st, err := state.Read(path)
		if err != nil || st.Stopped.IsZero() || !st.Stopped.Equal(r.clk.Now()) {
			t.Fatalf("after a clean stop: %v, %v; want stopped at %v", st, err, r.clk.Now())
		}
		r.start()
		r.until("a new state file", func() bool { st, _ := state.Read(path); return st != nil && st.Stopped.IsZero() })
	})
}
