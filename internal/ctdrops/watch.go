package ctdrops

import (
	"context"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Reader takes one sample of the node (Host on a real one).
type Reader interface {
	Read(ctx context.Context) (Sample, error)
}

// Watch is the conntrack check as the daemon runs it (a watch.Watcher): a
// sample every conntrack.window, judged against the one before, exported,
// and one journal entry per kind of trouble per episode (drops or a full
// table, insert failures, a DNS pod dropping UDP) and one when it is over.
type Watch struct {
	env  watch.Env
	cfg  Config
	read Reader
	om   *Metrics

	prev     Sample
	havePrev bool
	said     string // the last reason the counters could not be read, said once
	warned   map[string]bool
}

var _ watch.Watcher = (*Watch)(nil)

// NewWatch builds the conntrack watch reading the node through r.
func NewWatch(env watch.Env, cfg config.Config, r Reader) (*Watch, error) {
	c := ConfigFrom(cfg)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	om, err := NewMetrics(env.Metrics.Registry())
	if err != nil {
		return nil, err
	}
	return &Watch{env: env, cfg: c, read: r, om: om, warned: map[string]bool{}}, nil
}

// Name is the watcher's name.
func (*Watch) Name() string { return "conntrack" }

// Check is the check it judges.
func (*Watch) Check() check.Name { return CheckName }

// Interval is conntrack.window.
func (w *Watch) Interval() time.Duration { return w.cfg.Window }

// Reconfigure applies the conntrack.* keys.
func (w *Watch) Reconfigure(cfg config.Config) error {
	c := ConfigFrom(cfg)
	if err := c.Validate(); err != nil {
		return err
	}
	w.cfg = c
	return nil
}

// Tick takes a sample and judges it against the previous one. The reads
// are a netlink message per CPU and a few small /proc files: cheap enough
// for the main loop.
func (w *Watch) Tick(ctx context.Context, now time.Time) watch.Report {
	s, err := w.read.Read(ctx)
	if err != nil {
		r := Unavailable(err)
		w.havePrev = false
		if r.Message != w.said {
			w.said = r.Message
			w.env.Log.Warn("conntrack check: "+r.Message, logging.KeyCheck, string(CheckName))
		}
		return watch.Report{Verdict: r.Verdict, Detail: r}
	}
	if w.said != "" {
		w.said = ""
		w.env.Log.Info("conntrack check: the counters are read again", logging.KeyCheck, string(CheckName))
	}
	w.om.Observe(s)
	prev, had := w.prev, w.havePrev
	w.prev, w.havePrev = s, true
	if !had {
		return watch.Report{} // rates need a second sample
	}
	r := Judge(w.cfg, prev, s)
	w.episodes(r)
	return watch.Report{Verdict: r.Verdict, Detail: r, Every: w.cfg.Window}
}

// episodes logs each kind of trouble once when it starts and once when the
// check is ok again.
func (w *Watch) episodes(r *Report) {
	log := w.env.Log
	drops := r.Rates.Drop > 0 || r.Rates.EarlyDrop > 0 || r.TableFullLines > 0 ||
		(r.Max > 0 && r.Fill >= w.cfg.FillProblem)
	if drops && !w.warned["drops"] {
		log.Warn(r.Message, logging.Msg(logging.MsgConntrackTableFull), logging.KeyCheck, string(CheckName),
			logging.KeyEntries, r.Entries, logging.KeyMax, r.Max, logging.KeyFill, r.Fill,
			logging.KeyDropRate, r.Rates.Drop, logging.KeyEarlyDropRate, r.Rates.EarlyDrop,
			logging.KeyTableFullLines, r.TableFullLines)
	}
	w.warned["drops"] = drops
	insert := r.Rates.InsertFailed > 0
	if insert && !w.warned["insert"] {
		log.Warn("conntrack insert failures rising: new entries lose a race (parallel A/AAAA DNS queries?)",
			logging.Msg(logging.MsgConntrackInsertFailed), logging.KeyCheck, string(CheckName),
			logging.KeyInsertFailRate, r.Rates.InsertFailed, logging.KeyClashRate, r.Rates.ClashResolve)
	}
	w.warned["insert"] = insert
	for _, p := range r.DNSPods {
		key := "dns:" + p.Name
		bad := p.UDPRcvbufErrors > 0 || p.UDPInErrors > 0
		if bad && !w.warned[key] {
			log.Warn("cluster DNS pod "+p.Name+" drops UDP queries on receive",
				logging.Msg(logging.MsgDNSPodUDPDrops), logging.KeyCheck, string(CheckName),
				logging.KeyDNSPod, p.Name, logging.KeyPID, p.PID,
				logging.KeyRcvbufRate, p.UDPRcvbufErrors, logging.KeyUDPInErrRate, p.UDPInErrors)
		}
		w.warned[key] = bad
	}
	if r.Status == check.OK && w.warned["problem"] {
		log.Info(r.Message, logging.Msg(logging.MsgConntrackNormal), logging.KeyCheck, string(CheckName),
			logging.KeyEntries, r.Entries, logging.KeyMax, r.Max)
	}
	w.warned["problem"] = r.Status == check.Problem
}
