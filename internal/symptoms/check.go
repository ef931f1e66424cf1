package symptoms

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// CheckName is the softirq check's name.
const CheckName check.Name = "softirq"

// Report is the softirq check's answer.
type Report struct {
	check.Verdict
	SaturatedCPUs cpuset.Set `json:"saturated_cpus"`
}

func newReport(st check.Status, msg string, sat cpuset.Set) Report {
	return Report{Verdict: check.Verdict{Check: CheckName, Status: st, Message: check.Short(msg)}, SaturatedCPUs: sat}
}

// Report is the softirq check: a problem while a saturation is active, with
// the CPUs named; unknown until the snapshot has rates.
func (s Snapshot) Report() Report {
	if !s.Ready {
		return newReport(check.Unknown, "softirq: no rates yet (one sample)", cpuset.Set{})
	}
	if s.Active() {
		var share, squeeze, drops float64
		for _, c := range s.CPUs {
			if !c.Saturated() {
				continue
			}
			share = max(share, c.SoftirqShare)
			squeeze = max(squeeze, c.SqueezePerSecond)
			drops = max(drops, c.DropsPerSecond)
		}
		var why []string
		why = append(why, fmt.Sprintf("softirq %s", pct(share)))
		if squeeze > 0 {
			why = append(why, fmt.Sprintf("squeeze %s/s", rate(squeeze)))
		}
		if drops > 0 {
			why = append(why, fmt.Sprintf("drops %s/s", rate(drops)))
		}
		word := "CPUs"
		if s.Saturated.Len() == 1 {
			word = "CPU"
		}
		msg := fmt.Sprintf("softirq saturation on %s %s (%s)", word, s.Saturated.List(), strings.Join(why, ", "))
		if len(msg) > check.MaxMessage {
			msg = fmt.Sprintf("softirq saturation on %d CPUs (%s)", s.Saturated.Len(), strings.Join(why, ", "))
		}
		return newReport(check.Problem, msg, s.Saturated)
	}
	busiest := -1
	for i, c := range s.CPUs {
		if busiest < 0 || c.SoftirqShare > s.CPUs[busiest].SoftirqShare {
			busiest = i
		}
	}
	if busiest < 0 {
		return newReport(check.OK, "no softirq saturation", cpuset.Set{})
	}
	c := s.CPUs[busiest]
	return newReport(check.OK, fmt.Sprintf("no softirq saturation (busiest CPU %d: %s softirq)", c.CPU, pct(c.SoftirqShare)), cpuset.Set{})
}

// pct is x as a whole percentage, rounded down (so 99.9 % never reads 100 %).
func pct(x float64) string { return fmt.Sprintf("%.0f%%", math.Floor(x*100+1e-9)) }

func rate(x float64) string {
	if x < 10 {
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.0f", x)
}

// SampleOptions are Sample's optional inputs.
type SampleOptions struct {
	Options
	Clock clock.Clock // default clock.Real
}

// Sample is the one-shot form for `nodekeeper check` and `status` without a
// fresh state file: two reads window apart, the second one's Snapshot
// (window replaces cfg.Window).
func Sample(ctx context.Context, fsys *hostfs.FS, cfg Config, window time.Duration, opt SampleOptions) (Snapshot, error) {
	if window <= 0 {
		return Snapshot{}, fmt.Errorf("sample window %v: must be positive", window)
	}
	cfg.Window = window
	w, err := NewWatcher(fsys, cfg, opt.Options)
	if err != nil {
		return Snapshot{}, err
	}
	clk := opt.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	if _, err := w.Tick(clk.Now()); err != nil {
		return Snapshot{}, err
	}
	if err := clock.Sleep(ctx, clk, window); err != nil {
		return Snapshot{}, err
	}
	return w.Tick(clk.Now())
}
