package symptoms

import (
	"context"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func newTestWatcher(t testing.TB, fsys *hostfs.FS, cfg Config, opt Options) *Watcher {
	t.Helper()
	w, err := NewWatcher(fsys, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustTick(t testing.TB, w *Watcher, now time.Time) Snapshot {
	t.Helper()
	s, err := w.Tick(now)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Errors) > 0 {
		t.Fatalf("tick errors: %v", s.Errors)
	}
	return s
}

func cpuSig(t testing.TB, s Snapshot, cpu int) CPUSignal {
	t.Helper()
	for _, c := range s.CPUs {
		if c.CPU == cpu {
			return c
		}
	}
	t.Fatalf("CPU %d not in snapshot", cpu)
	return CPUSignal{}
}

// TestSaturationSequence drives /proc/stat, softnet_stat and softirqs through
// a saturation and its end, ticking every 2 s with a 10 s window.
func TestSaturationSequence(t *testing.T) {
	h := newFakeHost(t, 4)
	h.withKsoftirqd()
	h.kthreadd = true
	h.write()
	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{})

	s := mustTick(t, w, t0)
	if s.Ready || s.Active() || len(s.CPUs) != 4 || s.Report().Status != check.Unknown {
		t.Fatalf("first tick: %+v", s)
	}
	if !s.Cgroups.Known || s.Cgroups.Count != 3000 {
		t.Errorf("cgroups on the first tick: %+v", s.Cgroups)
	}

	type want struct {
		saturated string
		since     time.Duration // −1: none
		share2    float64       // CPU 2's softirq share
		squeeze1  float64       // CPU 1's time_squeeze rate
		span      time.Duration
	}
	wants := map[int]want{
		2:  {"1-2", 2 * time.Second, 0.95, 150, 2 * time.Second},
		4:  {"1-3", 2 * time.Second, 0.95, 150, 4 * time.Second},
		12: {"1-3", 2 * time.Second, 0.95, 150, 10 * time.Second}, // CPU 3's drop at t=4 is still in the window
		// From t=4: 4·190 softirq ticks of 1000 = 0.76; squeezes 4·300/10 s.
		14: {"1", 2 * time.Second, 0.76, 120, 10 * time.Second},
		16: {"", -1, 0.57, 90, 10 * time.Second},
	}
	for sec := 2; sec <= 16; sec += 2 {
		h.idleAll(2 * time.Second)
		if sec <= 12 {
			h.spend(2, 2*time.Second, 0.95) // on top of idle: recompute below
			h.cpus[2].idle -= 200
			h.cpus[1].squeeze += 300
			h.cpus[1].netrx += 20000
			h.ksoftirqd[2].stime += 150              // 75 % of a CPU
			h.ksoftirqd[2].waitNs += 500 * 1_000_000 // 25 % of the time waiting
		}
		if sec == 4 {
			h.cpus[3].dropped++
		}
		h.write()
		now := t0.Add(time.Duration(sec) * time.Second)
		s = mustTick(t, w, now)
		wt, ok := wants[sec]
		if !ok {
			continue
		}
		if got := s.Saturated.List(); got != wt.saturated {
			t.Errorf("t=%d: saturated %q, want %q", sec, got, wt.saturated)
		}
		if wt.since < 0 && !s.SaturatedSince.IsZero() || wt.since >= 0 && !s.SaturatedSince.Equal(t0.Add(wt.since)) {
			t.Errorf("t=%d: saturated since %v", sec, s.SaturatedSince)
		}
		if c := cpuSig(t, s, 2); !near(c.SoftirqShare, wt.share2) {
			t.Errorf("t=%d: CPU 2 share %v, want %v", sec, c.SoftirqShare, wt.share2)
		}
		if c := cpuSig(t, s, 1); !near(c.SqueezePerSecond, wt.squeeze1) {
			t.Errorf("t=%d: CPU 1 squeeze %v/s, want %v", sec, c.SqueezePerSecond, wt.squeeze1)
		}
		if s.Span != wt.span || !s.Ready {
			t.Errorf("t=%d: span %v ready %v", sec, s.Span, s.Ready)
		}
		for _, c := range s.CPUs {
			if c.SoftirqShare < 0 || c.SoftirqShare > 1 || c.NetRxPerSecond < 0 || c.SqueezePerSecond < 0 || c.DropsPerSecond < 0 {
				t.Errorf("t=%d: CPU %d: %+v", sec, c.CPU, c)
			}
		}
		switch sec {
		case 2:
			if c := cpuSig(t, s, 2); !c.Busy || c.Squeezed || c.Ksoftirqd == nil || c.Ksoftirqd.PID != 1002 || c.Ksoftirqd.Measured {
				t.Errorf("t=2: CPU 2 %+v (ksoftirqd %+v)", c, c.Ksoftirqd)
			}
			if c := cpuSig(t, s, 1); c.Busy || !c.Squeezed || !near(c.NetRxPerSecond, 10000) {
				t.Errorf("t=2: CPU 1 %+v", c)
			}
			if c := cpuSig(t, s, 0); c.Ksoftirqd != nil {
				t.Error("ksoftirqd read for a CPU that is not saturated")
			}
		case 4:
			if c := cpuSig(t, s, 3); !c.Dropping || !near(c.DropsPerSecond, 0.25) {
				t.Errorf("t=4: CPU 3 %+v", c)
			}
			k := cpuSig(t, s, 2).Ksoftirqd
			if k == nil || !k.Measured || !near(k.CPUShare, 0.75) || !near(k.RunqWaitShare, 0.25) {
				t.Errorf("t=4: ksoftirqd/2 %+v", k)
			}
			v := s.Report()
			if v.Status != check.Problem || v.Check != CheckName || v.SaturatedCPUs.List() != "1-3" ||
				v.Message != "softirq saturation on CPUs 1-3 (softirq 95%, squeeze 150/s, drops 0.2/s)" {
				t.Errorf("t=4 verdict %+v", v)
			}
			if got := s.NetRxCPUs(0.5); got.List() != "1" {
				t.Errorf("net_rx CPUs %v", got)
			}
		case 16:
			if v := s.Report(); v.Status != check.OK || !strings.HasPrefix(v.Message, "no softirq saturation (busiest CPU 2: 57% softirq)") {
				t.Errorf("t=16 verdict %+v", v)
			}
		}
	}
	if w.ksoftScans != 1 {
		t.Errorf("searched /proc for ksoftirqd %d times, want once", w.ksoftScans)
	}
	if len(w.samples) > 7 {
		t.Errorf("%d samples kept for a 10 s window at 2 s ticks", len(w.samples))
	}
}

func TestKsoftirqdSearchIsRateLimited(t *testing.T) {
	h := newFakeHost(t, 2)
	h.withKsoftirqd()
	h.ksoftirqd[1] = nil // no thread for CPU 1 (and no kthreadd children file: a full search)
	h.write()
	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{})
	mustTick(t, w, t0)
	for sec := 2; sec <= 120; sec += 2 {
		h.spend(1, 2*time.Second, 1)
		h.spend(0, 2*time.Second, 0)
		h.write()
		s := mustTick(t, w, t0.Add(time.Duration(sec)*time.Second))
		if !s.Saturated.Contains(1) || cpuSig(t, s, 1).Ksoftirqd != nil {
			t.Fatalf("t=%d: %+v", sec, s.Saturated)
		}
	}
	if w.ksoftScans != 2 { // t=2 and t=62
		t.Errorf("%d searches in 2 minutes, want 2", w.ksoftScans)
	}
	// A reused PID (another comm) is not taken for ksoftirqd.
	h.ksoftirqd[0].comm = "bash"
	for sec := 122; sec <= 140; sec += 2 {
		h.spend(0, 2*time.Second, 1)
		h.spend(1, 2*time.Second, 0)
		h.write()
		s := mustTick(t, w, t0.Add(time.Duration(sec)*time.Second))
		if sec >= 130 {
			if c := cpuSig(t, s, 0); !c.Busy || c.Ksoftirqd != nil {
				t.Errorf("t=%d reused PID: %+v %+v", sec, c, c.Ksoftirqd)
			}
		}
	}
}

