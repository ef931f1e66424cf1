// Package policy owns the decision whether a proposed repair may run now:
// dry-run, cool-down, a per-hour cap, exponential backoff after failures, and
// never two repairs of the same kind at once. It records nothing itself: the
// caller turns each Decision into a journal entry and a metric, so every
// "no" is visible.
package policy

import (
	"fmt"
	"sync"
	"time"
)

// Action names a kind of repair (label action of remediations_total). Each
// package that repairs declares its own: irq.ActionSpread,
// irqbalance.ActionRestart, kubelet.ActionPin, compaction.Action…
type Action string

// Result is what became of a proposed repair (label result).
type Result string

// Results of a repair that ran.
const (
	Success       Result = "success"
	Failure       Result = "failure"
	VerifyTimeout Result = "verify_timeout" // it ran, and the spread was not verified in time
)

// Results of a Decision that did not allow the repair, as the metrics
// contract spells them. Backoff after failures is a longer cool-down: it is
// counted as skipped_cooldown, with Reason "backoff" in the journal.
const (
	SkippedCooldown Result = "skipped_cooldown"
	SkippedCap      Result = "skipped_cap"
	SkippedDryRun   Result = "skipped_dryrun"
	SkippedBusy     Result = "skipped_busy" // a repair of this kind is still running; not a metric
)

// Results are every Result a metric may carry (all but SkippedBusy).
var Results = []Result{Success, Failure, VerifyTimeout, SkippedCooldown, SkippedCap, SkippedDryRun}

// Reason says why a Decision did not allow the repair (the journal's REASON
// field of a skipped repair): finer than its Result, which backoff shares with
// cooldown.
type Reason string

// Reasons of a Decision.
const (
	Cooldown Reason = "cooldown" // within the cool-down after the last repair
	Backoff  Reason = "backoff"  // waiting longer after failed repairs
	Cap      Reason = "cap"      // the hourly cap is reached
	DryRun   Reason = "dryrun"   // dry run: nothing is changed
	Busy     Reason = "busy"     // a repair of this kind is still running
)

// Limits are one kind of repair's settings.
type Limits struct {
	Cooldown    time.Duration // after a repair, no new one before this
	MaxPerHour  int           // 0: never repair
	BackoffBase time.Duration // first wait after a failure (doubles per failure)
	BackoffMax  time.Duration
}

// Decision is the answer for one proposed repair.
type Decision struct {
	Allowed bool
	Result  Result    // when not allowed: one of the Skipped* results
	Reason  Reason    // why it was not allowed
	Until   time.Time // when a skipped repair could run at the earliest
	Detail  string    // a person's words
}

// Gate is the state of one kind of repair. Safe for concurrent use.
type Gate struct {
	mu       sync.Mutex
	limits   Limits
	attempts []time.Time // starts within the last hour
	last     time.Time   // last start
	failures int         // consecutive failures
	busy     bool
}

// NewGate returns a Gate with the given limits.
func NewGate(l Limits) *Gate { return &Gate{limits: l} }

// SetLimits changes the limits (config reload); history is kept.
func (g *Gate) SetLimits(l Limits) {
	g.mu.Lock()
	g.limits = l
	g.mu.Unlock()
}

// Begin decides whether a repair may start at now and, if so, marks it
// running; the caller must call End. since is an extra cool-down reference
// outside nodekeeper's own history (e.g. when irqbalance last started, by
// anyone); zero for none. dryRun answers SkippedDryRun after every other
// rule passed, so a dry run shows what would really have happened.
func (g *Gate) Begin(now, since time.Time, dryRun bool) Decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy {
		return Decision{Result: SkippedBusy, Reason: Busy, Detail: "a repair of this kind is still running"}
	}
	hourAgo := now.Add(-time.Hour)
	kept := g.attempts[:0]
	for _, t := range g.attempts {
		if t.After(hourAgo) {
			kept = append(kept, t)
		}
	}
	g.attempts = kept
	ref := g.last
	if since.After(ref) {
		ref = since
	}
	if !ref.IsZero() && now.Sub(ref) < g.limits.Cooldown {
		return Decision{Result: SkippedCooldown, Reason: Cooldown, Until: ref.Add(g.limits.Cooldown),
			Detail: fmt.Sprintf("last repair or restart %s ago, cool-down %s", now.Sub(ref).Round(time.Second), g.limits.Cooldown)}
	}
	if g.failures > 0 && !g.last.IsZero() {
		wait := g.backoff()
		if now.Sub(g.last) < wait {
			return Decision{Result: SkippedCooldown, Reason: Backoff, Until: g.last.Add(wait),
				Detail: fmt.Sprintf("%d failed repair(s) in a row: waiting %s before the next", g.failures, wait)}
		}
	}
	if len(g.attempts) >= g.limits.MaxPerHour {
		until := now
		if len(g.attempts) > 0 {
			until = g.attempts[0].Add(time.Hour)
		}
		return Decision{Result: SkippedCap, Reason: Cap, Until: until,
			Detail: fmt.Sprintf("%d repairs in the last hour (maxRepairsPerHour %d)", len(g.attempts), g.limits.MaxPerHour)}
	}
	if dryRun {
		return Decision{Result: SkippedDryRun, Reason: DryRun, Detail: "dry run: nothing is changed"}
	}
	g.busy = true
	g.last = now
	g.attempts = append(g.attempts, now)
	return Decision{Allowed: true}
}

// End records the outcome of a repair that Begin allowed.
func (g *Gate) End(success bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = false
	if success {
		g.failures = 0
	} else {
		g.failures++
	}
}

// Failures is the number of consecutive failed repairs.
func (g *Gate) Failures() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failures
}

func (g *Gate) backoff() time.Duration {
	d := g.limits.BackoffBase
	for i := 1; i < g.failures && d < g.limits.BackoffMax; i++ {
		d *= 2
	}
	return min(d, g.limits.BackoffMax)
}
