package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// scripted is a watcher whose ticks answer from a script, one entry per tick
// (the last repeats). Its interval is compaction.checkInterval, so a reload
// can change it.
type scripted struct {
	env      watch.Env
	mu       sync.Mutex
	script   []watch.Report
	ticks    int
	interval time.Duration
	posted   watch.Report // posted from a goroutine at the first tick
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) Check() check.Name { return "scripted_check" }

func (s *scripted) Interval() time.Duration { return s.interval }

func (s *scripted) Reconfigure(cfg config.Config) error {
	if cfg.Compaction.CheckInterval == 7*time.Minute {
		return errors.New("seven minutes is refused")
	}
	s.interval = cfg.Compaction.CheckInterval
	return nil
}

func (s *scripted) Tick(ctx context.Context, _ time.Time) watch.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks++
	if s.ticks == 1 && s.posted.Status != "" {
		p := s.posted
		go s.env.Post(ctx, func(time.Time) watch.Report { return p })
	}
	return s.script[min(s.ticks, len(s.script))-1]
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ticks
}

func verdict(st check.Status, msg string) check.Verdict {
	return check.Verdict{Check: "scripted_check", Status: st, Message: msg}
}

func (r *rig) addScripted(s *scripted) {
	r.d.extra = append(r.d.extra, func(env watch.Env) watch.Watcher { s.env = env; return s })
}

func (r *rig) storedCheck(name check.Name) (state.Check, bool) {
	st, err := state.Read(filepath.Join(r.paths.Root, state.RelPath))
	if err != nil || st == nil {
		return state.Check{}, false
	}
	c, ok := st.Checks[name]
	return c, ok
}

// A watcher on the registry is ticked at its interval; the error it reports
// is logged once per reason, counted every time, and its recovery said; its
// verdict reaches the check status metric and the state file.
func TestRegistryTicksRecordsAndSaysErrorsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		unreadable := errors.New("cannot read /proc/scripted: permission denied")
		s := &scripted{interval: time.Minute, script: []watch.Report{
			{Err: unreadable}, {Err: unreadable}, {Err: unreadable},
			{Verdict: verdict(check.Problem, "scripted problem"), Detail: map[string]int{"n": 1}},
		}}
		r.addScripted(s)
		r.start() // the first tick
		for i := 2; i <= 4; i++ {
			r.clk.Advance(time.Minute)
			r.until("tick", func() bool { return s.count() == i })
		}
		r.until("the verdict in the state file", func() bool {
			c, ok := r.storedCheck("scripted_check")
			return ok && c.Status == "problem" && strings.Contains(string(c.Report), `"n":1`) &&
				time.Duration(c.Interval) == time.Minute
		})
		logs := r.logs.String()
		if n := strings.Count(logs, "permission denied"); n != 2 { // the error once, and once in its recovery
			t.Errorf("the error appears %d times in the log, want 2 (said once, then cleared):\n%s", n, logs)
		}
		if !strings.Contains(logs, "scripted works again") {
			t.Errorf("the recovery is not said:\n%s", logs)
		}
		if got := counterLabel(t, r.metrics, "nodekeeper_errors_total", "component", "scripted"); got != 3 {
			t.Errorf("errors_total{component=scripted} = %v, want 3", got)
		}
		if got := gaugeLabel(t, r.metrics, "nodekeeper_check_status", "check", "scripted_check", "status", "problem"); got != 1 {
			t.Errorf("check_status{check=scripted_check,status=problem} = %v, want 1", got)
		}
	})
}

// A report's trigger runs the IRQ check at once; work posted from a
// goroutine is recorded in the loop (its actions reach the state file).
func TestRegistryTriggerAndPost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		s := &scripted{interval: 30 * time.Second, script: []watch.Report{ // half irq.checkInterval
			{Verdict: verdict(check.OK, "fine")},
			{Verdict: verdict(check.Problem, "saturated"), Trigger: "scripted symptom"},
		}, posted: watch.Report{Verdict: verdict(check.OK, "fine, done"), Changed: true,
			Actions: []state.Action{{Action: "scripted_action", Result: "success", Detail: "did it"}}}}
		r.addScripted(s)
		r.start()
		r.until("the posted report and its action", func() bool {
			st, _ := state.Read(filepath.Join(r.paths.Root, state.RelPath))
			if st == nil || st.Checks["scripted_check"].Message != "fine, done" { // recorded although its status did not change
				return false
			}
			for _, a := range st.Actions {
				if a.Action == "scripted_action" && a.Detail == "did it" {
					return true
				}
			}
			return false
		})
		checks := histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds")
		r.clk.Advance(30 * time.Second)
		r.until("the triggered IRQ check", func() bool {
			return histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds") == checks+1
		})
	})
}

