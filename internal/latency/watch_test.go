package latency

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// seqReader hands out prepared reads of two CPUs in turn.
type seqReader struct{ reads [][]CPUCounts }

func (r *seqReader) Read() ([]CPUCounts, error) {
	c := r.reads[0]
	if len(r.reads) > 1 {
		r.reads = r.reads[1:]
	}
	return c, nil
}

// counts returns cumulative counts of two CPUs after adding n waits of
// about d to cpu's bucket.
func add(prev []CPUCounts, cpu, n int, d time.Duration) []CPUCounts {
	out := make([]CPUCounts, len(prev))
	copy(out, prev)
	out[cpu].Buckets[Bucket(uint64(d))] += uint64(n)
	return out
}

func newWatchEnv(t *testing.T) (watch.Env, *bytes.Buffer, *metrics.Metrics) {
	var logs bytes.Buffer
	m := metrics.New()
	return watch.Env{Clock: clock.NewFake(time.Unix(0, 0)), Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m}, &logs, m
}

func TestWatchTriggersOnSlowCPUsAndLogsThePinEffect(t *testing.T) {
	env, logs, m := newWatchEnv(t)
	z := make([]CPUCounts, 2)
	r1 := add(add(z, 0, 1000, 2*time.Microsecond), 1, 1000, 2*time.Microsecond) // both fast
	r2 := add(add(r1, 0, 1000, 2*time.Microsecond), 1, 1000, 40*time.Millisecond)
	r3 := add(add(r2, 0, 1000, 2*time.Microsecond), 1, 1000, 40*time.Millisecond) // still slow: no new trigger
	r4 := add(add(r3, 0, 1000, 2*time.Microsecond), 1, 1000, 3*time.Microsecond)  // after the pin
	w, err := NewWatch(env, config.Default(), &seqReader{reads: [][]CPUCounts{z, r1, r2, r3, r4}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	rep := w.Tick(t.Context(), t0)
	if rep.Status != check.OK || rep.Trigger != "" || !w.Slow().IsEmpty() {
		t.Fatalf("fast window: %+v, slow %s", rep, w.Slow())
	}
	rep = w.Tick(t.Context(), t0.Add(10*time.Second))
	if rep.Status != check.Problem || !strings.Contains(rep.Trigger, "on CPUs 1") || !w.Slow().Equal(cpuset.New(1)) {
		t.Fatalf("slow CPU 1: %s %q trigger %q, slow %s", rep.Status, rep.Message, rep.Trigger, w.Slow())
	}
	rep = w.Tick(t.Context(), t0.Add(20*time.Second))
	if rep.Trigger != "" {
		t.Errorf("CPU 1 still slow: a second trigger %q", rep.Trigger)
	}
	before, ok := w.PinApplied(t0.Add(21*time.Second), cpuset.New(1))
	if !ok || before < 10000 {
		t.Errorf("p99 before the pin %v %v, want ≥ 10 ms", before, ok)
	}
	w.Tick(t.Context(), t0.Add(31*time.Second))
	text := logs.String()
	if !strings.Contains(text, "MESSAGE_ID=22cd202320ee4ad6a91ea6a8d12f6440") || !strings.Contains(text, "p99_after_us=") {
		t.Errorf("no pin effect entry:\n%s", text)
	}
	if strings.Count(text, "kubelet pin's effect") != 1 {
		t.Errorf("pin effect logged %d times", strings.Count(text, "kubelet pin's effect"))
	}
	if n := testutil.CollectAndCount(m.Registry(), "nodekeeper_softirq_latency_seconds"); n != 2 {
		t.Errorf("%d latency histograms, want one per CPU (2)", n)
	}
}

func TestWatchUnavailableIsUnknownOnce(t *testing.T) {
	env, logs, _ := newWatchEnv(t)
	w, err := NewWatch(env, config.Default(), nil, errors.New("operation not permitted (CAP_BPF)"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		rep := w.Tick(t.Context(), time.Unix(int64(i), 0))
		r, ok := rep.Detail.(Report)
		if rep.Status != check.Unknown || !ok || r.Source != SourceUnavailable || !strings.Contains(r.Reason, "CAP_BPF") {
			t.Fatalf("tick %d: %+v", i, rep)
		}
	}
	if n := strings.Count(logs.String(), "not measured"); n != 1 {
		t.Errorf("said %d times, want once", n)
	}
	if _, ok := w.PinApplied(time.Unix(5, 0), cpuset.New(0)); ok {
		t.Error("a p99 before the pin without a measurement")
	}
}

func TestHistogramMetric(t *testing.T) {
	_, _, m := newWatchEnv(t)
	om, err := NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	c := make([]CPUCounts, 3)
	c[0].Buckets[Bucket(500)] = 10                       // 500 ns: under the first bound (1.024 µs)
	c[0].Buckets[Bucket(uint64(3*time.Millisecond))] = 5 // 3 ms
	c[2].Buckets[Bucket(uint64(2*time.Second))] = 1      // past the last bound: only in +Inf
	om.Observe(c)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]uint64{} // cpu → cumulative counts per bound, then the count
	for _, f := range fams {
		if f.GetName() != "nodekeeper_softirq_latency_seconds" {
			continue
		}
		for _, mm := range f.GetMetric() {
			h := mm.GetHistogram()
			var v []uint64
			for _, b := range h.GetBucket() {
				v = append(v, b.GetCumulativeCount())
			}
			got[mm.GetLabel()[0].GetValue()] = append(v, h.GetSampleCount())
		}
	}
	// Bounds 1µs 4µs 16µs 65µs 262µs 1ms 4ms 17ms 67ms 268ms 1.07s, then the count.
	want := map[string][]uint64{
		"0": {10, 10, 10, 10, 10, 10, 15, 15, 15, 15, 15, 15},
		"2": {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	}
	if len(got) != 2 || !slices.Equal(got["0"], want["0"]) || !slices.Equal(got["2"], want["2"]) {
		t.Errorf("histograms %v, want %v (CPU 1 has no samples: no series)", got, want)
	}
}
