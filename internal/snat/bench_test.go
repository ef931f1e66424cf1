package snat

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
)

// table250k is a synthetic 250 k-entry table: 500 pod addresses, public
// flows to 5 000 endpoints (TCP) and 2 000 resolvers (UDP), one entry in
// three towards private addresses (services, the VNet).
func table250k(distinctDests bool) []conntrack.Flow {
	const n = 250_000
	out := make([]conntrack.Flow, n)
	for i := range out {
		src := netip.AddrFrom4([4]byte{10, 244, byte(i % 500 / 250), byte(i % 250)})
		var f conntrack.Flow
		switch {
		case i%3 == 0:
			f = tcp(src, uint16(i), "10.0.0.10", 443)
		case i%7 == 0:
			f = udp(src, uint16(i), "8.8.8.8", 53)
			f.Orig.Dst = netip.AddrFrom4([4]byte{52, 1, byte(i % 2000 >> 8), byte(i % 2000)})
		default:
			f = tcp(src, uint16(i), "20.0.0.1", 443)
			d := i % 5000
			if distinctDests {
				d = i
			}
			f.Orig.Dst = netip.AddrFrom4([4]byte{20, byte(d >> 16), byte(d >> 8), byte(d)})
		}
		out[i] = f
	}
	return out
}

// BenchmarkAggregate250k measures the aggregation path of one dump (every
// entry through Add, then the top 10): time per table, the heap allocated
// during it (extra-MiB, garbage included: the peak's bound) and the heap
// still held by the aggregation afterwards (kept-MiB).
func BenchmarkAggregate250k(b *testing.B) {
	for _, c := range []struct {
		name     string
		distinct bool
	}{{"5000-destinations", false}, {"all-distinct-destinations", true}} {
		b.Run(c.name, func(b *testing.B) {
			table := table250k(c.distinct)
			var extra, kept float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				a := NewAggregator(nil)
				for i := range table {
					a.Add(&table[i])
				}
				s := a.Summary(10)
				runtime.ReadMemStats(&after)
				var live runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&live)
				kept = max(kept, float64(live.HeapAlloc-before.HeapAlloc)/(1<<20))
				extra = max(extra, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))
				if s.Entries != len(table) {
					b.Fatal(s.Entries)
				}
				runtime.KeepAlive(a)
			}
			b.ReportMetric(extra, "extra-MiB")
			b.ReportMetric(kept, "kept-MiB")
		})
	}
}
