package status

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/latency"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)

// scenario builds the view of an Azure node with n vCPUs and n/2 queues
// (capped at 16), healthy or collapsed onto CPUs 4 and 5 as in the incident.
func scenario(t *testing.T, n int, skewed bool) View {
	t.Helper()
	return Build(scenarioInputs(t, n, skewed))
}

// scenarioInputs are the inputs of scenario.
func scenarioInputs(t testing.TB, n int, skewed bool) Inputs {
	t.Helper()
	queues := map[int]int{8: 9, 16: 16, 64: 32}[n] // 8 vCPUs: the incident's 9 IRQs
	aff := func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(i % n); return c, c }
	if skewed {
		aff = func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(4 + i%2); return c, c }
	}
	h := hostfixture.Host{CPUs: n, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "hv_netvsc", Channels: []int{0, 1},
		VF: &hostfixture.NIC{Name: "enP1s1", Driver: "mlx5_core", Queues: queues, NUMANode: -1, Affinity: aff}}}}
	fs, err := hostfs.New(h.MustBuild(t))
	if err != nil {
		t.Fatal(err)
	}
	rep := irq.NewChecker(fs, irq.SysfsLinks{FS: fs}, irq.Options{MinSpreadRatio: 0.75, VFMissingAfter: time.Minute}, func() time.Time { return now }).Run(context.Background())
	per := map[int]int{}
	for _, q := range rep.NICIRQs {
		per[q.CPU]++
	}
	snap := symptoms.Snapshot{Ready: true, Time: now, Span: time.Second}
	for cpu := 0; cpu < n; cpu++ {
		c := symptoms.CPUSignal{CPU: cpu, NetRxPerSecond: float64(per[cpu]) * 9000, SoftirqShare: 0.02 + 0.04*float64(per[cpu])}
		if skewed && (cpu == 4 || cpu == 5) {
			c.SoftirqShare, c.SqueezePerSecond, c.DropsPerSecond, c.Busy, c.Dropping = 0.99, 850, 1200, true, true
			c.Ksoftirqd = &symptoms.KsoftirqdSignal{PID: 40 + cpu, Measured: true, CPUShare: 0.97}
		}
		snap.CPUs = append(snap.CPUs, c)
	}
	if skewed {
		snap.Saturated = cpuset.New(4, 5)
		snap.SaturatedSince = now.Add(-3 * time.Minute)
	}
	st := &state.State{PID: 812, Version: "v0.1.0", Updated: now.Add(-4 * time.Second),
		Irqbalance: state.Irqbalance{Version: "1.8.0-1build1", KnownBuggy: skewed, ActiveState: "active", MainPID: 644},
		Pauses:     []state.Pause{{At: now.Add(-20 * time.Minute), Seconds: 5.2, Source: "clock", EventID: "C7A1", Description: "Host servicing", Outcome: "repaired"}},
		Actions:    []state.Action{{Time: now.Add(-20*time.Minute + 9*time.Second), Action: "irqbalance_restart", Result: "success", Detail: "8 NIC IRQs of eth0 on 8 of 8 CPUs"}}}
	if !skewed {
		st.Irqbalance.Version = "1.9.2-1"
	} else {
		st.Actions = append(st.Actions, state.Action{Time: now.Add(-time.Minute), Action: "irqbalance_restart", Result: "skipped_cap", Detail: "6 repairs in the last hour"})
	}
	kub := Kubelet{Known: true, CPUs: cpuset.Range(0, n-1).Difference(rep.CPUsUsed), Pinned: true, Mode: "systemd"}
	if skewed {
		kub.CPUs = cpuset.Range(0, n-1) // the pin could not follow yet
	}
	return Inputs{Now: now, IRQ: rep, Snapshot: snap, State: st, Fresh: true, Kubelet: kub, Window: time.Second}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		n      int
		skewed bool
	}{{8, false}, {8, true}, {16, false}, {16, true}, {64, false}, {64, true}} {
		name := map[bool]string{false: "healthy", true: "skewed"}[tc.skewed]
		file := filepath.Join("testdata", name+"-"+itoa(tc.n)+".txt")
		t.Run(file, func(t *testing.T) {
			var b strings.Builder
			if err := Render(&b, scenario(t, tc.n, tc.skewed), Style{}); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			for i, line := range strings.Split(got, "\n") {
				if w := utf8.RuneCountInString(line); w > 80 {
					t.Errorf("line %d is %d columns wide: %q", i+1, w, line)
				}
			}
			if tc.n <= 16 {
				if lines := strings.Count(got, "\n"); lines > 40 {
					t.Errorf("%d lines for %d CPUs: should fit one screen", lines, tc.n)
				}
			}
			if *update {
				os.MkdirAll("testdata", 0o755)
				os.WriteFile(file, []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file:\n%s", file, got)
			}
		})
	}
}

