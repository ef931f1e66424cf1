package latency

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

func TestBucketMatchesLog2(t *testing.T) {
	for _, ns := range []uint64{0, 1, 2, 3, 4, 1023, 1024, 1 << 32, 1<<32 - 1, 1<<63 + 5, ^uint64(0)} {
		want := 0
		if ns > 1 {
			want = 63 - bits.LeadingZeros64(ns)
		}
		if got := Bucket(ns); got != want {
			t.Errorf("Bucket(%d) = %d, want %d", ns, got, want)
		}
	}
}

// counts builds one CPU's counters from delays in ns, as the kernel would.
func counts(delays ...uint64) CPUCounts {
	var c CPUCounts
	for _, d := range delays {
		c.Buckets[Bucket(d)]++
		c.MaxNS = max(c.MaxNS, d)
	}
	return c
}

// TestStatsQuantilesWithinBucket: the estimate lies in the bucket of the true
// quantile, for random mixes of fast and slow softirqs.
func TestStatsQuantilesWithinBucket(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + r.IntN(5000)
		d := make([]uint64, n)
		for i := range d {
			d[i] = uint64(r.ExpFloat64() * float64(1+r.IntN(100000)))
			if r.IntN(50) == 0 {
				d[i] *= 1000 // a starved one
			}
		}
		st := Stats(nil, []CPUCounts{counts(d...)})
		if len(st) != 1 || st[0].Samples != uint64(n) {
			t.Fatalf("stats %+v for %d samples", st, n)
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		for _, q := range []struct {
			q   float64
			got float64
		}{{0.5, st[0].P50us}, {0.99, st[0].P99us}} {
			rank := int(q.q*float64(n)+0.999999) - 1
			trueNS := d[max(rank, 0)]
			lo, hi := lower(Bucket(trueNS)), upper(Bucket(trueNS))
			gotNS := q.got * 1000
			if gotNS < lo-10 || gotNS > hi+10 {
				t.Fatalf("q%.2f of %d samples: got %.0f ns, true %d ns (bucket %.0f–%.0f)", q.q, n, gotNS, trueNS, lo, hi)
			}
		}
		if want := us(float64(d[n-1])); st[0].MaxUs != want {
			t.Fatalf("max %v, want %v", st[0].MaxUs, want)
		}
	}
}

func TestStatsDeltaResetAndIdle(t *testing.T) {
	prev := []CPUCounts{counts(100, 200), counts(5000), counts()}
	cur := []CPUCounts{counts(100, 200, 300_000), counts(), counts()}
	cur[1].Buckets[Bucket(5000)] = 0 // went backwards: the programs were reloaded
	cur[1].Buckets[Bucket(40)] = 3
	cur[1].MaxNS = 40
	st := Stats(prev, cur)
	if len(st) != 2 {
		t.Fatalf("want CPUs 0 and 1 (CPU 2 idle): %+v", st)
	}
	if st[0].CPU != 0 || st[0].Samples != 1 || st[0].P99us < 262 || st[0].P99us > 300 {
		t.Fatalf("CPU 0 over the window is the one 300 µs delay: %+v", st[0])
	}
	if st[1].CPU != 1 || st[1].Samples != 3 {
		t.Fatalf("CPU 1 after a reset counts from zero: %+v", st[1])
	}
	// A stale maximum (older than the window) is bounded by the window's buckets.
	prev = []CPUCounts{counts(10_000_000)}
	cur = []CPUCounts{counts(10_000_000, 100)}
	cur[0].MaxNS = 10_000_000
	if st := Stats(prev, cur); st[0].MaxUs > 0.13 {
		t.Fatalf("stale max leaked into the window: %+v", st)
	}
	// CPUs that appear (hot-plug) count from zero too.
	if st := Stats(nil, []CPUCounts{counts(), counts(1000)}); len(st) != 1 || st[0].CPU != 1 {
		t.Fatalf("new CPU: %+v", st)
	}
}

func TestJudge(t *testing.T) {
	cfg := Config{Window: 10 * time.Second, P99Problem: 10 * time.Millisecond}
	r := Judge(nil, cfg.Window, cfg)
	if r.Status != check.OK || r.Source != SourceEBPF || r.CPUs == nil {
		t.Fatalf("no softirqs: %+v", r)
	}
	fast := Stat{CPU: 0, P50us: 1, P99us: 40, MaxUs: 90, Samples: 1000}
	r = Judge([]Stat{fast}, cfg.Window, cfg)
	if r.Status != check.OK || len(r.Message) > check.MaxMessage {
		t.Fatalf("fast: %+v", r)
	}
	slow := Stat{CPU: 3, P50us: 900, P99us: 12_000, MaxUs: 200_000, Samples: 500}
	edge := Stat{CPU: 5, P99us: 10_000, Samples: 10}
	r = Judge([]Stat{fast, slow, edge}, cfg.Window, cfg)
	if r.Status != check.Problem || !r.Slow(cfg.P99Problem).Equal(cpuset.New(3, 5)) {
		t.Fatalf("slow: %+v", r)
	}
	if want := "NET_RX softirqs wait p99 12ms on CPU 3 (2 CPUs ≥ 10ms)"; r.Message != want {
		t.Fatalf("message %q, want %q", r.Message, want)
	}
	u := Unavailable(errors.New("operation not permitted"), cfg)
	if u.Status != check.Unknown || u.Source != SourceUnavailable || u.Reason == "" {
		t.Fatalf("unavailable: %+v", u)
	}
}

type fakeReader struct {
	reads [][]CPUCounts
	err   error
}

func (f *fakeReader) Read() ([]CPUCounts, error) {
	if f.err != nil {
		return nil, f.err
	}
	c := f.reads[0]
	f.reads = f.reads[1:]
	return c, nil
}

func TestMeter(t *testing.T) {
	f := &fakeReader{reads: [][]CPUCounts{{counts(100)}, {counts(100, 2000)}, {counts(100, 2000, 3000, 4000)}}}
	m, err := NewMeter(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{1, 2} {
		st, err := m.Next()
		if err != nil || len(st) != 1 || st[0].Samples != want {
			t.Fatalf("want %d samples: %+v %v", want, st, err)
		}
	}
	f.err = errors.New("map gone")
	if _, err := m.Next(); err == nil {
		t.Fatal("a read error must reach the caller")
	}
	if _, err := NewMeter(f); err == nil {
		t.Fatal("NewMeter must fail when the first read fails")
	}
}

func FuzzStats(f *testing.F) {
	f.Add(uint64(0), uint64(5), uint64(1<<40), uint64(7), uint8(3))
	f.Fuzz(func(t *testing.T, a, b, c, maxNS uint64, cpus uint8) {
		prev := make([]CPUCounts, int(cpus)%8)
		cur := make([]CPUCounts, int(cpus/8)%8)
		for i := range cur {
			cur[i].Buckets[a%NumBuckets] += b % 1000
			cur[i].Buckets[c%NumBuckets] += a % 1000
			cur[i].MaxNS = maxNS
		}
		for _, s := range Stats(prev, cur) {
			if s.Samples == 0 || s.P50us > s.P99us+1e-9 || s.P99us > s.MaxUs+1e-9 || s.P50us < 0 {
				t.Fatalf("inconsistent %+v", s)
			}
		}
	})
}
