package daemon

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
	"github.com/nodekeeper/nodekeeper/internal/latency"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// registry runs the periodic watchers (package watch): one ticker each, a
// tick when it fires, a reload applied to each, every report recorded by
// record. Main loop only, except the goroutines that forward ticks and
// posted results into due and posts.
type registry struct {
	entries []*entry
	due     chan *entry
	posts   chan post
}

type entry struct {
	w         watch.Watcher
	component metrics.Component
	interval  time.Duration
	ticker    clock.Ticker
	status    check.Status // last recorded
	written   time.Time    // when the report last went to the state file
}

type post struct {
	e *entry
	f func(now time.Time) watch.Report
}

// startWatchers builds the watchers. One that cannot start (a bad setting, a
// missing file) is left out with one line saying why; the daemon goes on.
// The symptom watch is also kept typed: the kubelet pin reads its rates.
func (d *Daemon) startWatchers() {
	d.reg = registry{due: make(chan *entry), posts: make(chan post)}
	e, env := d.newEntry()
	sym, err := symptoms.NewWatch(env, d.cfg)
	if err != nil {
		d.log.Warn("symptom watchers off: "+err.Error(), "check", string(symptoms.CheckName))
	} else {
		d.sym = sym
		d.register(e, sym)
	}
	var saturated func() bool
	if sym != nil {
		saturated = sym.Saturated
	}
	e, env = d.newEntry()
	if comp, err := compaction.NewWatch(env, d.cfg, saturated); err != nil {
		d.log.Warn("compaction off: "+err.Error(), "check", string(compaction.CheckName))
	} else {
		d.register(e, comp)
	}
	// SNAT: on by default where the conntrack table can be read (auto: a
	// live host; a table that refuses is then unknown, said once).
	if c := snat.ConfigFrom(d.cfg); c.Enabled == "true" || (c.Enabled == "auto" && d.d.FS.Live()) {
		e, env = d.newEntry()
		if w, err := snat.NewWatch(env, d.cfg, snat.NewScanner(d.d.FS, d.d.Clock.Now, snat.DefaultLimit)); err != nil {
			d.log.Warn("SNAT check off: "+err.Error(), "check", string(snat.CheckName))
		} else {
			d.register(e, w)
		}
	}
	// DNS: off by default (the probe sends queries to the cluster DNS, and
	// the unit allows no address but its own and IMDS until a drop-in does).
	if c := dnsprobe.ConfigFrom(d.cfg); c.Enabled {
		e, env = d.newEntry()
		if w, err := dnsprobe.NewWatch(env, d.cfg, dnsprobe.Checker{FS: d.d.FS}.Run); err != nil {
			d.log.Warn("DNS probe off: "+err.Error(), "check", string(dnsprobe.CheckName))
		} else {
			d.register(e, w)
		}
	}
	// conntrack: on by default where the counters can be read.
	if c := ctdrops.ConfigFrom(d.cfg); c.Enabled != "false" {
		d.registerConntrack(c.Enabled == "true")
	}
	// NET_RX latency: on by default where the eBPF programs attach; where
	// they cannot (no CAP_BPF/CAP_PERFMON, an old kernel) the check says
	// unknown with the reason, and latency.enabled: true says so too.
	if c := latency.ConfigFrom(d.cfg); c.Enabled != "false" && (c.Enabled == "true" || d.d.FS.Live()) {
		var r latency.Reader
		p, why := latency.Open()
		if why == nil {
			r = p // the programs stay attached for the process's life
		}
		e, env = d.newEntry()
		if w, err := latency.NewWatch(env, d.cfg, r, why); err != nil {
			d.log.Warn("latency measurement off: "+err.Error(), "check", string(latency.Name))
		} else {
			d.register(e, w)
			d.lat = w
		}
	}
	for _, build := range d.extra {
		e, env = d.newEntry()
		d.register(e, build(env))
	}
}

// registerConntrack adds the conntrack watch; with auto (required false) only
// where a first sample can be read. On a live host it follows the kernel log
// for "table full" lines when the unit lets it read /dev/kmsg.
func (d *Daemon) registerConntrack(required bool) {
	host := ctdrops.NewHost(d.d.FS, d.d.Clock.Now)
	if _, err := host.Read(context.Background()); err != nil && !required {
		d.log.Info("conntrack check off (conntrack.enabled: auto): "+err.Error(), "check", string(ctdrops.CheckName))
		return
	}
	if d.d.FS.Live() {
		if k, err := ctdrops.OpenKmsg("/dev/kmsg"); err != nil {
			d.log.Info("conntrack check: the kernel log cannot be read, so its \"table full\" lines are not counted (the drop counters still are): "+err.Error(),
				"check", string(ctdrops.CheckName))
		} else {
			host.Kmsg = k
		}
	}
	e, env := d.newEntry()
	if w, err := ctdrops.NewWatch(env, d.cfg, host); err != nil {
		d.log.Warn("conntrack check off: "+err.Error(), "check", string(ctdrops.CheckName))
	} else {
		d.register(e, w)
	}
}

