package daemon

import (
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

func healthyHost() hostfixture.Host {
	return hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}}
}

// reloadAndWait sends SIGHUP's stand-in and waits for the n-th reload line.
func (r *rig) reloadAndWait(n int) {
	r.t.Helper()
	r.reload <- struct{}{}
	r.until("reload", func() bool { return strings.Count(r.logs.String(), "configuration reloaded") >= n })
}

// TestReloadsDoNotStopPeriodicChecks: a config-management agent that sends
// SIGHUP more often than irq.checkInterval must not stop the periodic check
// (every reload used to reset the timers).
func TestReloadsDoNotStopPeriodicChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		os.WriteFile(r.cfgFile, []byte("metrics: {listen: \"\"}\nirq:\n  verifyTimeout: 5s\n"), 0o644)
		r.start()
		checks := func() float64 { return histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds") }
		before := checks()
		for i := 1; i <= 4; i++ { // 4 × 40 s: the 60 s interval passes twice
			r.clk.Advance(40 * time.Second)
			r.reloadAndWait(i)
		}
		r.until("two periodic checks", func() bool { return checks() >= before+2 })
	})
}

// TestReloadNamesWhatItCannotApply: settings read once at start are kept
// and named; the rest of the reload applies.
func TestReloadNamesWhatItCannotApply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		os.WriteFile(r.cfgFile, []byte(`metrics: {listen: ""}
kubelet: {unit: kubelet-other.service}
imds: {enabled: "true"}
pauseDetector: {gapThreshold: 5s}
irq: {minSpreadRatio: 0.5}
`), 0o644)
		r.start()
		r.reloadAndWait(1)
		r.stop() // then its configuration can be read
		logs := r.logs.String()
		if !strings.Contains(logs, "configuration reloaded except imds, pauseDetector, kubelet.unit") {
			t.Fatalf("the kept keys are not named:\n%s", logs)
		}
		if r.d.cfg.Kubelet.Unit != config.Default().Kubelet.Unit || r.d.cfg.IMDS != config.Default().IMDS ||
			r.d.cfg.PauseDetector != config.Default().PauseDetector {
			t.Errorf("restart-only settings changed by a reload: %+v", r.d.cfg)
		}
		if r.d.cfg.IRQ.MinSpreadRatio != 0.5 {
			t.Errorf("the rest of the reload was not applied: %v", r.d.cfg.IRQ.MinSpreadRatio)
		}
	})
}

// TestReloadThatBlocksDoesNotWedgeTheLoop: a configuration read that never
// returns (a named pipe before the loader refused them) is abandoned after
// the reload timeout; the loop goes on and stops on request.
func TestReloadThatBlocksDoesNotWedgeTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		block := make(chan struct{})
		defer close(block)
		r.d.d.LoadConfig = func() (config.Config, error) { <-block; return config.Config{}, os.ErrDeadlineExceeded }
		r.start()
		waiters := r.clk.Waiters()
		r.reload <- struct{}{}
		r.until("the reload deadline", func() bool { return r.clk.Waiters() > waiters })
		r.reload <- struct{}{} // a second SIGHUP while the first is read is folded into it
		r.clk.Advance(r.d.d.ReloadTimeout)
		r.until("the timeout", func() bool {
			return strings.Contains(r.logs.String(), "configuration reload did not finish within 10s") &&
				strings.Contains(r.logs.String(), "message_id="+logging.MsgConfigReloadFailed)
		})
		checks := func() float64 { return histogramCount(t, r.metrics, "nodekeeper_check_duration_seconds") }
		before := checks()
		r.clk.Advance(60 * time.Second)
		r.until("the periodic check after the abandoned reload", func() bool { return checks() > before })
		r.stop()
	})
}
