package latency

import (
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// BenchmarkProbeOverhead measures what the attached programs cost per
// event: each iteration sends one loopback datagram (one NET_RX raise and
// one softirq entry, and the other softirqs the machine runs meanwhile); the
// kernel's eBPF statistics give each program's run time and count. Reported:
// ns per raise and per entry, and the share of one CPU the probes take at
// 100 000 NET_RX softirqs per second (the target: at most 2 %).
//
//	go test -run '^$' -bench ProbeOverhead ./internal/latency   (as root)
func BenchmarkProbeOverhead(b *testing.B) {
	layer.Root(b)
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Skipf("eBPF run-time statistics: %v", err)
	}
	defer stats.Close()
	p, err := Open()
	if err != nil {
		b.Skipf("cannot attach the eBPF programs: %v", err)
	}
	defer p.Close()
	tx, done, err := loopbackSender()
	if err != nil {
		b.Fatal(err)
	}
	defer done()
	before, err := p.RunStats()
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 64)
	b.ResetTimer()
	for b.Loop() {
		_, _ = tx.Write(msg)
	}
	b.StopTimer()
	after, err := p.RunStats()
	if err != nil {
		b.Fatal(err)
	}
	per := map[string]float64{}
	for name := range after {
		n := after[name].RunCount - before[name].RunCount
		if n == 0 {
			b.Fatalf("program %s never ran", name)
		}
		per[name] = float64(after[name].Runtime-before[name].Runtime) / float64(n)
	}
	b.ReportMetric(per["raise"], "ns/raise")
	b.ReportMetric(per["entry"], "ns/entry")
	// Every softirq raise and entry runs a program (the NET_RX filter is
	// inside it); at 100 000 NET_RX softirqs/s, each with its raise and its
	// entry, the share of one CPU is:
	b.ReportMetric(100_000*(per["raise"]+per["entry"])/1e9*100, "%cpu@100k/s")
}

// BenchmarkLoopbackSendWithProbes is the A/B side of the overhead: one
// loopback datagram per iteration (one NET_RX raise and entry, processed in
// the sender's context) with the programs detached and attached, without
// the kernel's statistics (which add their own clock reads). The difference
// of the two ns/op is the probes' cost per NET_RX softirq.
//
//	go test -run '^$' -bench LoopbackSendWithProbes -count 6 ./internal/latency | benchstat -   (as root)
func BenchmarkLoopbackSendWithProbes(b *testing.B) {
	layer.Root(b)
	for _, attached := range []bool{false, true} {
		name := "probes=off"
		if attached {
			name = "probes=on"
		}
		b.Run(name, func(b *testing.B) {
			if attached {
				p, err := Open()
				if err != nil {
					b.Skipf("cannot attach the eBPF programs: %v", err)
				}
				defer p.Close()
			}
			tx, done, err := loopbackSender()
			if err != nil {
				b.Fatal(err)
			}
			defer done()
			msg := make([]byte, 64)
			for b.Loop() {
				_, _ = tx.Write(msg)
			}
		})
	}
}
