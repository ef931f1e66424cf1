package dnsprobe

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

type watchRig struct {
	t       *testing.T
	m       *metrics.Metrics
	logs    *bytes.Buffer
	posts   chan func(time.Time) watch.Report
	w       *Watch
	release chan *Report // each probe returns what the test sends here
	probes  atomic.Int32
}

func newWatchRig(t *testing.T) *watchRig {
	r := &watchRig{t: t, m: metrics.New(), logs: &bytes.Buffer{},
		posts: make(chan func(time.Time) watch.Report, 4), release: make(chan *Report)}
	env := watch.Env{Clock: clock.NewFake(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)), Metrics: r.m,
		Log:  slog.New(slog.NewTextHandler(r.logs, nil)),
		Post: func(_ context.Context, f func(time.Time) watch.Report) bool { r.posts <- f; return true }}
	cfg := config.Default()
	cfg.DNS.Enabled = true
	w, err := NewWatch(env, cfg, func(ctx context.Context, _ Config) *Report {
		r.probes.Add(1)
		select {
		case rep := <-r.release:
			return rep
		case <-ctx.Done():
			return unknown(DefaultConfig(), "interrupted")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	return r
}

// probe ticks once, lets the probe finish with res, and returns the report
// the daemon would record.
func (r *watchRig) probe(res *Result) watch.Report {
	r.t.Helper()
	done := make(chan watch.Report)
	go func() { done <- r.w.Tick(context.Background(), time.Time{}) }()
	select {
	case rep := <-done:
		if rep.Status != "" {
			r.t.Fatalf("Tick reported %+v itself", rep)
		}
	case <-time.After(5 * time.Second):
		r.t.Fatal("Tick blocked while the probe runs")
	}
	// A tick while the probe runs starts no second probe.
	r.w.Tick(context.Background(), time.Time{})
	r.release <- Judge(DefaultConfig(), res)
	f := <-r.posts
	if n := r.probes.Load(); n == 0 {
		r.t.Fatal("no probe ran")
	}
	return f(time.Time{})
}

func TestWatchEpisodes(t *testing.T) {
	r := newWatchRig(t)
	srv := aps("10.0.0.10:53")[0]
	ok := &Result{Name: "k.", Server: srv, Answered: true, Attempts: 1, Answer: time.Millisecond, Took: time.Millisecond}
	lost := &Result{Name: "k.", Server: srv, Timeouts: 2, Attempts: 2, Took: 4 * time.Second}
	for i, step := range []struct {
		res    *Result
		status check.Status
		logs   []string // MESSAGE_IDs written by this step
	}{
		{ok, check.OK, nil},
		{lost, check.Problem, []string{logging.MsgDNSProbeFailing}},
		{lost, check.Problem, nil}, // said once per episode
		{ok, check.OK, []string{logging.MsgDNSProbeRecovered}},
	} {
		r.logs.Reset()
		rep := r.probe(step.res)
		if rep.Status != step.status || !rep.Changed || rep.Detail == nil {
			t.Errorf("step %d: %+v", i, rep)
		}
		for _, id := range []string{logging.MsgDNSProbeFailing, logging.MsgDNSProbeRecovered} {
			want := false
			for _, w := range step.logs {
				want = want || w == id
			}
			if got := strings.Contains(r.logs.String(), id); got != want {
				t.Errorf("step %d: logged %s = %v, want %v:\n%s", i, id, got, want, r.logs)
			}
		}
	}
	if n := r.probes.Load(); n != 4 {
		t.Errorf("%d probes for 4 ticks that found none running, want 4", n)
	}
	if c := testutil.CollectAndCount(r.m.Registry(), "nodekeeper_dns_probe_seconds"); c != len(Results) {
		t.Errorf("%d result series, want every one of %v", c, Results)
	}
	mfs, err := r.m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "nodekeeper_dns_probe_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		}
	}
	if counts[ResultOK] != 2 || counts[ResultTimeout] != 2 || counts[ResultServFail] != 0 {
		t.Errorf("probe counts by result %v, want ok 2, timeout 2", counts)
	}
}

// No server known: unknown, said once however often the probe runs, and
// not a probe of the DNS in the histogram.
func TestWatchUnknownSaidOnce(t *testing.T) {
	r := newWatchRig(t)
	for range 3 {
		if rep := r.probe(&Result{Name: "k."}); rep.Status != check.Unknown {
			t.Errorf("no server: %+v", rep)
		}
	}
	if n := strings.Count(r.logs.String(), "no DNS server known"); n != 1 {
		t.Errorf("said %d times:\n%s", n, r.logs)
	}
	if c := testutil.CollectAndCount(r.m.Registry(), "nodekeeper_dns_probe_seconds"); c != len(Results) {
		t.Errorf("%d series", c)
	}
}