func TestSoftnetWithoutCPUColumnAndOfflineCPU(t *testing.T) {
	for _, cols := range []int{11, 13, 15} {
		h := newFakeHost(t, 4)
		h.cpus[2].offline = true
		h.softnetCols = cols
		h.write()
		w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{})
		mustTick(t, w, t0)
		h.idleAll(2 * time.Second)
		h.cpus[3].squeeze += 400
		h.cpus[1].dropped += 4
		h.write()
		s := mustTick(t, w, t0.Add(2*time.Second))
		if len(s.CPUs) != 3 {
			t.Fatalf("%d columns: CPUs %+v", cols, s.CPUs)
		}
		if got := s.Saturated.List(); got != "1,3" {
			t.Errorf("%d columns: saturated %q, want 1,3", cols, got)
		}
		if c := cpuSig(t, s, 3); !c.Squeezed || !near(c.SqueezePerSecond, 200) {
			t.Errorf("%d columns: CPU 3 %+v", cols, c)
		}
		if c := cpuSig(t, s, 1); !c.Dropping || !near(c.DropsPerSecond, 2) {
			t.Errorf("%d columns: CPU 1 %+v", cols, c)
		}
	}
}

func TestCountersWrap(t *testing.T) {
	h := newFakeHost(t, 1)
	h.cpus[0].squeeze = math.MaxUint32 - 99
	h.cpus[0].netrx = math.MaxUint32 - 9
	h.write()
	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{})
	mustTick(t, w, t0)
	h.idleAll(time.Second)
	h.cpus[0].squeeze += 300 // wraps
	h.cpus[0].netrx += 30    // wraps in the 32-bit file
	h.write()
	s := mustTick(t, w, t0.Add(time.Second))
	if c := cpuSig(t, s, 0); !near(c.SqueezePerSecond, 300) || !near(c.NetRxPerSecond, 30) || !c.Squeezed {
		t.Errorf("after wrap: %+v", c)
	}
}

