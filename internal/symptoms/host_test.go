package symptoms

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// fakeHost writes the files a Watcher reads for a host whose counters the test
// moves by hand.
type fakeHost struct {
	t           testing.TB
	root        string // holds proc/ and cgroup/
	proc        string // where the proc files are written (root/proc unless redirected)
	cpus        []fakeCPU
	softnetCols int // 15, 13 or 11
	cgroupV2    bool
	descendants uint64
	v1Cgroups   uint64
	kubelet     *fakeProc
	ksoftirqd   []*fakeProc // per CPU, nil: none
	kthreadd    bool        // write proc/2/task/2/children
	children    []int       // more PIDs for that children file
}

type fakeCPU struct {
	offline                     bool
	user, system, idle, softirq uint64
	steal                       uint64
	processed, dropped, squeeze uint32
	netrx                       uint64
}

type fakeProc struct {
	pid          int
	comm         string
	utime, stime uint64
	start        uint64
	waitNs       uint64
	cpu          int
}

func newFakeHost(t testing.TB, ncpu int) *fakeHost {
	t.Helper()
	root := t.TempDir()
	h := &fakeHost{t: t, root: root, proc: filepath.Join(root, "proc"), cpus: make([]fakeCPU, ncpu), softnetCols: 15,
		cgroupV2: true, descendants: 3000}
	for i := range h.cpus {
		h.cpus[i] = fakeCPU{user: 1000, system: 500, idle: 10000, softirq: 10, processed: 100, netrx: 50}
	}
	return h
}

func (h *fakeHost) fs() *hostfs.FS {
	h.t.Helper()
	fsys, err := hostfs.New(hostfs.Paths{Proc: filepath.Join(h.root, "proc"), Sys: filepath.Join(h.root, "sys"),
		Cgroup: filepath.Join(h.root, "cgroup"), Root: h.root})
	if err != nil {
		h.t.Fatal(err)
	}
	return fsys
}

// spend adds d of CPU time to cpu, share of it in softirq, the rest idle.
func (h *fakeHost) spend(cpu int, d time.Duration, share float64) {
	ticks := uint64(d.Seconds() * userHZ)
	s := uint64(float64(ticks) * share)
	h.cpus[cpu].softirq += s
	h.cpus[cpu].idle += ticks - s
}

// idle adds d of idle time to every online CPU.
func (h *fakeHost) idleAll(d time.Duration) {
	for i := range h.cpus {
		if !h.cpus[i].offline {
			h.spend(i, d, 0)
		}
	}
}

func (h *fakeHost) put(rel string, content string) {
	h.t.Helper()
	p := filepath.Join(h.proc, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) writeProc(p *fakeProc) {
	ps := strconv.Itoa(p.pid)
	h.put(filepath.Join(ps, "comm"), p.comm+"\n")
	h.put(filepath.Join(ps, "stat"), fmt.Sprintf("%d (%s) S 2 0 0 0 -1 69238848 0 0 0 0 %d %d 0 0 20 0 1 0 %d 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 %d 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
		p.pid, p.comm, p.utime, p.stime, p.start, p.cpu))
	h.put(filepath.Join(ps, "schedstat"), fmt.Sprintf("%d %d %d\n", (p.utime+p.stime)*10_000_000, p.waitNs, 100))
}

// write writes every file from the counters.
func (h *fakeHost) write() {
	h.t.Helper()
	var stat, softnet, softirqs strings.Builder
	var sum fakeCPU
	for _, c := range h.cpus {
		if !c.offline {
			sum.user += c.user
			sum.system += c.system
			sum.idle += c.idle
			sum.softirq += c.softirq
		}
	}
	fmt.Fprintf(&stat, "cpu  %d 0 %d %d 0 0 %d 0 0 0\n", sum.user, sum.system, sum.idle, sum.softirq)
	softirqs.WriteString("                ")
	for i := range h.cpus {
		fmt.Fprintf(&softirqs, "CPU%-8d", i)
	}
	softirqs.WriteString("\n")
	for _, name := range []string{"HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"} {
		fmt.Fprintf(&softirqs, "%12s:", name)
		for _, c := range h.cpus {
			v := uint64(7)
			if name == "NET_RX" {
				v = c.netrx
			}
			fmt.Fprintf(&softirqs, " %10d", uint32(v))
		}
		softirqs.WriteString("\n")
	}
	for i, c := range h.cpus {
		if c.offline {
			continue
		}
		fmt.Fprintf(&stat, "cpu%d %d 0 %d %d 0 0 %d %d 0 0\n", i, c.user, c.system, c.idle, c.softirq, c.steal)
		cols := []uint32{c.processed, c.dropped, c.squeeze, 0, 0, 0, 0, 0, 0, 0, 0, 0, uint32(i), 0, 0}
		for j, v := range cols[:h.softnetCols] {
			if j > 0 {
				softnet.WriteByte(' ')
			}
			fmt.Fprintf(&softnet, "%08x", v)
		}
		softnet.WriteByte('\n')
	}
	stat.WriteString("intr 12345 0 0 1 2 3\nctxt 999\nbtime 1700000000\nprocesses 100\nprocs_running 1\nprocs_blocked 0\nsoftirq 1 2 3\n")
	h.put("stat", stat.String())
	h.put(filepath.Join("net", "softnet_stat"), softnet.String())
	h.put("softirqs", softirqs.String())
	h.put("cgroups", fmt.Sprintf("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\nmemory\t4\t%d\t1\n", h.v1Cgroups))
	cg := filepath.Join(h.root, "cgroup")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if h.cgroupV2 {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.stat"), []byte(fmt.Sprintf("nr_descendants %d\nnr_dying_descendants 7\n", h.descendants)), 0o644); err != nil {
			h.t.Fatal(err)
		}
	}
	if h.kubelet != nil {
		h.writeProc(h.kubelet)
	}
	var children []string
	for _, pid := range h.children {
		children = append(children, strconv.Itoa(pid))
	}
	for _, p := range h.ksoftirqd {
		if p != nil {
			h.writeProc(p)
			children = append(children, strconv.Itoa(p.pid))
		}
	}
	if h.kthreadd {
		h.put(filepath.Join("2", "task", "2", "children"), strings.Join(children, " ")+" \n")
	}
}

// withKsoftirqd gives every CPU a ksoftirqd thread, PID 1000+CPU.
func (h *fakeHost) withKsoftirqd() {
	h.ksoftirqd = make([]*fakeProc, len(h.cpus))
	for i := range h.cpus {
		h.ksoftirqd[i] = &fakeProc{pid: 1000 + i, comm: "ksoftirqd/" + strconv.Itoa(i), start: 25, cpu: i}
	}
}
