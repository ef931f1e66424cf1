package symptoms

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// The parsers below work on the bytes of one read, append into caller-owned
// slices and allocate nothing on the way (the watcher runs them every few
// seconds on nodes with hundreds of CPUs). They accept what the kernels print
// and reject anything else with an error wrapping ErrFormat.

// ErrFormat is wrapped by every parse error.
var ErrFormat = errors.New("unexpected file format")

func formatErr(file string, line int, why string) error {
	return fmt.Errorf("%w: %s line %d: %s", ErrFormat, file, line, why)
}

// isSpace reports the separators the kernel uses between columns.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// field returns the next space-separated field of line at or after i, and
// the index just past it; an empty field at the end of the line.
func field(line []byte, i int) (f []byte, next int) {
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	j := i
	for j < len(line) && !isSpace(line[j]) {
		j++
	}
	return line[i:j], j
}

// nextLine splits b at the first newline.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// dec parses an unsigned decimal number.
func dec(f []byte) (uint64, bool) {
	if len(f) == 0 || len(f) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range f {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// hex32 parses an unsigned hexadecimal number of at most 32 bits.
func hex32(f []byte) (uint32, bool) {
	if len(f) == 0 || len(f) > 8 {
		return 0, false
	}
	var n uint32
	for _, c := range f {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint32(d)
	}
	return n, true
}

// cpuNumber parses a CPU number up to cpuset.MaxCPU.
func cpuNumber(f []byte) (int, bool) {
	n, ok := dec(f)
	if !ok || n > cpuset.MaxCPU {
		return 0, false
	}
	return int(n), true
}

// Kept by hand, not procfs's Stat: procfs misses the tick budget. On the
// 192-CPU fixture (BenchmarkParse192Stat*) procfs's Stat takes 0.9–1.2 ms
// and 2 751 allocations per read (fmt.Sscanf per CPU line, the whole intr
// line parsed into a slice) against 29–40 µs and 1 allocation here; the whole
// tick must stay within 500 µs.

// CPUStat is one "cpuN" line of /proc/stat, in USER_HZ ticks.
type CPUStat struct {
	CPU                                   int
	User, Nice, System, Idle, IOWait, IRQ uint64
	SoftIRQ, Steal, Guest, GuestNice      uint64
}

// Total is the CPU's time in the counted states, steal excluded (time the
// hypervisor gave to someone else is not the CPU's to spend) and guest
// excluded (already in User).
func (c CPUStat) Total() uint64 {
	return c.User + c.Nice + c.System + c.Idle + c.IOWait + c.IRQ + c.SoftIRQ
}

// ParseStat parses the per-CPU lines of /proc/stat into dst[:0], in the
// kernel's order (ascending CPU numbers; only online CPUs are listed). It
// stops at the first line after them, so the long intr line is never
// scanned. Lines with fewer than the four oldest columns are errors; columns
// a kernel does not have are 0.
func ParseStat(b []byte, dst []CPUStat) ([]CPUStat, error) {
	dst = dst[:0]
	lineNo := 0
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		lineNo++
		if !bytes.HasPrefix(line, []byte("cpu")) {
			if len(dst) > 0 {
				break
			}
			continue
		}
		name, i := field(line, 0)
		if len(name) == 3 { // the "cpu" total line
			continue
		}
		cpu, ok := cpuNumber(name[3:])
		if !ok {
			return dst[:0], formatErr("stat", lineNo, "bad CPU number")
		}
		if len(dst) > 0 && cpu <= dst[len(dst)-1].CPU {
			return dst[:0], formatErr("stat", lineNo, "CPU numbers not ascending")
		}
		var v [10]uint64
		n := 0
		for n < len(v) {
			var f []byte
			f, i = field(line, i)
			if len(f) == 0 {
				break
			}
			if v[n], ok = dec(f); !ok {
				return dst[:0], formatErr("stat", lineNo, "bad counter")
			}
			n++
		}
		if n < 4 {
			return dst[:0], formatErr("stat", lineNo, "fewer than 4 counters")
		}
		dst = append(dst, CPUStat{CPU: cpu, User: v[0], Nice: v[1], System: v[2], Idle: v[3], IOWait: v[4],
			IRQ: v[5], SoftIRQ: v[6], Steal: v[7], Guest: v[8], GuestNice: v[9]})
	}
	if len(dst) == 0 {
		return dst, formatErr("stat", lineNo, "no per-CPU lines")
	}
	return dst, nil
}

// Kept by hand, not procfs's NetSoftnetStat: procfs is wrong on kernels that
// print fewer than 13 columns (4.18–5.13): it numbers rows 0, 1, … as CPUs,
// so with an offline CPU every later row lands on the wrong CPU (here row i
// is the i-th online CPU). It also costs 227–414 µs and 1 183 allocations
// against 42–84 µs and 1 allocation here on the 192-CPU fixture
// (BenchmarkParse192Softnet*): with /proc/stat and softirqs in the same
// tick, that alone would take most of the 500 µs budget.

// SoftnetStat is one row of /proc/net/softnet_stat. The kernel keeps these as
// 32-bit counters that wrap.
type SoftnetStat struct {
	CPU         int
	Processed   uint32 // packets taken off the backlog / processed by net_rx_action
	Dropped     uint32 // packets dropped because the backlog queue was full
	TimeSqueeze uint32 // net_rx_action ran out of budget or time with work left
	Columns     int
}

// ParseSoftnet parses /proc/net/softnet_stat into dst[:0]. Kernels print one
// row per online CPU with 15 (6.x), 13 (5.10+) or 11 (4.18+) hex columns
// (older ones fewer: at least 9 are required). From 13 columns on, the 13th is
// the CPU number; with fewer, row i belongs to the i-th online CPU, so online
// (ascending online CPU numbers, as /proc/stat lists them) must have one entry
// per row; nil online numbers rows 0, 1, ….
func ParseSoftnet(b []byte, online []int, dst []SoftnetStat) ([]SoftnetStat, error) {
	dst = dst[:0]
	lineNo := 0
	needMap := false
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		lineNo++
		var cols [16]uint32
		n := 0
		for i := 0; ; {
			var f []byte
			f, i = field(line, i)
			if len(f) == 0 {
				break
			}
			if n == len(cols) {
				return dst[:0], formatErr("softnet_stat", lineNo, "more than 16 columns")
			}
			v, ok := hex32(f)
			if !ok {
				return dst[:0], formatErr("softnet_stat", lineNo, "bad hex counter")
			}
			cols[n] = v
			n++
		}
		if n == 0 {
			continue
		}
		if n < 9 {
			return dst[:0], formatErr("softnet_stat", lineNo, "fewer than 9 columns")
		}
		s := SoftnetStat{Processed: cols[0], Dropped: cols[1], TimeSqueeze: cols[2], Columns: n}
		if n >= 13 {
			if cols[12] > cpuset.MaxCPU {
				return dst[:0], formatErr("softnet_stat", lineNo, "CPU number out of range")
			}
			s.CPU = int(cols[12])
		} else {
			s.CPU = len(dst)
			needMap = true
		}
		dst = append(dst, s)
	}
	if needMap && online != nil {
		if len(online) != len(dst) {
			return dst[:0], fmt.Errorf("%w: softnet_stat has %d rows without CPU numbers for %d online CPUs",
				ErrFormat, len(dst), len(online))
		}
		for i := range dst {
			if dst[i].Columns < 13 {
				dst[i].CPU = online[i]
			}
		}
	}
	return dst, nil
}