func TestCgroupCounts(t *testing.T) {
	cfg := DefaultConfig()
	h := newFakeHost(t, 1)
	h.descendants = 182000
	h.v1Cgroups = 12 // must not be read on v2
	h.write()
	s := mustTick(t, newTestWatcher(t, h.fs(), cfg, Options{}), t0)
	if want := (CgroupSignal{Known: true, Source: "cgroup.stat", Count: 182000, Dying: 7, Explosion: true}); s.Cgroups != want {
		t.Errorf("v2: %+v, want %+v", s.Cgroups, want)
	}

	h = newFakeHost(t, 1)
	h.cgroupV2 = false
	h.v1Cgroups = 60000
	h.write()
	w := newTestWatcher(t, h.fs(), cfg, Options{})
	s = mustTick(t, w, t0)
	if want := (CgroupSignal{Known: true, Source: "cgroups", Count: 60000, Explosion: true}); s.Cgroups != want {
		t.Errorf("v1: %+v, want %+v", s.Cgroups, want)
	}
	h.v1Cgroups = 30
	h.write()
	if s = mustTick(t, w, t0.Add(time.Second)); s.Cgroups.Explosion || s.Cgroups.Count != 30 {
		t.Errorf("v1 after: %+v", s.Cgroups)
	}
	if err := os.Remove(filepath.Join(h.root, "proc", "cgroups")); err != nil {
		t.Fatal(err)
	}
	if s = mustTick(t, w, t0.Add(2*time.Second)); s.Cgroups.Known {
		t.Errorf("no cgroup files: %+v", s.Cgroups)
	}
}