// The incident must look different at a glance: problem lines, marked CPUs.
func TestIncidentStandsOut(t *testing.T) {
	var healthy, skewed strings.Builder
	Render(&healthy, scenario(t, 8, false), Style{})
	Render(&skewed, scenario(t, 8, true), Style{})
	if strings.Contains(healthy.String(), "PROBLEM") || regexp.MustCompile(`(?m)^\s*\d+ ! `).MatchString(healthy.String()) {
		t.Errorf("healthy node shows a problem:\n%s", healthy.String())
	}
	for _, want := range []string{"IRQ spread PROBLEM", "softirq    PROBLEM", "  4 ! eth0", "  5 ! eth0", "KNOWN BUGGY", "skipped_cap"} {
		if !strings.Contains(skewed.String(), want) {
			t.Errorf("skewed picture lacks %q:\n%s", want, skewed.String())
		}
	}
}

func TestColorOnlyWhenAsked(t *testing.T) {
	var plain, color strings.Builder
	Render(&plain, scenario(t, 8, true), Style{})
	Render(&color, scenario(t, 8, true), Style{Color: true})
	if strings.Contains(plain.String(), "\x1b[") || !strings.Contains(color.String(), "\x1b[31m") {
		t.Error("escape codes must appear only with colour on")
	}
}

func itoa(n int) string { return fmt.Sprintf("%02d", n) }