// This is the binary's one parser of /proc/softirqs (kubelet.NetRxCounts
// uses it too). Kept by hand, not procfs's Softirqs, because procfs is wrong
// for this use: it ignores the header, so counts are indexed by column, not by
// the CPU the column names, and a missing or short NET_RX row comes back as no
// traffic instead of an error. It would fit the tick budget but costs far
// more: 170–344 µs and 52 allocations per read (every row parsed) against
// 13–15 µs and 1 allocation here on the 192-CPU fixture
// (BenchmarkParse192Softirqs*; a whole tick, BenchmarkTick192, is 167–220 µs).

// IRQCount is one CPU's count of one softirq vector.
type IRQCount struct {
	CPU   int
	Count uint64
}

// ParseSoftirqs returns the per-CPU counts of one vector (e.g. "NET_RX") of
// /proc/softirqs into dst[:0], with the CPU numbers of the header line (the
// kernel lists every possible CPU). The counts are 32-bit in the kernel and
// wrap.
func ParseSoftirqs(b []byte, vector string, dst []IRQCount) ([]IRQCount, error) {
	dst = dst[:0]
	header, b := nextLine(b)
	for i := 0; ; {
		var f []byte
		f, i = field(header, i)
		if len(f) == 0 {
			break
		}
		if len(f) < 4 || string(f[:3]) != "CPU" {
			return dst[:0], formatErr("softirqs", 1, "header is not CPU columns")
		}
		cpu, ok := cpuNumber(f[3:])
		if !ok || (len(dst) > 0 && cpu <= dst[len(dst)-1].CPU) {
			return dst[:0], formatErr("softirqs", 1, "bad CPU column")
		}
		dst = append(dst, IRQCount{CPU: cpu})
	}
	if len(dst) == 0 {
		return dst, formatErr("softirqs", 1, "no CPU columns")
	}
	for lineNo := 2; len(b) > 0; lineNo++ {
		var line []byte
		line, b = nextLine(b)
		label, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok || string(bytes.TrimSpace(label)) != vector {
			continue
		}
		n := 0
		for i := 0; ; {
			var f []byte
			f, i = field(rest, i)
			if len(f) == 0 {
				break
			}
			if n == len(dst) {
				return dst[:0], formatErr("softirqs", lineNo, "more counts than CPU columns")
			}
			v, ok := dec(f)
			if !ok {
				return dst[:0], formatErr("softirqs", lineNo, "bad count")
			}
			dst[n].Count = v
			n++
		}
		if n != len(dst) {
			return dst[:0], formatErr("softirqs", lineNo, "fewer counts than CPU columns")
		}
		return dst, nil
	}
	return dst[:0], fmt.Errorf("%w: softirqs: no %s line", ErrFormat, vector)
}

