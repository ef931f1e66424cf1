package snat_test

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/conntrack/cttest"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/vishvananda/netlink"
)

// cost is what one way of reading the table spent: CPU of the whole process
// (user + system: the kernel's share of the dump runs in our system time)
// and the peak resident memory above where it started.
type cost struct {
	cpu   time.Duration
	extra float64 // MiB
}

func procStatusKB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return n
		}
	}
	return 0
}

func measure(b *testing.B, fn func()) cost {
	runtime.GC()
	debug.FreeOSMemory()
	// Reset the peak (VmHWM) to the current resident size.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
	rss := procStatusKB("VmRSS")
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	fn()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano()-r0.Utime.Nano()) + time.Duration(r1.Stime.Nano()-r0.Stime.Nano())
	return cost{cpu: cpu, extra: (procStatusKB("VmHWM") - rss) / 1024}
}

// BenchmarkKernelTable250k reads a real 250 k-entry conntrack table (made
// through ctnetlink in a network namespace the benchmark creates) three
// ways: one streamed dump aggregated as it arrives (what the check does);
// two streamed dumps split by the kernel's SRC_NAT status filter; and the
// library's list call, for comparison. Run it alone (-benchtime 1x): the
// metrics are per read.
func BenchmarkKernelTable250k(b *testing.B) {
	cttest.InNewNetNS(b, func() {
		flows := cttest.LabFlows(227_273) // + one UDP flow in ten: 250 001 entries
		start := time.Now()
		if err := cttest.Create(flows); err != nil {
			b.Fatal(err)
		}
		b.Logf("created %d entries in %v", len(flows), time.Since(start).Round(time.Millisecond))
		n := len(flows)
		flows = nil
		ctx := context.Background()
		for b.Loop() {
			var full, split, list cost
			var entries int
			full = measure(b, func() {
				a := snat.NewAggregator(nil)
				if _, err := conntrack.Dump(ctx, conntrack.Filter{}, a.Add); err != nil {
					b.Fatal(err)
				}
				entries = a.Summary(10).Entries
			})
			if entries != n {
				b.Fatalf("dumped %d entries, want %d", entries, n)
			}
			split = measure(b, func() {
				a := snat.NewAggregator(nil)
				for _, f := range []conntrack.Filter{
					{Status: conntrack.StatusSrcNAT, StatusMask: conntrack.StatusSrcNAT},
					{Status: 0, StatusMask: conntrack.StatusSrcNAT},
				} {
					if _, err := conntrack.Dump(ctx, f, a.Add); err != nil {
						b.Fatal(err)
					}
				}
				if got := a.Summary(10).Entries; got != n {
					b.Fatalf("split dumps: %d entries, want %d", got, n)
				}
			})
			list = measure(b, func() {
				fl, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_ALL)
				if err != nil || len(fl) != n {
					b.Fatalf("list: %d, %v", len(fl), err)
				}
			})
			b.ReportMetric(full.cpu.Seconds(), "stream-cpu-s")
			b.ReportMetric(full.extra, "stream-extra-MiB")
			b.ReportMetric(split.cpu.Seconds(), "split-cpu-s")
			b.ReportMetric(split.extra, "split-extra-MiB")
			b.ReportMetric(list.cpu.Seconds(), "list-cpu-s")
			b.ReportMetric(list.extra, "list-extra-MiB")
		}
	})
}
