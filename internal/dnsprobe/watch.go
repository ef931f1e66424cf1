package dnsprobe

import (
	"context"
	"fmt"

	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Watch is the DNS probe as the daemon runs it (a watch.Watcher): every
// dns.interval one probe in a goroutine of its own (a probe that times out
// takes seconds; Tick returns at once), its report recorded and exported,
// one journal entry when the probe starts failing and one when it answers
// again.
type Watch struct {
	env watch.Env
	cfg Config
	run func(ctx context.Context, cfg Config) *Report
	om  *Metrics

	running bool   // a probe is on its way (main loop only)
	failing bool   // this episode of failures was said
	said    string // the last reason the probe could not judge, said once
}

var _ watch.Watcher = (*Watch)(nil)

// NewWatch builds the DNS watch; run is one check (Checker.Run on a live
// host).
func NewWatch(env watch.Env, cfg config.Config, run func(ctx context.Context, cfg Config) *Report) (*Watch, error) {
	c := ConfigFrom(cfg)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	om, err := NewMetrics(env.Metrics.Registry())
	if err != nil {
		return nil, err
	}
	return &Watch{env: env, cfg: c, run: run, om: om}, nil
}

// Check is the check it judges.
func (*Watch) Check() check.Name { return CheckName }

// Name is the watcher's name.
func (*Watch) Name() string { return "dns" }

// Interval is dns.interval.
func (w *Watch) Interval() time.Duration { return w.cfg.Interval }

// Reconfigure applies the dns.* keys (the next probe uses them).
func (w *Watch) Reconfigure(cfg config.Config) error {
	c := ConfigFrom(cfg)
	if err := c.Validate(); err != nil {
		return err
	}
	w.cfg = c
	return nil
}

// Tick starts a probe unless one is still running.
func (w *Watch) Tick(ctx context.Context, _ time.Time) watch.Report {
	if w.running {
		return watch.Report{}
	}
	w.running = true
	cfg, run := w.cfg, w.run
	go func() {
		r := run(ctx, cfg)
		w.env.Post(ctx, func(now time.Time) watch.Report { return w.probed(r) })
	}()
	return watch.Report{}
}

// probed records one probe (main loop).
func (w *Watch) probed(r *Report) watch.Report {
	w.running = false
	w.om.Observe(r)
	if r.Status == check.Unknown {
		if r.Message != w.said {
			w.said = r.Message
			w.env.Log.Warn("DNS probe cannot judge: "+r.Message, logging.KeyCheck, string(CheckName))
		}
	} else {
		w.said = ""
	}
	switch {
	case r.Status == check.Problem && !w.failing:
		w.failing = true
		rc := r.Rcode
		if rc == "" {
			rc = "none"
		}
		w.env.Log.Warn(r.Message, logging.Msg(logging.MsgDNSProbeFailing), logging.KeyCheck, string(CheckName),
			logging.KeyServer, r.Server, logging.KeyProbeName, r.Name, logging.KeyRcode, rc,
			logging.KeyTimeouts, r.Timeouts, logging.KeyAttempts, r.Attempts, logging.KeyTruncated, r.Truncated)
	case r.Status == check.OK && w.failing:
		w.failing = false
		w.env.Log.Info(fmt.Sprintf("DNS probe answers again: %s", r.Message), logging.Msg(logging.MsgDNSProbeRecovered),
			logging.KeyCheck, string(CheckName), logging.KeyServer, r.Server, logging.KeyAnswerMS, r.AnswerMS)
	}
	return watch.Report{Verdict: r.Verdict, Detail: r, Changed: true}
}