// The daemon's last DNS probe has a line; without one there is none.
func TestDNSLine(t *testing.T) {
	in := scenarioInputs(t, 8, false)
	in.State = &state.State{PID: 1, Updated: now, Checks: map[check.Name]state.Check{}}
	var b strings.Builder
	if err := Render(&b, Build(in), Style{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\ndns ") {
		t.Errorf("a dns line without a probe:\n%s", b.String())
	}
	in.State.Checks[dnsprobe.CheckName] = state.Check{Status: "problem",
		Message: "DNS 10.0.0.10: 1 of 2 queries timed out (2s); then NOERROR in 0.4ms"}
	v := Build(in)
	if v.DNS == nil || v.DNS.Status != check.Problem {
		t.Fatalf("DNS view: %+v", v.DNS)
	}
	b.Reset()
	if err := Render(&b, v, Style{}); err != nil {
		t.Fatal(err)
	}
	if want := "dns        PROBLEM DNS 10.0.0.10: 1 of 2 queries timed out (2s); then NOERROR i…\n"; !strings.Contains(b.String(), want) {
		t.Errorf("missing %q in:\n%s", want, b.String())
	}
}

// The daemon's last SNAT scan has a line, and its top sources one more.
func TestSNATSection(t *testing.T) {
	in := scenarioInputs(t, 8, false)
	rep, err := json.Marshal(snat.Report{Utilization: 0.85, Sources: []snat.Source{
		{Kind: snat.KindPod, Namespace: "shop", Pod: "checkout-7d9f", Flows: 812},
		{Kind: snat.KindHost, Flows: 40},
		{Kind: snat.KindUnknown, IP: netip.MustParseAddr("10.244.3.3"), Flows: 9},
		{Kind: snat.KindPod, Namespace: "a", Pod: "b", Flows: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	in.State = &state.State{PID: 1, Updated: now, Checks: map[check.Name]state.Check{snat.CheckName: {
		Status: "problem", Message: "SNAT 870/1024 ports (85%) to 20.50.2.1:443/tcp; top shop/checkout-7d9f", Report: rep}}}
	v := Build(in)
	if v.SNAT == nil || v.SNAT.Status != check.Problem || len(v.SNAT.Top) != 3 || v.SNAT.Top[0] != "shop/checkout-7d9f 812" {
		t.Fatalf("SNAT view: %+v", v.SNAT)
	}
	var b strings.Builder
	if err := Render(&b, v, Style{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"snat       PROBLEM SNAT 870/1024 ports (85%) to 20.50.2.1:443/tcp; top shop/che…\n", // clipped to fit 80 columns
		"           top: shop/checkout-7d9f 812, host 40, unknown 10.244.3.3 9\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}

// The daemon's last conntrack verdict has a line, with hostile text escaped;
// without one there is none.
func TestConntrackLine(t *testing.T) {
	in := scenarioInputs(t, 8, false)
	in.State = &state.State{PID: 1, Updated: now, Checks: map[check.Name]state.Check{}}
	var b strings.Builder
	if err := Render(&b, Build(in), Style{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\nconntrack ") {
		t.Errorf("a conntrack line without a result:\n%s", b.String())
	}
	in.State.Checks[ctdrops.CheckName] = state.Check{Status: "problem",
		Message: "conntrack: table 93% full (243811 of 262144); dropping 41/s (early_drop 3/s)\x1b[2J"}
	v := Build(in)
	if v.Conntrack == nil || v.Conntrack.Status != check.Problem {
		t.Fatalf("conntrack view: %+v", v.Conntrack)
	}
	b.Reset()
	if err := Render(&b, v, Style{}); err != nil {
		t.Fatal(err)
	}
	if want := "conntrack  PROBLEM conntrack: table 93% full (243811 of 262144); dropping 41/s …\n"; !strings.Contains(b.String(), want) {
		t.Errorf("missing %q in:\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "\x1b") {
		t.Errorf("an escape sequence reached the terminal")
	}
}

// The daemon's last latency measurement has a line and p99 bars for the
// slowest CPUs, slowest first, at most latencyTop.
func TestLatencySection(t *testing.T) {
	in := scenarioInputs(t, 8, false)
	in.State = &state.State{PID: 1, Updated: now, Checks: map[check.Name]state.Check{}}
	var cpus []latency.Stat
	for i := range 10 {
		cpus = append(cpus, latency.Stat{CPU: i, P99us: float64(i * i * 100), Samples: 100})
	}
	cpus[3].P99us = 12000 // past the 10 ms problem line
	rep := latency.Judge(cpus, 10*time.Second, latency.DefaultConfig())
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	in.State.Checks[latency.Name] = state.Check{Status: string(rep.Status), Message: rep.Message, Report: raw}
	v := Build(in)
	if v.Latency == nil || len(v.Latency.CPUs) != latencyTop || v.Latency.CPUs[0].CPU != 3 || v.Latency.CPUs[1].CPU != 9 {
		t.Fatalf("latency view: %+v", v.Latency)
	}
	var b strings.Builder
	if err := Render(&b, v, Style{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"latency    PROBLEM NET_RX softirqs wait p99 12ms on CPU 3",
		"           p99  cpu 3   ██████ 12.0ms   cpu 9   █████▉ 8.1ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cpu 0 ") {
		t.Errorf("a CPU beyond the %d slowest was shown:\n%s", latencyTop, out)
	}
}