// Reloads keep a watcher's period unless its interval changed; a refused
// reconfigure keeps its settings and is said once.
func TestRegistryReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		s := &scripted{interval: time.Minute, script: []watch.Report{{Verdict: verdict(check.OK, "fine")}}}
		r.addScripted(s)
		os.WriteFile(r.cfgFile, []byte("metrics: {listen: \"\"}\nirq: {verifyTimeout: 5s}\ncompaction: {checkInterval: 1m}\n"), 0o644)
		r.start()
		for i := 1; i <= 4; i++ { // 4 × 40 s: the 60 s interval passes twice
			r.clk.Advance(40 * time.Second)
			r.reloadAndWait(i)
		}
		r.until("two periodic ticks", func() bool { return s.count() >= 3 })

		os.WriteFile(r.cfgFile, []byte("metrics: {listen: \"\"}\nirq: {verifyTimeout: 5s}\ncompaction: {checkInterval: 7m}\n"), 0o644)
		r.reloadAndWait(5)
		r.reloadAndWait(6)
		if n := strings.Count(r.logs.String(), "scripted keeps its settings: seven minutes is refused"); n != 1 {
			t.Errorf("the refused reconfigure is said %d times, want once:\n%s", n, r.logs.String())
		}
		os.WriteFile(r.cfgFile, []byte("metrics: {listen: \"\"}\nirq: {verifyTimeout: 5s}\ncompaction: {checkInterval: 10m}\n"), 0o644)
		r.reloadAndWait(7)
		before := s.count()
		r.clk.Advance(5 * time.Minute)
		r.clk.Advance(4 * time.Minute)
		synctest.Wait() // everything the clock set off has run
		if s.count() != before {
			t.Errorf("ticked before the new 10m interval passed")
		}
		r.clk.Advance(time.Minute)
		r.until("a tick at the new interval", func() bool { return s.count() == before+1 })
	})
}

func counterLabel(t *testing.T, m *metrics.Metrics, name, label, value string) float64 {
	t.Helper()
	return metricValue(t, m, name, map[string]string{label: value}, true)
}

func gaugeLabel(t *testing.T, m *metrics.Metrics, name, l1, v1, l2, v2 string) float64 {
	t.Helper()
	return metricValue(t, m, name, map[string]string{l1: v1, l2: v2}, false)
}

func metricValue(t *testing.T, m *metrics.Metrics, name string, want map[string]string, counter bool) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, x := range mf.GetMetric() {
			got := map[string]string{}
			for _, p := range x.GetLabel() {
				got[p.GetName()] = p.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			if counter {
				return x.GetCounter().GetValue()
			}
			return x.GetGauge().GetValue()
		}
	}
	return 0
}

// A notification socket that refuses messages (systemd would time the start
// out or kill the daemon for a missed watchdog) is said once and counted at
// every refusal.
func TestNotifyErrorsSaidOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		r.notify.wd = 20 * time.Second
		r.notify.err = errors.New("sendmsg: connection refused")
		r.start()
		for range 5 {
			r.clk.Advance(10 * time.Second) // a watchdog ping each
			synctest.Wait()
		}
		r.until("the pings", func() bool { _, pings, _ := r.notify.get(); return pings >= 5 })
		if n := strings.Count(r.logs.String(), "cannot notify systemd: sendmsg: connection refused"); n != 1 {
			t.Errorf("said %d times, want once:\n%s", n, r.logs.String())
		}
		if got := counterLabel(t, r.metrics, "nodekeeper_errors_total", "component", "notify"); got < 5 {
			t.Errorf("errors_total{component=notify} = %v, want one per refusal (>= 5)", got)
		}
	})
}

// snat.enabled: auto leaves the SNAT scan out where no live conntrack table
// exists (fixture roots); true runs it there and records why it cannot read.
func TestSNATWatchRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		r.start()
		r.stop()
		if _, ok := r.storedCheck(snat.CheckName); ok {
			t.Error("snat.enabled auto scanned fixture roots")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), func(c *config.Config) { c.SNAT.Enabled = config.SNATTrue }, nil)
		r.start()
		r.until("the snat verdict", func() bool {
			c, ok := r.storedCheck(snat.CheckName)
			return ok && c.Status == "unknown" && strings.Contains(c.Message, "no conntrack table")
		})
		if n := strings.Count(r.logs.String(), "cannot read the conntrack table"); n != 1 {
			t.Errorf("said %d times, want once:\n%s", n, r.logs.String())
		}
	})
}

// dns.enabled (off by default) registers the DNS probe; its verdict reaches
// the state file through a posted result.
func TestDNSWatchRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		r.start()
		r.stop()
		if _, ok := r.storedCheck(dnsprobe.CheckName); ok {
			t.Error("the DNS probe ran with dns.enabled false")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), func(c *config.Config) {
			// Nothing listens there: the kernel answers port unreachable at once.
			c.DNS.Enabled, c.DNS.Servers = true, []string{"127.0.0.211"}
		}, nil)
		r.start()
		r.until("the dns verdict", func() bool {
			c, ok := r.storedCheck(dnsprobe.CheckName)
			return ok && c.Status == "problem" && strings.Contains(c.Message, "refused")
		})
		if n := strings.Count(r.logs.String(), logging.MsgDNSProbeFailing); n != 1 {
			t.Errorf("DNS probe failing said %d times, want once:\n%s", n, r.logs.String())
		}
	})
}