// Kept by hand, not procfs's Proc.Stat: procfs misses the tick's allocation
// target (TestTick192: at most 40 allocations per tick). A tick reads up to
// three of these files (kubelet and each saturated CPU's ksoftirqd);
// procfs's Proc plus Stat costs 34 allocations and 28–41 µs per read against
// 2 allocations and 7–8 µs here (BenchmarkParse192PidStat*), so three reads
// add about 100 allocations to a tick that makes 16.

// PidStat is the part of /proc/<pid>/stat the watchers use. Times are in
// USER_HZ ticks.
type PidStat struct {
	PID       int
	Comm      string
	State     byte
	PPID      int
	UTime     uint64 // field 14
	STime     uint64 // field 15
	StartTime uint64 // field 22, ticks after boot: tells a reused PID apart
	Processor int    // field 39, the CPU it last ran on; −1 when absent
}

// ParsePidStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses: it runs from the first '(' to the last ')'.
func ParsePidStat(b []byte) (PidStat, error) {
	var s PidStat
	b, _ = nextLine(b)
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return s, formatErr("pid stat", 1, "no (comm)")
	}
	pidField, _ := field(b[:open], 0)
	pid, ok := dec(pidField)
	if !ok || pid > math.MaxInt32 {
		return s, formatErr("pid stat", 1, "bad pid")
	}
	s.PID = int(pid)
	s.Comm = string(b[open+1 : closing])
	s.Processor = -1
	rest := b[closing+1:]
	i := 0
	for n := 3; ; n++ {
		var f []byte
		f, i = field(rest, i)
		if len(f) == 0 {
			if n <= 22 {
				return s, formatErr("pid stat", 1, "fewer than 22 fields")
			}
			return s, nil
		}
		switch n {
		case 3:
			if len(f) != 1 {
				return s, formatErr("pid stat", 1, "bad state")
			}
			s.State = f[0]
		case 4, 14, 15, 22, 39:
			v, ok := dec(f)
			if !ok {
				return s, formatErr("pid stat", 1, fmt.Sprintf("bad field %d", n))
			}
			switch n {
			case 4:
				if v > math.MaxInt32 {
					return s, formatErr("pid stat", 1, "bad ppid")
				}
				s.PPID = int(v)
			case 14:
				s.UTime = v
			case 15:
				s.STime = v
			case 22:
				s.StartTime = v
			case 39:
				if v <= cpuset.MaxCPU {
					s.Processor = int(v)
				}
				return s, nil
			}
		}
	}
}

