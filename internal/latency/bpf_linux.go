package latency

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// netRxSoftirq is NET_RX_SOFTIRQ's vector number (include/linux/interrupt.h).
const netRxSoftirq = 3

// SampleEvery: one NET_RX softirq in SampleEvery (a power of two) is timed;
// the percentiles are those of a uniform sample, and a Stat's Samples counts
// the timed ones.
const SampleEvery = 8

// maxKey is the key of the per-CPU largest delay in the histogram map.
const maxKey = NumBuckets

// Probe is the loaded and attached pair of programs.
type Probe struct {
	coll  *ebpf.Collection
	links []link.Link
}

// Open loads both programs and attaches them to the raw tracepoints. The
// error says why when the kernel or the process's capabilities do not allow
// it (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on older kernels).
func Open() (*Probe, error) {
	coll, err := loadRaisingMemlock(func() (*ebpf.Collection, error) { return ebpf.NewCollection(spec()) }, raiseMemlock)
	if err != nil {
		return nil, fmt.Errorf("cannot load the softirq latency programs: %w", err)
	}
	p := &Probe{coll: coll}
	for _, tp := range []struct{ name, prog string }{{"softirq_raise", "raise"}, {"softirq_entry", "entry"}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: coll.Programs[tp.prog]})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("cannot attach to the %s tracepoint: %w", tp.name, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

// loadRaisingMemlock loads, and when the kernel refuses with EPERM raises
// the locked-memory limit once and loads again. Kernels before 5.11 charge
// eBPF maps to RLIMIT_MEMLOCK and refuse them with EPERM past it; later ones
// charge the memory cgroup and never need this.
//
// cilium/ebpf's rlimit package does the same, but decides at package
// initialisation by creating a map with the limit lowered to zero: that bpf()
// call and two prlimit() calls would run in every nodekeeper process,
// including each `check` node-problem-detector starts every minute, whether
// it measures latency or not. Here the limit is touched only when a load was
// refused.
func loadRaisingMemlock[T any](load func() (T, error), raise func() error) (T, error) {
	v, err := load()
	if err == nil || !errors.Is(err, unix.EPERM) {
		return v, err
	}
	if rerr := raise(); rerr != nil {
		return v, fmt.Errorf("%w (and raising the locked-memory limit failed: %v)", err, rerr)
	}
	return load()
}

// raiseMemlock lifts RLIMIT_MEMLOCK to infinity; it fails when the limit is
// already infinite (EPERM then has another cause) or without
// CAP_SYS_RESOURCE to raise the hard limit.
func raiseMemlock() error {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l); err != nil {
		return err
	}
	if l.Cur == unix.RLIM_INFINITY {
		return errors.New("it is already unlimited")
	}
	return unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
}

// Close detaches the programs and frees the maps.
func (p *Probe) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.coll.Close()
	return errors.Join(errs...)
}

// Read returns every possible CPU's counters and resets the per-CPU largest
// delay, so that the next read's maximum belongs to its own window.
func (p *Probe) Read() ([]CPUCounts, error) {
	m := p.coll.Maps["hist"]
	var out []CPUCounts
	var vals []uint64
	for key := uint32(0); key <= maxKey; key++ {
		if err := m.Lookup(key, &vals); err != nil {
			return nil, fmt.Errorf("cannot read the softirq latency histogram: %w", err)
		}
		if out == nil {
			out = make([]CPUCounts, len(vals))
		}
		for cpu, v := range vals[:min(len(vals), len(out))] {
			if key == maxKey {
				out[cpu].MaxNS = v
			} else {
				out[cpu].Buckets[key] = v
			}
		}
	}
	zero := make([]uint64, len(out))
	if err := m.Put(uint32(maxKey), zero); err != nil {
		return nil, fmt.Errorf("cannot reset the softirq latency maximum: %w", err)
	}
	return out, nil
}

