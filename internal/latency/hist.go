package latency

import (
	"math"
	"time"
)

// NumBuckets is the number of log2 buckets per CPU (delays up to 2^64 ns).
const NumBuckets = 64

// CPUCounts is one CPU's counters as read from the kernel: monotonic bucket
// counts since the programs were loaded, and the largest delay seen since the
// last read that reset it.
type CPUCounts struct {
	Buckets [NumBuckets]uint64
	MaxNS   uint64
}

// Stat is one CPU's NET_RX raise→entry latency over a window.
type Stat struct {
	CPU     int     `json:"cpu"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	MaxUs   float64 `json:"max_us"`
	Samples uint64  `json:"samples"` // timed softirqs: one in SampleEvery
}

// P99 returns the CPU's p99 as a duration.
func (s Stat) P99() time.Duration { return time.Duration(s.P99us * float64(time.Microsecond)) }

// Stats turns two reads of every CPU's counters into per-CPU statistics over
// the time between them. A CPU whose counters went backwards (the programs
// were reloaded) is taken from zero. CPUs without samples are left out.
func Stats(prev, cur []CPUCounts) []Stat {
	var out []Stat
	for cpu := range cur {
		var d [NumBuckets]uint64
		var n uint64
		reset := cpu >= len(prev)
		if !reset {
			for i := range d {
				if cur[cpu].Buckets[i] < prev[cpu].Buckets[i] {
					reset = true
					break
				}
			}
		}
		for i := range d {
			d[i] = cur[cpu].Buckets[i]
			if !reset {
				d[i] -= prev[cpu].Buckets[i]
			}
			n += d[i]
		}
		if n == 0 {
			continue
		}
		maxNS := float64(cur[cpu].MaxNS)
		if hi := upper(highest(d)); maxNS == 0 || maxNS > hi {
			maxNS = hi // the max was reset mid-window, or is older than the window: the bucket bounds it
		}
		out = append(out, Stat{CPU: cpu, Samples: n,
			P50us: us(min(quantile(d, n, 0.50), maxNS)),
			P99us: us(min(quantile(d, n, 0.99), maxNS)),
			MaxUs: us(maxNS)})
	}
	return out
}

func us(ns float64) float64 { return math.Round(ns/10) / 100 }

// quantile estimates the q-quantile in ns from log2 buckets, interpolating
// linearly inside the bucket that holds it.
func quantile(d [NumBuckets]uint64, n uint64, q float64) float64 {
	rank := q * float64(n)
	var cum float64
	for i, c := range d {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			lo, hi := lower(i), upper(i)
			return lo + (hi-lo)*(rank-cum)/float64(c)
		}
		cum += float64(c)
	}
	return upper(highest(d))
}

func highest(d [NumBuckets]uint64) int {
	for i := NumBuckets - 1; i >= 0; i-- {
		if d[i] != 0 {
			return i
		}
	}
	return 0
}

func lower(i int) float64 {
	if i == 0 {
		return 0
	}
	return math.Ldexp(1, i)
}

func upper(i int) float64 { return math.Ldexp(1, i+1) }

// Bucket returns the bucket a delay of ns falls in, as the kernel program
// computes it (floor(log2(ns)), 0 for 0 and 1).
func Bucket(ns uint64) int {
	b := 0
	for _, s := range []uint{32, 16, 8, 4, 2, 1} {
		if ns >= 1<<s {
			ns >>= s
			b += int(s)
		}
	}
	return b
}
