// Package pause owns detecting, from inside the guest, that the VM was paused
// (an Azure Freeze, a live migration, host servicing) or that the daemon was
// starved of CPU for as long: a ticker compares the monotonic time elapsed
// between ticks with the tick it asked for (a gap), and watches CLOCK_REALTIME −
// CLOCK_MONOTONIC for steps (the host re-syncing wall time after a pause that
// the monotonic clock did not see). Which of the two moves depends on the
// hypervisor's clocksource, so both are watched.
//
// The detector reads time through two injected interfaces — clock.Clock for its
// ticker and Clocks for the two kernel clocks — so tests inject gaps and steps
// without sleeping.
package pause

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

// Kind says which signal revealed a pause.
type Kind string

const (
	// KindGap: the monotonic time between two ticks exceeded the tick.
	KindGap Kind = "gap"
	// KindStep: CLOCK_REALTIME jumped forward relative to CLOCK_MONOTONIC.
	KindStep Kind = "step"
)

// Pause is one detected pause.
type Pause struct {
	// At is the wall-clock time (CLOCK_REALTIME) of the tick that saw the
	// resume.
	At time.Time
	// Length estimates how long the VM (or the daemon) did not run: the
	// monotonic gap beyond the tick, plus any forward realtime step seen at the
	// same tick. It is accurate to about one tick.
	Length time.Duration
	// Kind is KindGap when the monotonic gap alone reached the threshold,
	// otherwise KindStep.
	Kind Kind
}

// Sample is one reading of both kernel clocks, taken back to back.
type Sample struct {
	// Mono is CLOCK_MONOTONIC, from an arbitrary origin.
	Mono time.Duration
	// Real is CLOCK_REALTIME.
	Real time.Time
}

// Clocks reads CLOCK_MONOTONIC and CLOCK_REALTIME.
type Clocks interface {
	Read() (Sample, error)
}

// Defaults for Config.
const (
	DefaultTick         = time.Second
	DefaultGapThreshold = 2 * time.Second
)

// Config configures a Detector. Zero values take the defaults.
type Config struct {
	Tick         time.Duration // how often the clocks are compared
	GapThreshold time.Duration // a gap or step of at least this long is a pause
	Clock        clock.Clock   // drives the ticker; default clock.Real
	Clocks       Clocks        // the clocks compared; default SystemClocks
	Logger       *slog.Logger  // default: discard
}

// Detector turns clock readings into pauses. Observe is not safe for
// concurrent use; Run calls it from one goroutine.
type Detector struct {
	tick      time.Duration
	threshold time.Duration
	clk       clock.Clock
	clocks    Clocks
	log       *slog.Logger

	prev     Sample
	havePrev bool
	readErr  bool // a read error has been logged and not yet recovered from
}

// New returns a Detector for cfg.
func New(cfg Config) (*Detector, error) {
	if cfg.Tick == 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.GapThreshold == 0 {
		cfg.GapThreshold = DefaultGapThreshold
	}
	if cfg.Tick < 0 || cfg.GapThreshold < 0 {
		return nil, errors.New("pause: negative tick or gap threshold")
	}
	if cfg.GapThreshold <= cfg.Tick {
		return nil, fmt.Errorf("pause: gap threshold %s must be longer than the tick %s", cfg.GapThreshold, cfg.Tick)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Clocks == nil {
		cfg.Clocks = SystemClocks{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Detector{
		tick:      cfg.Tick,
		threshold: cfg.GapThreshold,
		clk:       cfg.Clock,
		clocks:    cfg.Clocks,
		log:       cfg.Logger,
	}, nil
}

// Run ticks until ctx ends, calling report (from Run's goroutine) for every
// pause. report should return quickly: while it runs, no tick is observed.
func (d *Detector) Run(ctx context.Context, report func(Pause)) {
	t := d.clk.NewTicker(d.tick)
	defer t.Stop()
	d.Reset()
	d.sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if p, ok := d.sample(); ok && report != nil {
				report(p)
			}
		}
	}
}

// Reset forgets the previous sample, so the next one starts a new baseline.
func (d *Detector) Reset() { d.havePrev = false }

func (d *Detector) sample() (Pause, bool) {
	s, err := d.clocks.Read()
	if err != nil {
		if !d.readErr {
			d.log.Warn("cannot read the clocks; pause detection is off until they can be read", "err", err)
			d.readErr = true
		}
		d.Reset()
		return Pause{}, false
	}
	if d.readErr {
		d.log.Info("clocks readable again; pause detection resumed")
		d.readErr = false
	}
	return d.Observe(s)
}

// Observe takes the next sample (one per tick) and reports whether the time
// since the previous sample holds a pause. The first sample only sets the
// baseline.
func (d *Detector) Observe(s Sample) (Pause, bool) {
	prev, had := d.prev, d.havePrev
	d.prev, d.havePrev = s, true
	if !had {
		return Pause{}, false
	}
	elapsed := s.Mono - prev.Mono
	if elapsed < 0 {
		// CLOCK_MONOTONIC never goes back; a Clocks that does is not trusted.
		d.log.Debug("monotonic clock went backwards; new baseline", "by", -elapsed)
		return Pause{}, false
	}
	gap := elapsed - d.tick
	// Realtime − monotonic, as an instant: constant unless wall time is stepped
	// (or slewed, which moves it by far less than a threshold per tick).
	step := s.Real.Add(-s.Mono).Sub(prev.Real.Add(-prev.Mono))
	if step <= -d.threshold {
		d.log.Info("wall clock stepped backwards; not a pause", "by", -step)
	}
	if gap < d.threshold && step < d.threshold {
		return Pause{}, false
	}
	p := Pause{At: s.Real, Kind: KindStep}
	if gap >= d.threshold {
		p.Kind = KindGap
	}
	p.Length = max(gap, 0) + max(step, 0)
	return p, true
}
