package compaction

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/policy"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Watch is compaction as the daemon runs it (a watch.Watcher): every
// checkInterval it reads the free lists, decides per node, starts the
// compactions it decided off the main loop, and records each result when it
// comes back.
type Watch struct {
	env     watch.Env
	m       *Manager
	om      *Metrics // compactions_total, compaction_duration_seconds
	cfg     config.Config
	running bool            // a batch started by Tick has not ended (main loop only)
	said    map[string]bool // skips already logged, by node/reason/skip
}

var _ watch.Watcher = (*Watch)(nil)

// NewWatch builds the watch over env's host; saturated reports an active
// softirq saturation (nil: never), which defers compactions.
func NewWatch(env watch.Env, cfg config.Config, saturated func() bool) (*Watch, error) {
	m, err := NewManager(env.FS, ConfigFrom(cfg, env.DryRun || cfg.DryRun), Options{
		Clock: env.Clock, Logger: env.Log, Saturated: saturated})
	if err != nil {
		return nil, err
	}
	om, err := NewMetrics(env.Metrics.Registry())
	if err != nil {
		return nil, err
	}
	env.Metrics.DeclareAction(Action, policy.Success, policy.Failure)
	return &Watch{env: env, m: m, om: om, cfg: cfg, said: map[string]bool{}}, nil
}

// Check is the check it judges.
func (*Watch) Check() check.Name { return CheckName }

// Name is the watcher's name.
func (*Watch) Name() string { return "compaction" }

// Interval is compaction.checkInterval.
func (w *Watch) Interval() time.Duration { return w.cfg.Compaction.CheckInterval }

// Reconfigure applies the compaction.* keys and dryRun.
func (w *Watch) Reconfigure(cfg config.Config) error {
	if err := w.m.SetConfig(ConfigFrom(cfg, w.env.DryRun || cfg.DryRun)); err != nil {
		return err
	}
	w.cfg = cfg
	return nil
}

// Tick reads the free lists, decides, and starts what was decided.
func (w *Watch) Tick(ctx context.Context, now time.Time) watch.Report {
	nodes, err := w.m.Read()
	if err != nil {
		return watch.Report{Err: fmt.Errorf("cannot read memory fragmentation: %w", err)}
	}
	var idx []metrics.UnusableIndex
	for _, n := range nodes {
		for _, z := range n.Zones {
			idx = append(idx, metrics.UnusableIndex{Node: n.Node, Zone: z.Zone, Index: z.Unusable})
		}
	}
	w.env.Metrics.SetMemoryUnusableIndexes(idx)
	decisions := w.m.Decide(now, nodes, w.m.opt.Saturated != nil && w.m.opt.Saturated())
	for _, dec := range decisions {
		if dec.Skip == SkipNone || dec.Skip == SkipBusy {
			continue
		}
		if dec.Skip == SkipDryRun {
			w.env.Metrics.IncRemediation(Action, policy.SkippedDryRun)
		}
		key := fmt.Sprintf("%d/%s/%s", dec.Node, dec.Reason, dec.Skip)
		if !w.said[key] {
			w.said[key] = true
			w.env.Log.Info(fmt.Sprintf("not compacting node %d (%s, index %.2f): %s", dec.Node, dec.Reason, dec.Unusable, dec.Skip),
				logging.Msg(logging.MsgRepairSkipped), "action", string(Action), "node", dec.Node, "reason", string(dec.Skip))
		}
	}
	if !w.running {
		if ch, started := w.m.Start(ctx, decisions); started {
			w.running = true
			go w.follow(ctx, ch)
		}
	}
	return w.report()
}

// follow hands every result of a batch back to the main loop, then the
// batch's end.
func (w *Watch) follow(ctx context.Context, ch <-chan Result) {
	for r := range ch {
		if !w.env.Post(ctx, func(time.Time) watch.Report { return w.finished(r) }) {
			break
		}
	}
	for range ch { // the daemon stops: let the batch end on its own
	}
	w.env.Post(ctx, func(time.Time) watch.Report { w.running = false; return watch.Report{} })
}

// finished logs and measures one compaction's result.
func (w *Watch) finished(r Result) watch.Report {
	result := policy.Success
	switch {
	case errors.Is(r.Err, ErrDeferred):
		w.env.Log.Info(fmt.Sprintf("compaction of node %d deferred: %v", r.Node, r.Err), "node", r.Node)
		return watch.Report{}
	case r.Err != nil:
		result = policy.Failure
	}
	w.om.Observe(r.Node, r.Reason, result, r.Duration)
	attrs := []any{logging.Msg(logging.MsgCompactionRan), "node", r.Node, "reason", string(r.Reason), "result", string(result),
		"seconds", r.Duration.Seconds(), "index_before", r.IndexBefore, "index_after", r.IndexAfter}
	for k, v := range r.VMStatDelta {
		attrs = append(attrs, k, v)
	}
	msg := fmt.Sprintf("compacted node %d (%s) in %.0f ms: unusable index %.2f → %.2f",
		r.Node, r.Reason, float64(r.Duration)/float64(time.Millisecond), r.IndexBefore, r.IndexAfter)
	if r.Err != nil {
		w.env.Log.Error("compaction failed: "+r.Err.Error(), attrs...)
	} else {
		w.env.Log.Info(msg, attrs...)
	}
	rep := w.report()
	rep.Changed = true
	rep.Actions = []state.Action{{Action: string(Action), Result: string(result), Detail: msg, Seconds: r.Duration.Seconds()}}
	return rep
}

// report is the check's verdict with the manager's state, for the state file.
func (w *Watch) report() watch.Report {
	rep := w.m.Report()
	return watch.Report{Verdict: rep.Verdict, Detail: detail{rep, w.m.State()}}
}

type detail struct {
	Report
	State State `json:"state"`
}