func TestKubeletSystemShare(t *testing.T) {
	h := newFakeHost(t, 2)
	h.kubelet = &fakeProc{pid: 4321, comm: "kubelet", start: 5000}
	h.write()
	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{KubeletPID: 4321})
	s := mustTick(t, w, t0)
	if s.Kubelet.Known || s.Kubelet.PID != 4321 {
		t.Errorf("first tick: %+v", s.Kubelet)
	}
	step := func(sec int, stime, utime uint64) Snapshot {
		h.idleAll(2 * time.Second)
		h.kubelet.stime += stime
		h.kubelet.utime += utime
		h.write()
		return mustTick(t, w, t0.Add(time.Duration(sec)*time.Second))
	}
	s = step(2, 120, 40)
	if k := s.Kubelet; !k.Known || !near(k.SystemShare, 0.6) || !near(k.UserShare, 0.2) || !k.High {
		t.Errorf("t=2: %+v", k)
	}
	s = step(4, 20, 0)
	if k := s.Kubelet; !near(k.SystemShare, 0.35) || k.High {
		t.Errorf("t=4: %+v", k)
	}
	// kubelet restarts with a new PID: a new measurement.
	h.kubelet = &fakeProc{pid: 5555, comm: "kubelet", start: 9000}
	w.SetKubeletPID(5555)
	if s = step(6, 0, 0); s.Kubelet.Known || s.Kubelet.PID != 5555 {
		t.Errorf("t=6 after a restart: %+v", s.Kubelet)
	}
	if s = step(8, 200, 0); !s.Kubelet.Known || !near(s.Kubelet.SystemShare, 1) {
		t.Errorf("t=8: %+v", s.Kubelet)
	}
	// The same PID reused by another process start: not mixed up.
	h.kubelet.start, h.kubelet.stime = 9999, 0
	if s = step(10, 10, 0); s.Kubelet.Known {
		t.Errorf("t=10 after PID reuse: %+v", s.Kubelet)
	}
	// Gone.
	w.SetKubeletPID(0)
	if s = step(12, 0, 0); s.Kubelet.Known || s.Kubelet.PID != 0 {
		t.Errorf("no kubelet: %+v", s.Kubelet)
	}
}

