package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/daemon"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

type readyNotifier struct{ ready atomic.Bool }

func (n *readyNotifier) Ready() error                            { n.ready.Store(true); return nil }
func (n *readyNotifier) Status(string) error                     { return nil }
func (n *readyNotifier) Stopping() error                         { return nil }
func (n *readyNotifier) Watchdog() error                         { return nil }
func (n *readyNotifier) WatchdogInterval() (time.Duration, bool) { return 0, false }

// parityConfig sets keys the daemon honours to values other than their
// defaults: with the defaults, CPU 2's 60 % softirq share is no saturation.
const parityConfig = `metrics:
  listen: ""
irq:
  remediation: none
  fallbackSpread: false
symptoms:
  softirqBusyThreshold: 0.5
  window: 2s
kubelet:
  minCPUs: 3
`

// softirqLoad moves the fixture's /proc/stat on by d: CPU 2 spends 60 % of
// its time in softirq, the others idle.
type softirqLoad struct {
	p     hostfs.Paths
	times [][4]uint64
}

func (l *softirqLoad) advance(t *testing.T, d time.Duration) {
	ticks := uint64(d / (10 * time.Millisecond))
	for i := range l.times {
		if i == 2 {
			l.times[i][3] += ticks * 6 / 10
			l.times[i][2] += ticks * 4 / 10
		} else {
			l.times[i][2] += ticks
		}
	}
	// Written beside and renamed into place: a reader never sees half a file.
	tmp := l.p
	tmp.Proc = t.TempDir()
	if err := hostfixture.WriteStat(tmp, l.times); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp.Proc, "stat"), filepath.Join(l.p.Proc, "stat")); err != nil {
		t.Fatal(err)
	}
}

// `check kubelet`, `check softirq` and `status` decide as the daemon does
// on the same host and configuration: the same saturated CPUs, the same
// net_rx CPUs (saturated ones included), the same choice for kubelet.
func TestCheckAndStatusDecideAsTheDaemon(t *testing.T) {
	host := hostfixture.Host{CPUs: 8, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1,
		Affinity: func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(4 + i%2); return c, c }}}}
	p := host.MustBuild(t)
	os.MkdirAll(p.Cgroup, 0o755)
	os.WriteFile(filepath.Join(p.Cgroup, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	cfgFile := filepath.Join(p.Root, "etc", "nodekeeper", "config.yaml")
	os.MkdirAll(filepath.Dir(cfgFile), 0o755)
	os.WriteFile(cfgFile, []byte(parityConfig), 0o644)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	load := &softirqLoad{p: p, times: make([][4]uint64, 8)}
	load.advance(t, time.Second)

	// The daemon, on a fake clock, until its kubelet decision counts CPU 2.
	units := systemd.NewFake(nil)
	units.SetEnforced(true)
	units.AddService("kubelet.service")
	withFakeSystemd(t, units)
	h, err := hostfs.New(p)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	var logs syncBuf
	n := &readyNotifier{}
	statePath := filepath.Join(p.Root, state.RelPath)
	d := daemon.New(daemon.Deps{FS: h, Config: cfg, ConfigFile: cfgFile, Log: logging.New(&logs, "text", -4),
		Metrics: metrics.New(), Notifier: n, Clock: clk, Links: irq.SysfsLinks{FS: h},
		DialUnits: func(context.Context) (systemd.Units, error) { return units, nil }, StatePath: statePath,
		HandlesSignal: func(int, syscall.Signal) (bool, error) { return true, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	var daemonKubelet, daemonSoftirq map[string]any
	for i := 0; ; i++ {
		if i == 3000 {
			t.Fatalf("the daemon never counted CPU 2 as a net_rx CPU: %v %v\n%s", daemonKubelet, daemonSoftirq, logs.String())
		}
		if n.ready.Load() {
			load.advance(t, time.Second)
			clk.Advance(time.Second)
		}
		time.Sleep(time.Millisecond)
		st, _ := state.Read(statePath)
		if st == nil {
			continue
		}
		daemonKubelet, daemonSoftirq = reportOf(t, st, kubelet.Name), reportOf(t, st, symptoms.CheckName)
		if fmt.Sprint(daemonKubelet["netrx_cpus"]) == "[2 4 5]" && daemonSoftirq["status"] == "problem" {
			break
		}
	}
	// While the daemon runs and its snapshot is fresh, status shows it: taken over the
	// configured window, with no sampling of its own.
	var out bytes.Buffer
	code := Main(context.Background(), append([]string{"status", "--output", "json"}, rootArgs(p)...),
		Env{Stdout: &out, Stderr: io.Discard, Clock: clock.NewFake(clk.Now()), Getenv: func(string) string { return "" }})
	var fresh map[string]any
	if err := json.Unmarshal(out.Bytes(), &fresh); code != 0 || err != nil {
		t.Fatalf("status: exit %d, %v: %s", code, err, out.String())
	}
	if sv, _ := fresh["softirq"].(map[string]any); sv["status"] != "problem" || fresh["window_ns"].(float64) < float64(time.Second) {
		t.Errorf("status from the daemon's snapshot: softirq %v over %v ns", fresh["softirq"], fresh["window_ns"])
	}
	cancel()
	<-done
	if fmt.Sprint(daemonKubelet["chosen_cpus"]) != "[0 1 3 6 7]" {
		t.Fatalf("the daemon chose %v, want 0-1,3,6-7 (kubelet.minCPUs 3, off 2 and 4-5)", daemonKubelet["chosen_cpus"])
	}

	// The command line, an hour later (the daemon's results are stale),
	// decides live over the configured window's worth of samples.
	later := clock.NewFake(clk.Now().Add(time.Hour))
	live := func(args ...string) map[string]any {
		t.Helper()
		var out, errb bytes.Buffer
		codec := make(chan int)
		go func() {
			codec <- Main(context.Background(), append(args, rootArgs(p)...), Env{Stdout: &out, Stderr: &errb, Clock: later,
				Getenv: func(string) string { return "" }})
		}()
		later.BlockUntil(1) // the first sample is taken
		load.advance(t, 2*time.Second)
		later.Advance(2 * time.Second)
		<-codec
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("%v: %s %s", err, out.String(), errb.String())
		}
		return m
	}
	k := live("check", "kubelet", "--output", "json", "--window", "2s")
	for _, f := range []string{"status", "netrx_cpus", "chosen_cpus", "disjoint"} {
		if fmt.Sprint(k[f]) != fmt.Sprint(daemonKubelet[f]) {
			t.Errorf("check kubelet %s = %v, the daemon's %v", f, k[f], daemonKubelet[f])
		}
	}
	s := live("check", "softirq", "--output", "json", "--window", "2s")
	if s["status"] != daemonSoftirq["status"] || fmt.Sprint(s["saturated_cpus"]) != fmt.Sprint(daemonSoftirq["saturated_cpus"]) {
		t.Errorf("check softirq %v %v, the daemon's %v %v", s["status"], s["saturated_cpus"], daemonSoftirq["status"], daemonSoftirq["saturated_cpus"])
	}
	v := live("status", "--output", "json", "--window", "2s")
	if sv, _ := v["softirq"].(map[string]any); sv["status"] != "problem" {
		t.Errorf("status's softirq verdict %v, want the daemon's problem", v["softirq"])
	}

}

func reportOf(t *testing.T, st *state.State, name check.Name) map[string]any {
	var m map[string]any
	if c, ok := st.Checks[name]; ok && len(c.Report) > 0 {
		if err := json.Unmarshal(c.Report, &m); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }
