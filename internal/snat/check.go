package snat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
)

// Report is `check snat`'s answer (DESIGN.md "Outbound path").
type Report struct {
	check.Verdict
	AllocatedPorts   int           `json:"allocated_ports"`
	AllocatedSource  string        `json:"allocated_source"`
	DemandPorts      int           `json:"demand_ports"`
	Utilization      float64       `json:"utilization"`
	PublicFlows      int           `json:"public_flows"`
	Destinations     []Destination `json:"destinations"`
	Sources          []Source      `json:"sources"`
	ConntrackEntries int           `json:"conntrack_entries"`

	// Outside the contract's JSON: for metrics and logs.
	DemandByProto map[string]int `json:"-"` // "tcp", "udp"
	Skipped       int            `json:"-"` // entries without the attributes a flow needs
	Untracked     int            `json:"-"` // public flows past the aggregation bounds
	Err           error          `json:"-"` // why the table could not be read (status unknown)
}

// Dumper streams the conntrack table (conntrack.Dump, or a fake).
type Dumper func(ctx context.Context, f conntrack.Filter, fn func(*conntrack.Flow)) (conntrack.Stats, error)

// OwnerResolver attributes source addresses (*Resolver, or a fake).
type OwnerResolver interface {
	Resolve(ctx context.Context, ips []netip.Addr) (map[netip.Addr]Owner, error)
}

// DefaultLimit is how many destinations and sources a report lists.
const DefaultLimit = 10

// Scanner runs the check: one dump, aggregated as it streams, the top
// sources attributed, the verdict.
type Scanner struct {
	Dump     Dumper
	Resolver OwnerResolver // nil: every source unknown
	Limit    int           // top destinations and sources (DefaultLimit when 0)
}

// ErrFixtureRoots: the conntrack table is the running kernel's, never a
// file, so under fixture roots (--path.* not the live /proc and /sys) there
// is none to read.
var ErrFixtureRoots = errors.New("no conntrack table under fixture roots (--path.sysfs is not /sys)")

// NewScanner is the scanner of the host behind h: the kernel's table through
// netlink, sources attributed through h's /proc and kubelet's pod logs.
func NewScanner(h *hostfs.FS, now func() time.Time, limit int) Scanner {
	dump := Dumper(conntrack.Dump)
	if !h.Live() {
		dump = func(context.Context, conntrack.Filter, func(*conntrack.Flow)) (conntrack.Stats, error) {
			return conntrack.Stats{}, ErrFixtureRoots
		}
	}
	return Scanner{Dump: dump, Resolver: NewResolver(h, now), Limit: limit}
}

// dumpAttempts bounds the retries of a dump the kernel flagged as
// interrupted (the table changed under it): a fresh dump usually completes.
const dumpAttempts = 3

// Run scans the table and judges it with cfg.
func (s Scanner) Run(ctx context.Context, cfg Config) *Report {
	limit := s.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	var agg *Aggregator
	var st conntrack.Stats
	var err error
	// One full dump: a flow spends a port whether the node masquerades it
	// or not (Azure CNI pod addresses are not), so every entry is needed.
	// Splitting it with the kernel's status filter (SRC_NAT, then the rest)
	// walks the table twice for the same entries: measured on 250 k real
	// entries (BenchmarkKernelTable250k) 0.57–0.80 s of CPU against
	// 0.52–0.72 s for one dump, the same ~4 MiB.
	for range dumpAttempts {
		agg = NewAggregator(cfg.PrivateCIDRs)
		st, err = s.Dump(ctx, conntrack.Filter{}, agg.Add)
		if conntrack.KindOf(err) != conntrack.Interrupted || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		r := unknown(cfg, err.Error())
		r.Err = err
		return r
	}
	sum := agg.Summary(limit)
	var owners map[netip.Addr]Owner
	if s.Resolver != nil && len(sum.Sources) > 0 {
		ips := make([]netip.Addr, len(sum.Sources))
		for i, src := range sum.Sources {
			ips[i] = src.IP
		}
		// A failed walk leaves the sources unknown; the ports are judged anyway.
		owners, _ = s.Resolver.Resolve(ctx, ips)
	}
	r := Judge(cfg, sum, owners)
	r.Skipped = st.Skipped
	return r
}

func unknown(cfg Config, reason string) *Report {
	ports, src := cfg.Budget()
	return &Report{Verdict: check.Verdict{Check: CheckName, Status: check.Unknown, Message: check.Short(reason)},
		AllocatedPorts: ports, AllocatedSource: src, Destinations: []Destination{}, Sources: []Source{}}
}

// Judge is the pure verdict: demand against the budget, sources named.
func Judge(cfg Config, sum Summary, owners map[netip.Addr]Owner) *Report {
	ports, src := cfg.Budget()
	r := &Report{
		Verdict:          check.Verdict{Check: CheckName, Status: check.OK},
		AllocatedPorts:   ports,
		AllocatedSource:  src,
		PublicFlows:      sum.Public,
		Destinations:     append([]Destination{}, sum.Destinations...),
		Sources:          make([]Source, len(sum.Sources)),
		ConntrackEntries: sum.Entries,
		DemandByProto:    sum.Demand,
		Untracked:        sum.Untracked,
	}
	for _, n := range sum.Demand {
		r.DemandPorts = max(r.DemandPorts, n)
	}
	r.Utilization = float64(r.DemandPorts) / float64(ports)
	for i, s := range sum.Sources {
		o, ok := owners[s.IP]
		if !ok {
			o = Owner{Kind: KindUnknown}
		}
		s.Kind, s.Namespace, s.Pod, s.PID, s.NetNS = o.Kind, o.Namespace, o.Pod, o.PID, o.NetNS
		r.Sources[i] = s
	}
	if r.Utilization >= cfg.WarnRatio {
		r.Status = check.Problem
	}
	r.Message = message(r)
	return r
}

// message is the one line: ports used of the budget, the worst destination,
// the top source; the source's name is cut first when the line is too long.
func message(r *Report) string {
	pct := int(r.Utilization*100 + 0.5)
	head := fmt.Sprintf("SNAT %d/%d ports (%d%%)", r.DemandPorts, r.AllocatedPorts, pct)
	if len(r.Destinations) == 0 {
		return check.Short(head + ": no public flows")
	}
	head += " to " + DestString(r.Destinations[0])
	if len(r.Sources) == 0 {
		return check.Short(head)
	}
	return check.Short(head + "; top " + SourceName(r.Sources[0]))
}

// DestString shows a destination as a person reads it: 20.1.2.3:443/tcp, 20.1.2.3/udp.
func DestString(d Destination) string {
	if d.Proto == "udp" {
		return d.IP.String() + "/udp"
	}
	return netip.AddrPortFrom(d.IP, d.Port).String() + "/" + d.Proto
}

// SourceName names a source: namespace/pod, "host", or "unknown <ip>".
func SourceName(s Source) string {
	switch {
	case s.Kind == KindPod && s.Namespace != "":
		return s.Namespace + "/" + s.Pod
	case s.Kind == KindPod:
		return "pod " + s.Pod
	case s.Kind == KindHost:
		return "host"
	case s.PID > 0:
		return s.IP.String() + " (pid " + strconv.Itoa(s.PID) + ")"
	}
	return "unknown " + s.IP.String()
}