func TestClockBackwardsAndHistoryBound(t *testing.T) {
	h := newFakeHost(t, 1)
	h.write()
	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{})
	mustTick(t, w, t0)
	h.idleAll(time.Second)
	h.write()
	if s := mustTick(t, w, t0.Add(time.Second)); !s.Ready {
		t.Fatal("not ready")
	}
	if s := mustTick(t, w, t0.Add(-time.Hour)); s.Ready {
		t.Error("rates across a clock going backwards")
	}
	for i := range 500 {
		mustTick(t, w, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if len(w.samples) > maxSamples {
		t.Errorf("%d samples kept", len(w.samples))
	}
}

func TestTickErrors(t *testing.T) {
	h := newFakeHost(t, 2)
	h.write()
	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{})
	if err := os.WriteFile(filepath.Join(h.root, "proc", "softirqs"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.root, "proc", "net", "softnet_stat")); err != nil {
		t.Fatal(err)
	}
	s, err := w.Tick(t0)
	if err != nil || len(s.Errors) != 1 || !strings.Contains(s.Errors[0], "softirqs") {
		t.Errorf("partial failure: %v %v", s.Errors, err)
	}
	if err := os.Remove(filepath.Join(h.root, "proc", "stat")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Tick(t0.Add(time.Second)); err == nil {
		t.Error("no error without /proc/stat")
	}
}

// TestFixtureHost runs the watcher on the ci-vm capture: hybrid cgroups
// (/proc/cgroups), ksoftirqd threads found by a search of the proc root.
func TestFixtureHost(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join("testdata", "ci-vm-2cpu-6.18")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(root, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(root, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := hostfs.New(hostfs.Paths{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys"),
		Cgroup: filepath.Join(root, "cgroup"), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWatcher(t, fsys, DefaultConfig(), Options{})
	s := mustTick(t, w, t0)
	if s.Cgroups != (CgroupSignal{Known: true, Source: "cgroups", Count: 25}) {
		t.Errorf("cgroups %+v", s.Cgroups)
	}
	// Two seconds later CPU 1 spent 190 of 200 ticks in softirq.
	stat, _ := os.ReadFile(filepath.Join(root, "proc", "stat"))
	stat = []byte(strings.Replace(string(stat), "cpu1 26393 0 20804 164468 918 0 153 52 1 0", "cpu1 26393 0 20804 164478 918 0 343 52 1 0", 1))
	stat = []byte(strings.Replace(string(stat), "cpu0 26568 0 26324 159825 99 0 49 30 4 0", "cpu0 26568 0 26324 160025 99 0 49 30 4 0", 1))
	if err := os.WriteFile(filepath.Join(root, "proc", "stat"), stat, 0o644); err != nil {
		t.Fatal(err)
	}
	s = mustTick(t, w, t0.Add(2*time.Second))
	if !s.Saturated.Equal(cpuset.New(1)) {
		t.Fatalf("saturated %v", s.Saturated)
	}
	c := cpuSig(t, s, 1)
	if !near(c.SoftirqShare, 0.95) || c.Ksoftirqd == nil || c.Ksoftirqd.PID != 22 {
		t.Errorf("CPU 1 %+v ksoftirqd %+v", c, c.Ksoftirqd)
	}
	if v := s.Report(); v.Status != check.Problem || v.Message != "softirq saturation on CPU 1 (softirq 95%)" {
		t.Errorf("verdict %+v", v)
	}
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"saturated_cpus":[1]`) || !strings.Contains(string(b), `"ksoftirqd":{"pid":22`) {
		t.Errorf("JSON %s %v", b, err)
	}
}

func TestVerdictMessages(t *testing.T) {
	var cpus []CPUSignal
	var sat []int
	for i := range 192 {
		c := CPUSignal{CPU: i}
		if i%3 == 0 {
			c.SoftirqShare, c.Busy, c.SqueezePerSecond, c.Squeezed = 0.999, true, 12345.6, true
			sat = append(sat, i)
		}
		cpus = append(cpus, c)
	}
	s := Snapshot{Ready: true, CPUs: cpus, Saturated: cpuset.New(sat...)}
	v := s.Report()
	if v.Status != check.Problem || v.Message != "softirq saturation on 64 CPUs (softirq 99%, squeeze 12346/s)" {
		t.Errorf("%+v", v)
	}
	if v := (Snapshot{Ready: true}).Report(); v.Status != check.OK {
		t.Errorf("empty: %+v", v)
	}
}

func TestSample(t *testing.T) {
	h := newFakeHost(t, 2)
	h.write()
	clk := clock.NewFake(t0)
	type res struct {
		s   Snapshot
		err error
	}
	done := make(chan res, 1)
	go func() {
		s, err := Sample(context.Background(), h.fs(), DefaultConfig(), time.Second, SampleOptions{Clock: clk})
		done <- res{s, err}
	}()
	clk.BlockUntil(1)
	h.spend(0, time.Second, 0.5)
	h.spend(1, time.Second, 0.99)
	h.write()
	clk.Advance(time.Second)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.s.Ready || r.s.Span != time.Second || r.s.Saturated.List() != "1" || !near(cpuSig(t, r.s, 0).SoftirqShare, 0.5) {
		t.Errorf("sample %+v", r.s)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Sample(ctx, h.fs(), DefaultConfig(), time.Second, SampleOptions{Clock: clk}); err == nil {
		t.Error("cancelled sample returned no error")
	}
	if _, err := Sample(context.Background(), h.fs(), DefaultConfig(), 0, SampleOptions{}); err == nil {
		t.Error("zero window accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.SoftirqBusyThreshold = 0 },
		func(c *Config) { c.SoftirqBusyThreshold = 1.1 },
		func(c *Config) { c.SoftirqBusyThreshold = math.NaN() },
		func(c *Config) { c.Window = 0 },
		func(c *Config) { c.SqueezePerSecond = 0 },
		func(c *Config) { c.CgroupWarn = 0 },
		func(c *Config) { c.KubeletSystemCPUWarn = -1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%+v is valid", c)
		}
	}
	for _, tc := range []struct{ window, want time.Duration }{
		{10 * time.Second, 5 * time.Second}, {4 * time.Second, 2 * time.Second}, {time.Second, time.Second}, {time.Minute, 5 * time.Second},
	} {
		if got := TickInterval(tc.window); got != tc.want {
			t.Errorf("TickInterval(%v) = %v, want %v", tc.window, got, tc.want)
		}
	}
}
