// Package latency owns the measurement of the harm itself: how long a raised
// NET_RX softirq waits before it runs, per CPU, measured in the kernel.
//
// Two raw tracepoint programs (irq:softirq_raise and irq:softirq_entry, vector
// NET_RX) keep, per CPU, for one raise in SampleEvery (a uniform sample: the
// clock read is most of their cost), the time of the first raise not yet served and a log2
// histogram of raise→entry delays in nanoseconds (bucket i counts delays d
// with 2^i <= d < 2^(i+1); bucket 0 also holds 0 and 1 ns) plus the largest
// delay. The programs are built in Go with cilium/ebpf's asm package, so
// building nodekeeper needs no clang and there is no generated object to keep
// in step; raw tracepoints need neither tracefs nor the kernel's BTF.
//
// The user-space side reads the per-CPU maps (a few hundred bytes per CPU)
// once per window and turns the difference between two reads into p50, p99
// and max per CPU (Stats), and Judge turns those into the `check latency`
// verdict. Where the programs cannot be loaded or attached (no CAP_BPF or
// CAP_PERFMON, an old kernel, a sandbox), Open returns an error that the check
// reports as source "unavailable" and status unknown — never a problem.
package latency
