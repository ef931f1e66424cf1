// Package watch owns the seam between the daemon and its periodic watchers:
// what a watcher is (a name, an interval, a tick, a reconfigure), what one
// tick reports, and what the daemon lends a watcher (Env). A new capability
// is a package that implements Watcher, its configuration keys and its
// catalog entry, plus one line in the daemon's registry; the daemon
// schedules it, records its verdict in metrics and the state file, logs its
// errors once per reason, and applies reloads to it.
//
// The IRQ check, the VM pause correlation and the kubelet pin are not
// watchers: their ordering is the product (a pause triggers a check, a check
// a repair, a repair a re-pin) and stays explicit in the daemon.
package watch

import (
	"context"
	"log/slog"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/state"
)

// Watcher is one periodic concern of the daemon. The daemon calls its
// methods from its main loop only, one at a time.
type Watcher interface {
	// Name names the watcher in logs and in nodekeeper_errors_total's
	// component label (e.g. "symptoms"): a short lower-case identifier.
	Name() string
	// Check is the check it judges (its reports' Verdict.Check): its key in
	// the state file and its check label in metrics.
	Check() check.Name
	// Interval is the time between ticks. The daemon reads it at start and
	// after every Reconfigure, and restarts the period only when it changed.
	Interval() time.Duration
	// Tick does one round of the watcher's work. It must be cheap and must
	// not block past ctx: slow work belongs in a goroutine that hands its
	// result back through Env.Post.
	Tick(ctx context.Context, now time.Time) Report
	// Reconfigure applies a reloaded configuration. An error keeps the
	// running settings; the daemon says so once and counts it.
	Reconfigure(cfg config.Config) error
}

// Report is what one tick (or one posted result) tells the daemon.
type Report struct {
	// Verdict is the check's verdict. An empty Status means there is
	// nothing to record this time (e.g. a first sample without rates).
	check.Verdict
	// Detail is the check's JSON report for the state file, as `nodekeeper
	// check NAME` and `status` read it (it embeds the verdict).
	Detail any
	// Err says the tick could not do its work (an unreadable file): the
	// daemon logs it once per reason and counts it; the verdict is ignored.
	Err error
	// Every is how long a recorded result stays current: the daemon
	// rewrites the state file when the verdict changed, when Changed is set,
	// or after Every (0: Interval). `nodekeeper check` trusts a result for
	// twice this.
	Every time.Duration
	// Changed forces a state file write although the status did not change
	// (the detail did, e.g. a compaction finished).
	Changed bool
	// Trigger, when set, asks for an IRQ check now, with this reason (the
	// policy's cool-downs still apply).
	Trigger string
	// Actions are remediations the watcher performed, for the state file's
	// history.
	Actions []state.Action
}

// Env is what the daemon lends a watcher when it builds it.
type Env struct {
	FS      *hostfs.FS
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// DryRun is the command line's --dry-run; a watcher ORs it with the
	// configuration's dryRun.
	DryRun bool
	// Post hands the result of work done off the main loop back to it:
	// the daemon runs f in its loop and records the Report f returns like a
	// tick's. It gives up, returning false, when ctx ends.
	Post func(ctx context.Context, f func(now time.Time) Report) bool
}
