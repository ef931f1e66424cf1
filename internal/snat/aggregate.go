package snat

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
)

// IP protocol numbers counted: Azure spends SNAT ports for TCP and UDP only.
const (
	protoTCP = 6
	protoUDP = 17
)

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	}
	return "?"
}

// builtinPrivate are destinations that never spend SNAT ports: RFC 1918,
// shared address space (100.64.0.0/10), link-local, loopback, multicast, and
// their IPv6 counterparts (unique local, link-local, loopback, multicast).
var builtinPrivate = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("ff00::/8"),
}

// Bounds of the aggregation maps: whatever the table's size, memory stays
// below a few MB. Flows past a bound are counted in Untracked; keys are
// fixed-size and pointer-free so the garbage collector never scans the maps.
const (
	MaxDestinations = 1 << 16
	MaxSources      = 1 << 14
	MaxPairs        = 1 << 15
)

type addr16 = [16]byte

type destKey struct {
	ip    addr16
	port  uint16 // 0 for UDP: one port per destination IP
	proto uint8
}

type pairKey struct {
	src addr16
	dst destKey
}

// Aggregator counts a stream of conntrack flows the way Azure spends SNAT
// ports. Add it as the dump's callback; it keeps nothing of a flow beyond
// the counts.
type Aggregator struct {
	private []netip.Prefix
	dests   map[destKey]int32
	srcs    map[addr16]int32
	pairs   map[pairKey]int32

	Entries   int // every entry seen
	Public    int // TCP and UDP entries towards a public destination
	Untracked int // public entries past a map bound (counted, not grouped)
}

// NewAggregator counts towards the built-in private ranges plus extra.
func NewAggregator(extraPrivate []netip.Prefix) *Aggregator {
	return &Aggregator{
		private: append(slices.Clip(builtinPrivate), extraPrivate...),
		dests:   make(map[destKey]int32),
		srcs:    make(map[addr16]int32),
		pairs:   make(map[pairKey]int32),
	}
}

// Private reports whether a destination spends no SNAT port.
func (a *Aggregator) Private(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.private {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Add counts one flow.
func (a *Aggregator) Add(f *conntrack.Flow) {
	a.Entries++
	if f.Proto != protoTCP && f.Proto != protoUDP {
		return
	}
	if a.Private(f.Orig.Dst) {
		return
	}
	a.Public++
	d := destKey{ip: f.Orig.Dst.Unmap().As16(), proto: f.Proto}
	if f.Proto == protoTCP {
		d.port = f.Orig.DstPort
	}
	src := f.Orig.Src.Unmap().As16()
	if !inc(a.dests, d, MaxDestinations) {
		a.Untracked++
		return
	}
	if inc(a.srcs, src, MaxSources) {
		inc(a.pairs, pairKey{src: src, dst: d}, MaxPairs)
	}
}

func inc[K comparable](m map[K]int32, k K, bound int) bool {
	if n, ok := m[k]; ok {
		m[k] = n + 1
		return true
	}
	if len(m) >= bound {
		return false
	}
	m[k] = 1
	return true
}

// Destination is one group of flows that each need their own SNAT port.
type Destination struct {
	Proto string     `json:"proto"`
	IP    netip.Addr `json:"ip"`
	Port  uint16     `json:"port"` // 0 for UDP (counted per destination IP)
	Flows int        `json:"flows"`
}

// Source is one source address of public flows and who holds it.
type Source struct {
	IP             netip.Addr   `json:"ip"`
	Kind           string       `json:"kind"` // pod | host | unknown
	Namespace      string       `json:"namespace"`
	Pod            string       `json:"pod"`
	PID            int          `json:"pid"`
	NetNS          uint64       `json:"netns"`
	Flows          int          `json:"flows"`
	TopDestination *Destination `json:"top_destination"`
}

// Summary is what an aggregation found.
type Summary struct {
	Entries, Public, Untracked int
	// Demand is the largest group per protocol ("tcp", "udp").
	Demand map[string]int
	// Destinations and Sources are the top ones by flows, at most limit each.
	Destinations []Destination
	Sources      []Source // IP, Flows and TopDestination set; attribution is the caller's
}

func dest(k destKey, n int32) Destination {
	return Destination{Proto: protoName(k.proto), IP: netip.AddrFrom16(k.ip).Unmap(), Port: k.port, Flows: int(n)}
}

// Summary returns the demand and the top limit destinations and sources.
func (a *Aggregator) Summary(limit int) Summary {
	s := Summary{Entries: a.Entries, Public: a.Public, Untracked: a.Untracked,
		Demand: map[string]int{"tcp": 0, "udp": 0}}
	for k, n := range a.dests {
		if p := protoName(k.proto); int(n) > s.Demand[p] {
			s.Demand[p] = int(n)
		}
	}
	dk := topN(a.dests, limit, func(x, y destKey) int {
		return cmp.Or(slices.Compare(x.ip[:], y.ip[:]), cmp.Compare(x.port, y.port), cmp.Compare(x.proto, y.proto))
	})
	for _, k := range dk {
		s.Destinations = append(s.Destinations, dest(k, a.dests[k]))
	}
	sk := topN(a.srcs, limit, func(x, y addr16) int { return slices.Compare(x[:], y[:]) })
	if len(sk) == 0 {
		return s
	}
	index := make(map[addr16]int, len(sk))
	for i, k := range sk {
		index[k] = i
		s.Sources = append(s.Sources, Source{IP: netip.AddrFrom16(k).Unmap(), Flows: int(a.srcs[k])})
	}
	best := make([]pairKey, len(sk))
	bestN := make([]int32, len(sk))
	for k, n := range a.pairs {
		i, ok := index[k.src]
		if !ok {
			continue
		}
		if n > bestN[i] || (n == bestN[i] && lessDest(k.dst, best[i].dst)) {
			best[i], bestN[i] = k, n
		}
	}
	for i := range s.Sources {
		if bestN[i] > 0 {
			d := dest(best[i].dst, bestN[i])
			s.Sources[i].TopDestination = &d
		}
	}
	return s
}

func lessDest(x, y destKey) bool {
	return cmp.Or(slices.Compare(x.ip[:], y.ip[:]), cmp.Compare(x.port, y.port), cmp.Compare(x.proto, y.proto)) < 0
}

// topN returns the keys of the limit largest counts, largest first, ties in
// key order so the output is stable.
func topN[K comparable](m map[K]int32, limit int, keyCmp func(a, b K) int) []K {
	if limit <= 0 {
		return nil
	}
	type kv struct {
		k K
		n int32
	}
	all := make([]kv, 0, len(m))
	for k, n := range m {
		all = append(all, kv{k, n})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), keyCmp(a.k, b.k)) })
	out := make([]K, min(limit, len(all)))
	for i := range out {
		out[i] = all[i].k
	}
	return out
}
