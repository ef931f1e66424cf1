package symptoms

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// bigHost is a 192-CPU node in the incident's shape: NET_RX on CPUs 4 and 5,
// both saturated (97 % softirq, CPU 4 squeezing), the other CPUs quiet;
// cgroup v2, kubelet, and a ksoftirqd thread per CPU. It writes states
// consecutive states 2 s apart under root/s<i>/proc; root/proc is a symlink
// that select switches between them.
type bigHost struct {
	root   string
	states int
}

const bigCPUs = 192

func newBigHost(tb testing.TB, states int) *bigHost {
	tb.Helper()
	h := newFakeHost(tb, bigCPUs)
	h.withKsoftirqd()
	h.kthreadd = true
	h.kubelet = &fakeProc{pid: 4321, comm: "kubelet", start: 5000}
	h.descendants = 3100
	// The quiet CPUs' ksoftirqd threads never change: written once, linked
	// into every state.
	hot := map[int]bool{4: true, 5: true}
	static := filepath.Join(h.root, "static")
	var quiet []*fakeProc
	for cpu, p := range h.ksoftirqd {
		if !hot[cpu] {
			h.proc = static
			h.writeProc(p)
			quiet = append(quiet, p)
			h.children = append(h.children, p.pid)
			h.ksoftirqd[cpu] = nil
		}
	}
	for i := range states {
		h.idleAll(2 * time.Second)
		for cpu := range hot {
			h.cpus[cpu].idle -= 194
			h.cpus[cpu].softirq += 194
			h.cpus[cpu].netrx += 400000
			h.cpus[cpu].processed += 2_000_000
			h.ksoftirqd[cpu].stime += 120
			h.ksoftirqd[cpu].waitNs += 300_000_000
		}
		h.cpus[4].squeeze += 500
		h.kubelet.stime += 30
		h.kubelet.utime += 50
		h.proc = filepath.Join(h.root, "s"+strconv.Itoa(i), "proc")
		h.write()
		for _, p := range quiet {
			ps := strconv.Itoa(p.pid)
			if err := os.Symlink(filepath.Join("..", "..", "static", ps), filepath.Join(h.proc, ps)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	b := &bigHost{root: h.root, states: states}
	b.selectState(0)
	return b
}

func (b *bigHost) selectState(i int) {
	link := filepath.Join(b.root, "proc")
	tmp := link + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Join("s"+strconv.Itoa(i), "proc"), tmp); err != nil {
		panic(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		panic(err)
	}
}

func (b *bigHost) watcher(tb testing.TB) *Watcher {
	h := &fakeHost{t: tb, root: b.root}
	return newTestWatcher(tb, h.fs(), DefaultConfig(), Options{KubeletPID: 4321})
}

// BenchmarkTick192 is one watcher tick on a 192-CPU node: /proc/stat,
// softnet_stat, softirqs, cgroup.stat, kubelet's stat, and the two
// saturated CPUs' ksoftirqd stat and schedstat.
func BenchmarkTick192(b *testing.B) {
	const states = 32
	h := newBigHost(b, states)
	w := h.watcher(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		k := i % states
		h.selectState(k)
		b.StartTimer()
		// Back to state 0 the clock goes back too: the history starts over.
		if _, err := w.Tick(t0.Add(time.Duration(k) * 2 * time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTick192 checks the benchmark's node is judged as meant and that a tick
// allocates a bounded, small number of times.
func TestTick192(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	const states = 24
	h := newBigHost(t, states)
	w := h.watcher(t)
	var s Snapshot
	for k := range 8 {
		h.selectState(k)
		s = mustTick(t, w, t0.Add(time.Duration(k)*2*time.Second))
	}
	if s.Saturated.List() != "4-5" || len(s.CPUs) != bigCPUs || !s.Kubelet.Known || !s.Cgroups.Known {
		t.Fatalf("saturated %v, %d CPUs, kubelet %+v, cgroups %+v", s.Saturated, len(s.CPUs), s.Kubelet, s.Cgroups)
	}
	if k := cpuSig(t, s, 4).Ksoftirqd; k == nil || !k.Measured || !near(k.CPUShare, 0.6) || !near(k.RunqWaitShare, 0.15) {
		t.Errorf("ksoftirqd/4 %+v", k)
	}
	if c := cpuSig(t, s, 4); !near(c.SoftirqShare, 0.97) || !near(c.SqueezePerSecond, 250) || !near(c.NetRxPerSecond, 200000) {
		t.Errorf("CPU 4 %+v", c)
	}
	// The following states, forward in time: every tick a full derivation
	// with two saturated CPUs. Only Tick's own allocations are counted.
	var before, after runtime.MemStats
	var mallocs uint64
	ticks := 0
	for k := 8; k < states; k++ {
		h.selectState(k)
		runtime.ReadMemStats(&before)
		s, err := w.Tick(t0.Add(time.Duration(k) * 2 * time.Second))
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		{
			mallocs += after.Mallocs - before.Mallocs
			ticks++
			if s.Saturated.List() != "4-5" {
				t.Fatalf("state %d: saturated %v", k, s.Saturated)
			}
		}
	}
	allocs := float64(mallocs) / float64(ticks)
	t.Logf("allocations per tick (192 CPUs, 2 saturated): %.1f", allocs)
	if allocs > 40 {
		t.Errorf("%.1f allocations per tick", allocs)
	}
}

// BenchmarkTickLive is one tick on this machine's own /proc (for comparison:
// the kernel generating the files is part of the cost there).
func BenchmarkTickLive(b *testing.B) {
	fsys, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		b.Fatal(err)
	}
	w := newTestWatcher(b, fsys, DefaultConfig(), Options{KubeletPID: os.Getpid()})
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		now = now.Add(2 * time.Second)
		if _, err := w.Tick(now); err != nil {
			b.Fatal(err)
		}
	}
}
