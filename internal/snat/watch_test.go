package snat

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// watchRig runs a Watch the way the daemon's loop does: ticks by hand,
// posted results taken from a channel.
type watchRig struct {
	t     *testing.T
	clk   *clock.Fake
	m     *metrics.Metrics
	logs  *bytes.Buffer
	posts chan func(time.Time) watch.Report
	w     *Watch

	mu    sync.Mutex
	flows []conntrack.Flow
	err   error
	took  time.Duration // each dump moves the fake clock on by this
	dumps int
}

func newWatchRig(t *testing.T) *watchRig {
	r := &watchRig{t: t, clk: clock.NewFake(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)), m: metrics.New(),
		logs: &bytes.Buffer{}, posts: make(chan func(time.Time) watch.Report, 4)}
	env := watch.Env{Clock: r.clk, Metrics: r.m, Log: slog.New(slog.NewTextHandler(r.logs, nil)),
		Post: func(_ context.Context, f func(time.Time) watch.Report) bool { r.posts <- f; return true }}
	w, err := NewWatch(env, config.Default(), Scanner{Dump: r.dump})
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	return r
}

func (r *watchRig) dump(_ context.Context, _ conntrack.Filter, fn func(*conntrack.Flow)) (conntrack.Stats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dumps++
	r.clk.Advance(r.took)
	if r.err != nil {
		return conntrack.Stats{}, r.err
	}
	for i := range r.flows {
		fn(&r.flows[i])
	}
	return conntrack.Stats{Entries: len(r.flows)}, nil
}

func (r *watchRig) set(flows []conntrack.Flow, err error, took time.Duration) {
	r.mu.Lock()
	r.flows, r.err, r.took = flows, err, took
	r.mu.Unlock()
}

// tick ticks the watch and, when it started a scan, returns the recorded
// report of that scan (nil when no scan started).
func (r *watchRig) tick() *watch.Report {
	r.t.Helper()
	r.mu.Lock()
	before := r.dumps
	r.mu.Unlock()
	if rep := r.w.Tick(context.Background(), r.clk.Now()); rep.Status != "" {
		r.t.Fatalf("a tick records nothing itself: %+v", rep)
	}
	select {
	case f := <-r.posts:
		rep := f(r.clk.Now())
		return &rep
	case <-time.After(5 * time.Second):
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.dumps != before {
			r.t.Fatal("a scan ran and posted nothing")
		}
		return nil
	}
}

// busy is n TCP flows from podA to one destination.
func busy(n int) []conntrack.Flow {
	return flows(n, func(i int) conntrack.Flow { return tcp(podA, uint16(1000+i), "20.50.2.1", 443) })
}

// A scan's verdict is recorded; crossing snat.warnRatio is said once per
// episode, and falling back once; the series follow the last good scan.
func TestWatchEpisodes(t *testing.T) {
	r := newWatchRig(t)
	r.set(busy(900), nil, 10*time.Millisecond) // 900 of 1024: ≥ 0.8
	for range 2 {
		rep := r.tick()
		if rep == nil || rep.Status != check.Problem || !rep.Changed || rep.Check != CheckName {
			t.Fatalf("scan: %+v", rep)
		}
		r.clk.Advance(30 * time.Second)
	}
	r.set(busy(100), nil, 10*time.Millisecond)
	if rep := r.tick(); rep.Status != check.OK {
		t.Fatalf("after the load: %+v", rep.Verdict)
	}
	logs := r.logs.String()
	if n := strings.Count(logs, logging.MsgSNATPortsHigh); n != 1 {
		t.Errorf("the episode is said %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, logging.MsgSNATPortsNormal); n != 1 {
		t.Errorf("the end of the episode is said %d times, want once:\n%s", n, logs)
	}
	for _, want := range []string{"demand_ports=900", "allocated_ports=1024", "destination=20.50.2.1:443/tcp", "top_source=\"unknown 10.244.1.7\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("the entry lacks %s:\n%s", want, logs)
		}
	}
	want := `
# HELP nodekeeper_snat_public_flows Conntrack flows towards public destinations: each spends a load-balancer SNAT port.
# TYPE nodekeeper_snat_public_flows gauge
nodekeeper_snat_public_flows 100
`
	if err := testutil.GatherAndCompare(r.m.Registry(), strings.NewReader(want), "nodekeeper_snat_public_flows"); err != nil {
		t.Error(err)
	}
}