// Schedstat is /proc/<pid>/schedstat (or a thread's): nanoseconds run on a
// CPU, nanoseconds spent waiting on a run queue, and time slices run.
type Schedstat struct {
	RunNs, WaitNs, Slices uint64
}

// ParseSchedstat parses /proc/<pid>/schedstat.
func ParseSchedstat(b []byte) (Schedstat, error) {
	line, _ := nextLine(b)
	var v [3]uint64
	i := 0
	for n := range v {
		var f []byte
		f, i = field(line, i)
		var ok bool
		if v[n], ok = dec(f); !ok {
			return Schedstat{}, formatErr("schedstat", 1, "want three counters")
		}
	}
	return Schedstat{RunNs: v[0], WaitNs: v[1], Slices: v[2]}, nil
}

// CgroupStat is the root cgroup's cgroup.stat (cgroup v2).
type CgroupStat struct {
	Descendants      uint64 // nr_descendants: live cgroups below the root
	DyingDescendants uint64 // nr_dying_descendants: removed, still held by the kernel
}

// ParseCgroupStat parses a cgroup.stat file; nr_descendants is required.
func ParseCgroupStat(b []byte) (CgroupStat, error) {
	var s CgroupStat
	found := false
	for lineNo := 1; len(b) > 0; lineNo++ {
		var line []byte
		line, b = nextLine(b)
		key, i := field(line, 0)
		val, _ := field(line, i)
		var dst *uint64
		switch string(key) {
		case "nr_descendants":
			dst, found = &s.Descendants, true
		case "nr_dying_descendants":
			dst = &s.DyingDescendants
		default:
			continue
		}
		v, ok := dec(val)
		if !ok {
			return CgroupStat{}, formatErr("cgroup.stat", lineNo, "bad "+string(key))
		}
		*dst = v
	}
	if !found {
		return CgroupStat{}, fmt.Errorf("%w: cgroup.stat: no nr_descendants", ErrFormat)
	}
	return s, nil
}

// ParseProcCgroups parses /proc/cgroups and returns the largest num_cgroups
// of the enabled controllers: the number of cgroups of the fullest v1
// hierarchy.
func ParseProcCgroups(b []byte) (uint64, error) {
	var most uint64
	rows := 0
	for lineNo := 1; len(b) > 0; lineNo++ {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var f [4][]byte
		i := 0
		for n := range f {
			f[n], i = field(line, i)
		}
		if len(f[0]) == 0 {
			continue
		}
		num, ok1 := dec(f[2])
		enabled, ok2 := dec(f[3])
		if _, ok3 := dec(f[1]); !ok1 || !ok2 || !ok3 {
			return 0, formatErr("cgroups", lineNo, "want name hierarchy num_cgroups enabled")
		}
		rows++
		if enabled != 0 && num > most {
			most = num
		}
	}
	if rows == 0 {
		return 0, fmt.Errorf("%w: cgroups: no controllers", ErrFormat)
	}
	return most, nil
}
