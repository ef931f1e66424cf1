package snat

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Watch is the SNAT check as the daemon runs it (a watch.Watcher): every
// snat.interval a scan of the conntrack table on a low-priority thread of
// its own, its report recorded and exported, and one journal entry when the
// utilization reaches snat.warnRatio and one when it falls back.
type Watch struct {
	env  watch.Env
	cfg  Config
	scan Scanner
	om   *Metrics

	running bool      // a scan is on its way (main loop only)
	next    time.Time // no scan before: the back-off after a long dump or an unreadable table
	warned  bool      // this episode of high utilization was said
	said    string    // the last reason the table could not be read, said once
}

var _ watch.Watcher = (*Watch)(nil)

// Cost bounds. A dump costs about 3 s of CPU per million entries: after a
// dump the next waits at least dutyFactor-1 times its wall time, so dumps
// take at most 1/dutyFactor of the time however large the table (and
// snat.interval apart at the least); a table that cannot be read is tried
// again only every unavailableFactor intervals.
const (
	dutyFactor        = 20
	unavailableFactor = 10
	scanNice          = 10 // the dump's thread runs behind the workloads
)

// NewWatch builds the SNAT watch; scan reads the table (conntrack.Dump and
// a pod resolver on a live host).
func NewWatch(env watch.Env, cfg config.Config, scan Scanner) (*Watch, error) {
	c := ConfigFrom(cfg)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	om, err := NewMetrics(env.Metrics.Registry())
	if err != nil {
		return nil, err
	}
	return &Watch{env: env, cfg: c, scan: scan, om: om}, nil
}

// Check is the check it judges.
func (*Watch) Check() check.Name { return CheckName }

// Name is the watcher's name.
func (*Watch) Name() string { return "snat" }

// Interval is snat.interval.
func (w *Watch) Interval() time.Duration { return w.cfg.Interval }

// Reconfigure applies the snat.* keys.
func (w *Watch) Reconfigure(cfg config.Config) error {
	c := ConfigFrom(cfg)
	if err := c.Validate(); err != nil {
		return err
	}
	w.cfg = c
	return nil
}

// Tick starts a scan unless one is running or the back-off holds it.
func (w *Watch) Tick(ctx context.Context, now time.Time) watch.Report {
	if w.running || now.Before(w.next) {
		return watch.Report{}
	}
	w.running = true
	cfg, scan, clk := w.cfg, w.scan, w.env.Clock
	go func() {
		// The thread is not unlocked: it ends with the goroutine, and its
		// lowered priority with it.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), scanNice) // best effort: the back-off bounds the cost anyway
		start := clk.Now()
		r := scan.Run(ctx, cfg)
		took := clk.Now().Sub(start)
		w.env.Post(ctx, func(now time.Time) watch.Report { return w.scanned(now, r, took) })
	}()
	return watch.Report{}
}

// scanned records one scan (main loop).
func (w *Watch) scanned(now time.Time, r *Report, took time.Duration) watch.Report {
	w.running = false
	w.om.Observe(r, took)
	w.next = now.Add((dutyFactor - 1) * took) // dumps take at most 1/dutyFactor of the time
	if r.Status == check.Unknown {
		switch conntrack.KindOf(r.Err) {
		case conntrack.Unavailable, conntrack.Permission:
			w.next = now.Add(unavailableFactor * w.cfg.Interval)
		}
		if r.Message != w.said {
			w.said = r.Message
			w.env.Log.Warn("SNAT check: cannot read the conntrack table: "+r.Message, "check", string(CheckName))
		}
	} else if w.said != "" {
		w.said = ""
		w.env.Log.Info("SNAT check: the conntrack table is read again", "check", string(CheckName))
	}
	w.episode(r)
	return watch.Report{Verdict: r.Verdict, Detail: r, Changed: true}
}

// episode says once when the utilization reaches snat.warnRatio and once
// when it falls back below it.
func (w *Watch) episode(r *Report) {
	switch {
	case r.Status == check.Problem && !w.warned:
		w.warned = true
		attrs := []any{logging.Msg(logging.MsgSNATPortsHigh), "check", string(CheckName),
			"demand_ports", r.DemandPorts, "allocated_ports", r.AllocatedPorts, "allocated_source", r.AllocatedSource,
			"utilization", r.Utilization}
		if len(r.Destinations) > 0 {
			attrs = append(attrs, "destination", DestString(r.Destinations[0]))
		}
		if len(r.Sources) > 0 {
			attrs = append(attrs, "top_source", SourceName(r.Sources[0]))
		}
		w.env.Log.Warn(r.Message, attrs...)
	case r.Status == check.OK && w.warned:
		w.warned = false
		w.env.Log.Info(fmt.Sprintf("SNAT port use back under snat.warnRatio %.2f: %s", w.cfg.WarnRatio, r.Message),
			logging.Msg(logging.MsgSNATPortsNormal), "check", string(CheckName),
			"demand_ports", r.DemandPorts, "allocated_ports", r.AllocatedPorts, "utilization", r.Utilization)
	}
}