// A long dump pushes the next scan back (at most 1/dutyFactor of the time
// in dumps); a tick while a scan runs starts no second one.
func TestWatchBacksOffOnLongDumps(t *testing.T) {
	r := newWatchRig(t)
	r.set(busy(10), nil, 10*time.Second) // 10 s per dump: next scan ≥ 200 s after it
	if r.tick() == nil {
		t.Fatal("the first tick scans")
	}
	for i := 1; i*30 < 190; i++ {
		r.clk.Advance(30 * time.Second)
		if r.w.Tick(context.Background(), r.clk.Now()); r.w.running {
			t.Fatalf("scanned again %d s after a 10 s dump", i*30)
		}
	}
	r.clk.Advance(30 * time.Second)
	if r.tick() == nil {
		t.Fatal("no scan after the back-off")
	}
	// A scan in flight: the next tick does not start another.
	r.set(busy(10), nil, 0)
	r.clk.Advance(time.Hour)
	r.w.running = true
	if r.w.Tick(context.Background(), r.clk.Now()); len(r.posts) != 0 {
		t.Error("a second scan started while one ran")
	}
}

// A table that cannot be read is unknown, said once, and tried again only
// every unavailableFactor intervals; its recovery is said.
func TestWatchUnreadableTable(t *testing.T) {
	r := newWatchRig(t)
	r.set(nil, &conntrack.Error{Kind: conntrack.Permission, Err: unix.EPERM}, 0)
	rep := r.tick()
	if rep.Status != check.Unknown || !strings.Contains(rep.Message, "no permission") {
		t.Fatalf("unreadable: %+v", rep.Verdict)
	}
	for i := 1; i < unavailableFactor; i++ {
		r.clk.Advance(30 * time.Second)
		if r.w.Tick(context.Background(), r.clk.Now()); r.w.running {
			t.Fatalf("tried again after %d intervals", i)
		}
	}
	r.clk.Advance(30 * time.Second)
	if rep := r.tick(); rep == nil || rep.Status != check.Unknown {
		t.Fatalf("no retry after %d intervals", unavailableFactor)
	}
	r.set(busy(5), nil, 0)
	r.clk.Advance(time.Duration(unavailableFactor) * 30 * time.Second)
	if rep := r.tick(); rep.Status != check.OK {
		t.Fatalf("readable again: %+v", rep.Verdict)
	}
	logs := r.logs.String()
	if n := strings.Count(logs, "cannot read the conntrack table"); n != 1 {
		t.Errorf("said %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "the conntrack table is read again") {
		t.Errorf("the recovery is not said:\n%s", logs)
	}
}

// nodekeeper_snat_flows never has more than MaxFlowSeries+1 series: the top
// sources by flows, the rest (and the flows past the report's own top) in
// pod="other"; sources of one pod are merged.
func TestFlowSeriesBounded(t *testing.T) {
	r := &Report{PublicFlows: 1000}
	for i := range 15 {
		r.Sources = append(r.Sources, Source{IP: netip.AddrFrom4([4]byte{10, 244, 0, byte(i)}), Kind: KindPod,
			Namespace: "ns", Pod: fmt.Sprintf("pod-%02d", i), Flows: 60 - i})
	}
	r.Sources = append(r.Sources, Source{Kind: KindPod, Namespace: "ns", Pod: "pod-14", Flows: 30}) // a second address of pod-14
	r.Sources = append(r.Sources, Source{Kind: KindHost, Flows: 5}, Source{Kind: KindUnknown, Flows: 2}, Source{Kind: KindUnknown, Flows: 1})
	got := FlowSeries(r)
	if len(got) != MaxFlowSeries+1 {
		t.Fatalf("%d series, want %d: %+v", len(got), MaxFlowSeries+1, got)
	}
	if got[0].Pod != "pod-14" || got[0].Flows != 76 {
		t.Errorf("merged pod first: %+v", got[0])
	}
	sum := 0
	for _, s := range got {
		sum += s.Flows
	}
	if last := got[len(got)-1]; last.Pod != "other" || sum != r.PublicFlows {
		t.Errorf("other %+v; the series sum to %d, want every public flow (%d)", last, sum, r.PublicFlows)
	}
}
