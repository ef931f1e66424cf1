package ctdrops

import (
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
)

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

var cfg = Config{Enabled: "auto", Window: time.Minute, FillProblem: 0.9}

func sample(at time.Duration, entries, max uint64, cpus ...conntrack.CPUStats) Sample {
	return Sample{At: t0.Add(at), Source: "netlink", CPUs: cpus, Entries: entries, Max: max, TableFull: -1}
}

func cpu(n int, c conntrack.Counters) conntrack.CPUStats {
	return conntrack.CPUStats{CPU: n, Counters: c}
}

func TestJudge(t *testing.T) {
	quiet := []conntrack.CPUStats{cpu(0, conntrack.Counters{Drop: 5, InsertFailed: 2}), cpu(1, conntrack.Counters{EarlyDrop: 1})}
	for _, tc := range []struct {
		name       string
		prev, cur  Sample
		status     check.Status
		msg        string
		resets     string
		drop, insf float64
	}{
		{"quiet", sample(0, 100, 1000, quiet...), sample(time.Minute, 120, 1000, quiet...), check.OK, "conntrack 12% full, no drops in 60s", "", 0, 0},
		{"fill just under", sample(0, 100, 1000, quiet...), sample(time.Minute, 899, 1000, quiet...), check.OK, "90% full", "", 0, 0},
		{"fill at the limit", sample(0, 100, 1000, quiet...), sample(time.Minute, 900, 1000, quiet...), check.Problem, "table 90% full (900 of 1000)", "", 0, 0},
		{"drops", sample(0, 10, 1000, quiet...),
			sample(time.Minute, 10, 1000, cpu(0, conntrack.Counters{Drop: 65, InsertFailed: 2}), cpu(1, conntrack.Counters{EarlyDrop: 1})),
			check.Problem, "dropping 1/s", "", 1, 0},
		{"insert failed", sample(0, 10, 1000, quiet...),
			sample(time.Minute, 10, 1000, cpu(0, conntrack.Counters{Drop: 5, InsertFailed: 32}), cpu(1, conntrack.Counters{EarlyDrop: 1})),
			check.Problem, "insert_failed 0.5/s", "", 0, 0.5},
		{"clash resolved is not a problem", sample(0, 10, 1000, quiet...),
			sample(time.Minute, 10, 1000, cpu(0, conntrack.Counters{Drop: 5, InsertFailed: 2, ClashResolve: 600}), cpu(1, conntrack.Counters{EarlyDrop: 1})),
			check.OK, "no drops", "", 0, 0},
		{"counter went backwards", sample(0, 10, 1000, quiet...),
			sample(time.Minute, 10, 1000, cpu(0, conntrack.Counters{Drop: 1}), cpu(1, conntrack.Counters{EarlyDrop: 1})),
			check.OK, "no drops", "drop,insert_failed", 0, 0},
		{"a CPU came online with counts", sample(0, 10, 1000, quiet...),
			sample(time.Minute, 10, 1000, append(quiet, cpu(2, conntrack.Counters{Drop: 1000}))...),
			check.OK, "no drops", "", 0, 0},
		{"a CPU went away", sample(0, 10, 1000, quiet...), sample(time.Minute, 10, 1000, quiet[0]), check.OK, "no drops", "", 0, 0},
		{"max unknown", sample(0, 10, 0, quiet...), sample(time.Minute, 10, 0, quiet...), check.OK, "conntrack: 10 entries, no drops in 60s", "", 0, 0},
		{"no window", sample(time.Minute, 10, 100, quiet...), sample(time.Minute, 10, 100, quiet...), check.Unknown, "no window", "", 0, 0},
	} {
		r := Judge(cfg, tc.prev, tc.cur)
		if r.Status != tc.status || !strings.Contains(r.Message, tc.msg) {
			t.Errorf("%s: %s %q, want %s containing %q", tc.name, r.Status, r.Message, tc.status, tc.msg)
		}
		if got := strings.Join(r.Resets, ","); got != tc.resets {
			t.Errorf("%s: resets %q, want %q", tc.name, got, tc.resets)
		}
		if r.Rates.Drop != tc.drop && tc.status != check.Unknown || r.Rates.InsertFailed != tc.insf {
			t.Errorf("%s: rates %+v", tc.name, r.Rates)
		}
		if len(r.Message) > 0 && check.Short(r.Message) == "" {
			t.Errorf("%s: empty short message", tc.name)
		}
	}
}

func TestJudgeUDPAndKernelLog(t *testing.T) {
	prev := sample(0, 10, 1000)
	prev.HostUDP, prev.HasHostUDP = UDP{RcvbufErrors: 100}, true
	prev.DNS = []PodUDP{{Name: "kube-system/coredns-abc", PID: 40, UDP: UDP{RcvbufErrors: 5}}, {Name: "coredns", PID: 50}}
	prev.TableFull = 3
	cur := prev
	cur.At = t0.Add(10 * time.Second)
	cur.HostUDP = UDP{RcvbufErrors: 150}
	cur.DNS = []PodUDP{{Name: "kube-system/coredns-abc", PID: 40, UDP: UDP{RcvbufErrors: 25}}, {Name: "coredns", PID: 50},
		{Name: "kube-system/new", PID: 60, UDP: UDP{RcvbufErrors: 1e6}}}
	r := Judge(cfg, prev, cur)
	if r.Rates.UDPRcvbufErrors != 5 {
		t.Errorf("host rcvbuf rate %v, want 5", r.Rates.UDPRcvbufErrors)
	}
	if len(r.DNSPods) != 3 || r.DNSPods[0].UDPRcvbufErrors != 2 || r.DNSPods[2].UDPRcvbufErrors != 0 {
		t.Errorf("dns pods %+v: want 2/s for coredns-abc and nothing for a pod first seen now", r.DNSPods)
	}
	if r.Status != check.Problem || !strings.Contains(r.Message, "DNS pod drops UDP: kube-system/coredns-abc") {
		t.Errorf("%s %q", r.Status, r.Message)
	}
	if r.TableFullLines != 0 {
		t.Errorf("table full lines %d", r.TableFullLines)
	}
	cur.TableFull = 5
	cur.DNS = prev.DNS
	if r := Judge(cfg, prev, cur); r.TableFullLines != 2 || r.Status != check.Problem || !strings.Contains(r.Message, "kernel said table full 2×") {
		t.Errorf("kernel lines: %d %s %q", r.TableFullLines, r.Status, r.Message)
	}
	prev.TableFull, cur.TableFull = -1, 7
	if r := Judge(cfg, prev, cur); r.TableFullLines != -1 {
		t.Errorf("kernel log unreadable before: %d, want -1", r.TableFullLines)
	}
}