// spec is the two programs and their maps. Registers: R1 the raw tracepoint
// context (args[0] is the softirq vector), R6–R9 survive helper calls.
func spec() *ebpf.CollectionSpec {
	exit := []asm.Instruction{asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"), asm.Return()}
	lookup := func(mapName string, keyOff int16) []asm.Instruction {
		return []asm.Instruction{
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, int32(keyOff)),
			asm.LoadMapPtr(asm.R1, 0).WithReference(mapName),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
		}
	}
	netRxOnly := []asm.Instruction{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),
		asm.JNE.Imm(asm.R2, netRxSoftirq, "exit"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
	}

	// raise: remember when NET_RX was first raised on this CPU and not yet
	// served, for one raise in SampleEvery (a per-CPU count next to the
	// time picks them): the clock read is most of the programs' cost, and
	// an unsampled softirq's entry then returns at once. The pending value
	// is {raise time, count}.
	raise := append(asm.Instructions{}, netRxOnly...)
	raise = append(raise, lookup("pending", -4)...)
	raise = append(raise,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "exit"), // an earlier raise still waits: keep its time
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
		asm.And.Imm(asm.R1, SampleEvery-1),
		asm.JNE.Imm(asm.R1, 0, "exit"),
		asm.Mov.Reg(asm.R6, asm.R0),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.R6, 0, asm.R0, asm.DWord),
	)
	raise = append(raise, exit...)

	// entry: the softirq runs now; count now − raise in its log2 bucket.
	entry := append(asm.Instructions{}, netRxOnly...)
	entry = append(entry, lookup("pending", -4)...)
	entry = append(entry,
		asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "exit"), // raised before the programs were attached
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord), // served
		asm.FnKtimeGetNs.Call(),
		asm.JLT.Reg(asm.R0, asm.R7, "exit"),
		asm.Sub.Reg(asm.R0, asm.R7),
		asm.Mov.Reg(asm.R6, asm.R0), // R6 = delay in ns
		asm.Mov.Imm(asm.R8, 0),      // R8 = floor(log2(delay))
		asm.Mov.Reg(asm.R9, asm.R6),
	)
	shifts := []int32{32, 16, 8, 4, 2, 1}
	for i, s := range shifts {
		next := fmt.Sprintf("log2_%d", i+1)
		ld := asm.LoadImm(asm.R1, int64(1)<<s, asm.DWord)
		if i > 0 {
			ld = ld.WithSymbol(fmt.Sprintf("log2_%d", i))
		}
		entry = append(entry, ld,
			asm.JLT.Reg(asm.R9, asm.R1, next),
			asm.RSh.Imm(asm.R9, s),
			asm.Add.Imm(asm.R8, s),
		)
	}
	entry = append(entry, asm.StoreMem(asm.RFP, -8, asm.R8, asm.Word).WithSymbol(fmt.Sprintf("log2_%d", len(shifts))))
	entry = append(entry, lookup("hist", -8)...)
	entry = append(entry,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.StoreImm(asm.RFP, -8, maxKey, asm.Word),
	)
	entry = append(entry, lookup("hist", -8)...)
	entry = append(entry,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JGE.Reg(asm.R1, asm.R6, "exit"),
		asm.StoreMem(asm.R0, 0, asm.R6, asm.DWord),
	)
	entry = append(entry, exit...)

	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			"pending": {Name: "nk_rx_pending", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1},
			"hist":    {Name: "nk_rx_hist", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: maxKey + 1},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			"raise": {Name: "nk_rx_raise", Type: ebpf.RawTracepoint, License: "GPL", Instructions: raise},
			"entry": {Name: "nk_rx_entry", Type: ebpf.RawTracepoint, License: "GPL", Instructions: entry},
		},
	}
}

// RunStats returns each program's cumulative run time and run count, as the
// kernel counts them while eBPF statistics are enabled (ebpf.EnableStats):
// the probes' own cost per event.
func (p *Probe) RunStats() (map[string]*ebpf.ProgramStats, error) {
	out := map[string]*ebpf.ProgramStats{}
	for name, prog := range p.coll.Programs {
		s, err := prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}
