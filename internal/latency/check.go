package latency

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// Name is the check's name (`nodekeeper check latency`, metrics label check).
const Name check.Name = "latency"

// Sources of a report.
const (
	SourceEBPF        = "ebpf"
	SourceUnavailable = "unavailable"
)

// Config is the latency measurement's configuration.
type Config struct {
	Enabled    string        // "auto" (where the programs attach), "true", "false"
	Window     time.Duration // how long one measurement lasts
	P99Problem time.Duration // a CPU whose p99 reaches this is a problem
}

// DefaultConfig is the contract's defaults.
func DefaultConfig() Config {
	return Config{Enabled: "auto", Window: 10 * time.Second, P99Problem: 10 * time.Millisecond}
}

// Report is `check latency`'s JSON object.
type Report struct {
	check.Verdict
	Source        string  `json:"source"`
	Reason        string  `json:"reason,omitempty"` // why the source is unavailable
	WindowSeconds float64 `json:"window_seconds"`
	P99ProblemUs  float64 `json:"p99_problem_us"`
	CPUs          []Stat  `json:"cpus"`
}

// Slow returns the CPUs whose p99 is at or above the threshold.
func (r Report) Slow(p99Problem time.Duration) cpuset.Set {
	var cpus []int
	for _, c := range r.CPUs {
		if c.P99() >= p99Problem {
			cpus = append(cpus, c.CPU)
		}
	}
	return cpuset.New(cpus...)
}

// Unavailable is the report where the programs cannot run: unknown, never a
// problem.
func Unavailable(why error, cfg Config) Report {
	return Report{Verdict: check.Verdict{Check: Name, Status: check.Unknown,
		Message: check.Short("NET_RX latency unavailable: " + why.Error())},
		Source: SourceUnavailable, Reason: why.Error(), WindowSeconds: cfg.Window.Seconds(),
		P99ProblemUs: us(float64(cfg.P99Problem)), CPUs: []Stat{}}
}

// Judge turns one window's statistics into the verdict.
func Judge(stats []Stat, window time.Duration, cfg Config) Report {
	r := Report{Verdict: check.Verdict{Check: Name, Status: check.OK}, Source: SourceEBPF,
		WindowSeconds: window.Seconds(), P99ProblemUs: us(float64(cfg.P99Problem)), CPUs: stats}
	if r.CPUs == nil {
		r.CPUs = []Stat{}
	}
	if len(stats) == 0 {
		r.Message = fmt.Sprintf("no NET_RX softirqs in %s", window)
		return r
	}
	worst := slices.MaxFunc(stats, func(a, b Stat) int { return cmpFloat(a.P99us, b.P99us) })
	slow := r.Slow(cfg.P99Problem)
	if slow.IsEmpty() {
		r.Message = check.Short(fmt.Sprintf("NET_RX softirq wait p99 %s at most (CPU %d), under %s",
			fmtUs(worst.P99us), worst.CPU, cfg.P99Problem))
		return r
	}
	r.Status = check.Problem
	r.Message = check.Short(fmt.Sprintf("NET_RX softirqs wait p99 %s on CPU %d (%d CPUs ≥ %s)",
		fmtUs(worst.P99us), worst.CPU, slow.Len(), cfg.P99Problem))
	return r
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func fmtUs(v float64) string {
	return time.Duration(v * float64(time.Microsecond)).Round(time.Microsecond / 10).String()
}

// Reader gives every CPU's counters (the Probe; a fake in tests).
type Reader interface {
	Read() ([]CPUCounts, error)
}

// Meter turns successive reads into per-window statistics.
type Meter struct {
	r    Reader
	prev []CPUCounts
}

// NewMeter starts measuring with a first read.
func NewMeter(r Reader) (*Meter, error) {
	c, err := r.Read()
	if err != nil {
		return nil, err
	}
	return &Meter{r: r, prev: c}, nil
}

// Next reads again and returns the statistics since the previous read.
func (m *Meter) Next() ([]Stat, error) {
	c, err := m.r.Read()
	if err != nil {
		return nil, err
	}
	s := Stats(m.prev, c)
	m.prev = c
	return s, nil
}

// Measure samples for one window: a read, a wait, a read.
func Measure(ctx context.Context, r Reader, window time.Duration) ([]Stat, error) {
	m, err := NewMeter(r)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	return m.Next()
}