// newEntry is a registry entry for a watcher about to be built, and the
// environment to build it with: its Post delivers to that entry.
func (d *Daemon) newEntry() (*entry, watch.Env) {
	e := &entry{}
	return e, watch.Env{FS: d.d.FS, Clock: d.d.Clock, Log: d.log, Metrics: d.d.Metrics, DryRun: d.d.DryRun,
		Post: d.postFor(e)}
}

// register adds the watcher w built for e, and declares its check and
// component to metrics.
func (d *Daemon) register(e *entry, w watch.Watcher) {
	e.w, e.component = w, metrics.Component(w.Name())
	d.d.Metrics.DeclareCheck(w.Check())
	d.d.Metrics.DeclareComponent(e.component)
	d.reg.entries = append(d.reg.entries, e)
}

// startTicking starts every watcher's ticker and ticks each once. The
// forwarding goroutines end with ctx.
func (d *Daemon) startTicking(ctx context.Context) {
	for _, e := range d.reg.entries {
		e.interval = e.w.Interval()
		e.ticker = d.d.Clock.NewTicker(e.interval)
		go forward(ctx, e, d.reg.due)
		d.tick(ctx, e)
	}
}

func (d *Daemon) stopTicking() {
	for _, e := range d.reg.entries {
		if e.ticker != nil {
			e.ticker.Stop()
		}
	}
}

// forward sends e into due whenever its ticker fires.
func forward(ctx context.Context, e *entry, due chan<- *entry) {
	c := e.ticker.C()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
		}
		select {
		case due <- e:
		case <-ctx.Done():
			return
		}
	}
}

// tick runs one tick of e and records it.
func (d *Daemon) tick(ctx context.Context, e *entry) {
	if ctx.Err() != nil {
		return
	}
	d.recordWatch(ctx, e, e.w.Tick(ctx, d.d.Clock.Now()))
}

// postFor is the Env.Post of the watcher in e.
func (d *Daemon) postFor(e *entry) func(context.Context, func(time.Time) watch.Report) bool {
	return func(ctx context.Context, f func(time.Time) watch.Report) bool {
		select {
		case d.reg.posts <- post{e, f}:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// recordWatch is the one place a watcher's report reaches the daemon's
// outputs: errors logged once per reason and counted, the verdict into the
// check status metric and (paced) the state file, actions into the history,
// and a trigger into an IRQ check.
func (d *Daemon) recordWatch(ctx context.Context, e *entry, rep watch.Report) {
	if rep.Err != nil {
		d.errorOnce(e.component, rep.Err.Error(), "check", string(e.w.Check()))
		return
	}
	d.errorCleared(e.component)
	for _, a := range rep.Actions {
		d.addAction(a)
	}
	if rep.Status != "" {
		d.d.Metrics.SetCheckStatus(rep.Check, rep.Status)
		now := d.d.Clock.Now()
		every := rep.Every
		if every <= 0 {
			every = e.interval
		}
		if rep.Changed || rep.Status != e.status || now.Sub(e.written) >= every {
			e.status, e.written = rep.Status, now
			d.storeCheck(rep.Check, state.Check{Time: now, Interval: state.Duration(every),
				Status: string(rep.Status), Message: rep.Message}, rep.Detail, nil)
		}
	}
	if rep.Trigger != "" {
		d.runCheck(ctx, pending{reason: rep.Trigger})
	}
}

// storeCheck puts one check's result into the state file, with whatever
// else also changed (also, under the state lock; may be nil): the one
// marshal-lock-store-write sequence every check uses.
func (d *Daemon) storeCheck(name check.Name, c state.Check, report any, also func(*state.State)) {
	raw, err := json.Marshal(report)
	if err != nil {
		d.errorOnce(metrics.ComponentState, "cannot encode the "+string(name)+" check for the state file: "+err.Error())
	}
	c.Report = raw
	d.mu.Lock()
	d.st.Checks[name] = c
	if also != nil {
		also(d.st)
	}
	d.mu.Unlock()
	d.writeState()
}

// reconfigureWatchers applies a reloaded configuration to every watcher and
// restarts a ticker only when its interval changed: reloads more often than
// an interval must not keep the periodic work from running.
func (d *Daemon) reconfigureWatchers(cfg config.Config) {
	for _, e := range d.reg.entries {
		if err := e.w.Reconfigure(cfg); err != nil {
			d.errorOnce(metrics.ComponentReload, e.w.Name()+" keeps its settings: "+err.Error())
			continue
		}
		if iv := e.w.Interval(); iv != e.interval && e.ticker != nil {
			e.interval = iv
			e.ticker.Reset(iv)
		}
	}
}
