package irq

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

var defaultOpts = Options{Filter: Filter{Exclude: []string{"ib*"}}, MinSpreadRatio: 0.75, VFMissingAfter: 2 * time.Minute}

func runCheck(t *testing.T, p hostfs.Paths, opts Options) *Report {
	t.Helper()
	h, err := hostfs.New(p)
	if err != nil {
		t.Fatal(err)
	}
	c := NewChecker(h, SysfsLinks{FS: h}, opts, time.Now)
	return c.Run(context.Background())
}

// skewed puts queue IRQ i on cpus[i%len(cpus)] (requested and effective).
func skewed(cpus ...int) func(int) (cpuset.Set, cpuset.Set) {
	return func(i int) (cpuset.Set, cpuset.Set) {
		c := cpuset.New(cpus[i%len(cpus)])
		return c, c
	}
}

func azure(cpus, queues int, aff func(int) (cpuset.Set, cpuset.Set), vfDriver string) hostfixture.Host {
	return hostfixture.Host{
		CPUs: cpus,
		NICs: []hostfixture.NIC{{
			Name: "eth0", Driver: "hv_netvsc", Channels: []int{0, 1, 2, 3},
			VF: &hostfixture.NIC{Name: "enP12345s1", Driver: vfDriver, Queues: queues, NUMANode: 0, Affinity: aff},
		}},
		Nodes: []cpuset.Set{cpuset.Range(0, cpus-1)},
	}
}

func TestCheckScenarios(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    hostfixture.Host
		opts    *Options
		status  check.Status
		message string
		irqs    int
		used    string
	}{
		{
			name:    "azure 8 vCPU mlx5 VF skewed onto CPUs 4 and 5 (the incident)",
			host:    azure(8, 8, skewed(4, 5), "mlx5_core"),
			status:  check.Problem,
			message: "8 NIC IRQs of eth0 on 2 of 8 CPUs (4-5)",
			irqs:    8, used: "4-5",
		},
		{
			name:    "azure 8 vCPU mlx5 VF healthy",
			host:    azure(8, 8, nil, "mlx5_core"),
			status:  check.OK,
			message: "8 NIC IRQs of eth0 on 8 of 8 CPUs",
			irqs:    8, used: "0-7",
		},
		{
			name:    "azure 64 vCPU mlx5 VF skewed (two-group masks)",
			host:    azure(64, 32, skewed(40, 41), "mlx5_core"),
			status:  check.Problem,
			message: "32 NIC IRQs of eth0 on 2 of 64 CPUs (40-41)",
			irqs:    32, used: "40-41",
		},
		{
			name:    "azure 64 vCPU mlx5 VF healthy",
			host:    azure(64, 32, func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(2*i + 1); return c, c }, "mlx5_core"),
			status:  check.OK,
			message: "32 NIC IRQs of eth0 on 32 of 64 CPUs",
			irqs:    32,
		},
		{
			name:   "azure MANA VF skewed",
			host:   azure(16, 16, skewed(3), "mana"),
			status: check.Problem, irqs: 16, used: "3",
			message: "16 NIC IRQs of eth0 on 1 of 16 CPUs (3)",
		},
		{
			name:   "multi-queue virtio, 4 pairs healthy",
			host:   hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 4, NUMANode: -1}}},
			status: check.OK, irqs: 8, used: "0-3", message: "8 NIC IRQs of eth0 on 4 of 4 CPUs",
		},
		{
			name:   "multi-queue virtio, all 8 vectors on CPU 0",
			host:   hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 4, NUMANode: -1, Affinity: skewed(0)}}},
			status: check.Problem, irqs: 8, used: "0", message: "8 NIC IRQs of eth0 on 1 of 4 CPUs (0)",
		},
		{
			name:   "Intel TxRx, 8 queues on 8 CPUs, link vector not counted",
			host:   hostfixture.Host{CPUs: 8, NICs: []hostfixture.NIC{{Name: "eno1", Driver: "ixgbe", Queues: 8, NUMANode: -1}}},
			status: check.OK, irqs: 8, used: "0-7",
		},
		{
			name: "two NUMA nodes: NIC on node 1 kept on node 1 is healthy",
			host: hostfixture.Host{CPUs: 16, Nodes: []cpuset.Set{cpuset.Range(0, 7), cpuset.Range(8, 15)},
				NICs: []hostfixture.NIC{{Name: "eth1", Driver: "mlx5_core", Queues: 8, NUMANode: 1,
					Affinity: func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(8 + i); return c, c }}}},
			status: check.OK, irqs: 8, used: "8-15", message: "8 NIC IRQs of eth1 on 8 of 8 CPUs",
		},
		{
			name: "banned CPUs from IRQBALANCE_BANNED_CPULIST shrink the eligible set",
			host: hostfixture.Host{CPUs: 8, IrqbalanceEnv: "# site\nIRQBALANCE_BANNED_CPULIST=\"0-3\"\n",
				NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1,
					Affinity: func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(4 + i); return c, c }}}},
			status: check.OK, irqs: 4, used: "4-7", message: "4 NIC IRQs of eth0 on 4 of 4 CPUs",
		},
		{
			name: "banned CPUs from a hex IRQBALANCE_BANNED_CPUS",
			host: hostfixture.Host{CPUs: 8, IrqbalanceEnv: "IRQBALANCE_BANNED_CPUS=0f\n",
				NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1, Affinity: skewed(4)}}},
			status: check.Problem, irqs: 4, used: "4", message: "4 NIC IRQs of eth0 on 1 of 4 CPUs (4)",
		},
		{
			name: "isolated and nohz_full CPUs are banned when irqbalance's env sets nothing",
			host: hostfixture.Host{CPUs: 4, Isolated: cpuset.New(2), NohzFull: cpuset.New(3),
				NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 2, NUMANode: -1}}},
			status: check.OK, irqs: 2, used: "0-1", message: "2 NIC IRQs of eth0 on 2 of 2 CPUs",
		},
		{
			name: "offline CPUs are not eligible",
			host: hostfixture.Host{CPUs: 8, Offline: cpuset.Range(4, 7),
				NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1}}},
			status: check.OK, irqs: 4, used: "0-3", message: "4 NIC IRQs of eth0 on 4 of 4 CPUs",
		},
		{
			name: "wide masks delivered to one CPU are judged by the effective CPU",
			host: hostfixture.Host{CPUs: 8, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 8, NUMANode: -1,
				Affinity: func(int) (cpuset.Set, cpuset.Set) { return cpuset.Range(0, 7), cpuset.New(0) }}}},
			status: check.Problem, irqs: 8, used: "0", message: "8 NIC IRQs of eth0 on 1 of 8 CPUs (0)",
		},
		{
			name: "a pending move (single-CPU mask, stale effective CPU) counts where it was sent",
			host: hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1,
				Affinity: func(i int) (cpuset.Set, cpuset.Set) { return cpuset.New(i), cpuset.New(0) }}}},
			status: check.OK, irqs: 4, used: "0-3",
		},
		{
			name: "one CPU holding too many: spread over enough CPUs but 6 of 12 on CPU 0",
			host: hostfixture.Host{CPUs: 12, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 12, NUMANode: -1,
				Affinity: func(i int) (cpuset.Set, cpuset.Set) {
					c := cpuset.New(max(0, i-5)) // 0,0,0,0,0,0,1,2,…,6
					return c, c
				}}}},
			opts:   &Options{MinSpreadRatio: 0.5},
			status: check.Problem, irqs: 12, used: "0-6",
		},
		{
			name: "kernel 6.1 interrupts layout, no /sys/kernel/irq: names from /proc/interrupts",
			host: hostfixture.Host{CPUs: 4, Interrupts: "6.1", NoSysKernelIRQ: true, OtherIRQs: 10,
				NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 2, NUMANode: -1, Affinity: skewed(1)}}},
			status: check.Problem, irqs: 4, used: "1", message: "4 NIC IRQs of eth0 on 1 of 4 CPUs (1)",
		},
		{
			name: "kernel 6.18 interrupts layout, no /sys/kernel/irq",
			host: hostfixture.Host{CPUs: 4, Interrupts: "6.18", NoSysKernelIRQ: true,
				NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 2, NUMANode: -1}}},
			status: check.OK, irqs: 4, used: "0-3",
		},
		{
			name:   "excluded interfaces are not judged",
			host:   hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "ib0", Driver: "mlx5_core", Queues: 4, NUMANode: -1, Affinity: skewed(0)}}},
			status: check.OK, irqs: 0, message: "no NIC queue IRQs found: nothing to judge",
		},
		{
			name:   "one CPU: nothing to spread",
			host:   hostfixture.Host{CPUs: 1, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 1, NUMANode: -1}}},
			status: check.OK, irqs: 2, message: "2 NIC IRQs of eth0: one eligible CPU, nothing to spread",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := defaultOpts
			if tc.opts != nil {
				opts = *tc.opts
			}
			rep := runCheck(t, tc.host.MustBuild(t), opts)
			if rep.Status != tc.status {
				t.Errorf("status = %s (%q), want %s", rep.Status, rep.Message, tc.status)
			}
			if tc.message != "" && rep.Message != tc.message {
				t.Errorf("message = %q, want %q", rep.Message, tc.message)
			}
			if len(rep.Message) > check.MaxMessage {
				t.Errorf("message longer than %d bytes: %q", check.MaxMessage, rep.Message)
			}
			if len(rep.NICIRQs) != tc.irqs {
				t.Errorf("got %d NIC IRQs, want %d: %+v", len(rep.NICIRQs), tc.irqs, rep.NICIRQs)
			}
			if tc.used != "" && rep.CPUsUsed.List() != tc.used {
				t.Errorf("cpus_used = %q, want %q", rep.CPUsUsed.List(), tc.used)
			}
			checkPlan(t, rep)
		})
	}
}

// checkPlan asserts the proposed repair is always safe and, applied, healthy.
func checkPlan(t *testing.T, rep *Report) {
	t.Helper()
	if len(rep.Plan.Moves) != len(rep.NICIRQs) {
		t.Errorf("plan has %d moves for %d IRQs", len(rep.Plan.Moves), len(rep.NICIRQs))
	}
	byIRQ := map[int]cpuset.Set{}
	for _, m := range rep.Plan.Moves {
		if m.To.Len() != 1 || !m.To.IsSubsetOf(rep.Online) {
			t.Fatalf("plan moves IRQ %d to %q: not one online CPU", m.IRQ, m.To.List())
		}
		byIRQ[m.IRQ] = m.To
	}
	for _, v := range rep.Interfaces {
		var after []NICIRQ
		for _, q := range rep.NICIRQs {
			if q.Interface == v.Interface {
				q.CPU = byIRQ[q.IRQ].First()
				if !byIRQ[q.IRQ].IsSubsetOf(v.EligibleCPUs) {
					t.Errorf("plan puts IRQ %d on ineligible CPU %d", q.IRQ, q.CPU)
				}
				after = append(after, q)
			}
		}
		if got := Judge(v.Interface, after, v.EligibleCPUs, 1); got.Status != check.OK {
			t.Errorf("the plan would not fix %s even at ratio 1: %s", v.Interface, got.Message)
		}
	}
}

func TestCIVMCapture(t *testing.T) {
	rep := runCheck(t, hostfixture.Capture(hostfixture.CIVM), defaultOpts)
	if rep.Status != check.OK {
		t.Fatalf("status %s: %s", rep.Status, rep.Message)
	}
	want := []struct {
		irq   int
		name  string
		queue string
	}{{38, "virtio2-input.0", "input.0"}, {39, "virtio2-output.0", "output.0"}}
	if len(rep.NICIRQs) != len(want) {
		t.Fatalf("NIC IRQs = %+v", rep.NICIRQs)
	}
	for i, w := range want {
		q := rep.NICIRQs[i]
		if q.IRQ != w.irq || q.Name != w.name || q.Queue != w.queue || q.Interface != "eth0" || q.DeviceInterface != "eth0" {
			t.Errorf("IRQ %d = %+v, want %+v", i, q, w)
		}
		if q.CPU < 0 || q.CPU > 1 {
			t.Errorf("IRQ %d assigned to CPU %d", q.IRQ, q.CPU)
		}
	}
	// IRQ 38 has the wide mask 0-1 and is delivered to CPU 1.
	if q := rep.NICIRQs[0]; q.CPUs.List() != "0-1" || q.EffectiveCPUs.List() != "1" || q.CPU != 1 {
		t.Errorf("IRQ 38 = %+v", q)
	}
	// Under ratio 1, both on one CPU would be a problem; here they are on 1 and 0.
	strict := defaultOpts
	strict.MinSpreadRatio = 1
	if rep := runCheck(t, hostfixture.Capture(hostfixture.CIVM), strict); rep.CPUsUsed.Len() == 1 && rep.Status != check.Problem {
		t.Errorf("both IRQs on one CPU under ratio 1 must be a problem: %s", rep.Message)
	}
}

func TestJSONContract(t *testing.T) {
	rep := runCheck(t, azure(8, 8, skewed(4, 5), "mlx5_core").MustBuild(t), defaultOpts)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"check", "status", "message", "nic_irqs", "eligible_cpus", "cpus_used", "expected_min_cpus", "vmbus_channels"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if m["check"] != "irq" || m["status"] != "problem" || m["expected_min_cpus"].(float64) != 6 {
		t.Errorf("JSON = %s", b)
	}
	q := m["nic_irqs"].([]any)[0].(map[string]any)
	for _, k := range []string{"irq", "name", "interface", "device_interface", "queue", "cpus", "effective_cpus", "cpu"} {
		if _, ok := q[k]; !ok {
			t.Errorf("nic_irqs entry lacks %q: %v", k, q)
		}
	}
	if q["interface"] != "eth0" || q["device_interface"] != "enP12345s1" || q["queue"] != "comp0" ||
		!strings.HasPrefix(q["name"].(string), "mlx5_comp0@pci:") || fmt.Sprint(q["cpus"]) != "[4]" {
		t.Errorf("nic_irqs[0] = %v", q)
	}
	ch := m["vmbus_channels"].([]any)
	if len(ch) != 4 || fmt.Sprint(ch[1]) != "map[channel:15 cpu:1 interface:eth0]" {
		t.Errorf("vmbus_channels = %v", ch)
	}
	// An empty report still has arrays, not nulls.
	empty := runCheck(t, hostfixture.Host{CPUs: 2}.MustBuild(t), defaultOpts)
	b, _ = json.Marshal(empty)
	for _, k := range []string{`"nic_irqs":[]`, `"vmbus_channels":[]`, `"eligible_cpus":[]`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("empty report JSON lacks %s: %s", k, b)
		}
	}
}

func TestVFMissing(t *testing.T) {
	host := hostfixture.Host{CPUs: 8, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "hv_netvsc", Channels: []int{0, 1}}}}
	p := host.MustBuild(t)
	h, _ := hostfs.New(p)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewChecker(h, SysfsLinks{FS: h}, defaultOpts, func() time.Time { return now })
	if rep := c.Run(context.Background()); rep.Status != check.OK {
		t.Fatalf("a netvsc NIC never seen with a VF is not a problem: %s", rep.Message)
	}
	c.SeedVFSeen(map[string]time.Time{"eth0": now.Add(-time.Minute)})
	if rep := c.Run(context.Background()); rep.Status != check.OK {
		t.Fatalf("VF gone 1m (< vfMissingAfter) is not yet a problem: %s", rep.Message)
	}
	now = now.Add(2 * time.Minute)
	rep := c.Run(context.Background())
	if rep.Status != check.Problem || rep.Message != "accelerated networking VF of eth0 missing for 3m0s" {
		t.Fatalf("got %s %q", rep.Status, rep.Message)
	}
	if len(rep.VMBusChannels) != 2 {
		t.Errorf("vmbus channels are reported either way: %+v", rep.VMBusChannels)
	}
}

func TestVFSeenRecorded(t *testing.T) {
	p := azure(4, 4, nil, "mana").MustBuild(t)
	h, _ := hostfs.New(p)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewChecker(h, SysfsLinks{FS: h}, defaultOpts, func() time.Time { return now })
	c.Run(context.Background())
	if got := c.VFSeen()["eth0"]; !got.Equal(now) {
		t.Errorf("VF seen at %v, want %v", got, now)
	}
}

func TestUnknownOnUnreadableRoot(t *testing.T) {
	p := hostfixture.Host{CPUs: 2}.MustBuild(t)
	p.Sys = p.Sys + "-missing"
	rep := runCheck(t, p, defaultOpts)
	if rep.Status != check.Unknown || !strings.HasPrefix(rep.Message, "cannot judge IRQ spread: ") || len(rep.Message) > check.MaxMessage {
		t.Errorf("got %s %q", rep.Status, rep.Message)
	}
}

func TestJudgeRule(t *testing.T) {
	mk := func(cpus ...int) []NICIRQ {
		out := make([]NICIRQ, len(cpus))
		for i, c := range cpus {
			out[i] = NICIRQ{IRQ: i, CPU: c}
		}
		return out
	}
	for _, tc := range []struct {
		cpus     []int
		eligible cpuset.Set
		ratio    float64
		want     check.Status
		min, cap int
	}{
		{[]int{4, 5, 4, 5, 4, 5, 4, 5, 4}, cpuset.Range(0, 7), 0.75, check.Problem, 6, 4},
		{[]int{0, 1, 2, 3, 4, 5, 6, 7}, cpuset.Range(0, 7), 0.75, check.OK, 6, 3},
		{[]int{0, 1, 2, 3, 4, 5, 0, 1}, cpuset.Range(0, 7), 0.75, check.OK, 6, 3},
		{[]int{0, 1, 2, 3, 4, 0, 1, 2}, cpuset.Range(0, 7), 0.75, check.Problem, 6, 3},
		{[]int{0, 0}, cpuset.Range(0, 1), 0.75, check.OK, 1, 3},
		{[]int{0, 0}, cpuset.Range(0, 1), 1, check.Problem, 2, 3},
		{[]int{0, 1}, cpuset.Range(0, 1), 1, check.OK, 2, 3},
		// 16 IRQs on 4 CPUs: cap is max(3, 2*4) = 8.
		{[]int{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3}, cpuset.Range(0, 3), 0.75, check.OK, 3, 8},
		{[]int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3}, cpuset.Range(0, 3), 0.75, check.Problem, 3, 8},
	} {
		v := Judge("eth0", mk(tc.cpus...), tc.eligible, tc.ratio)
		if v.Status != tc.want || v.ExpectedMinCPUs != tc.min || v.MaxAllowed != tc.cap {
			t.Errorf("Judge(%v over %s, %.2f) = %s min %d cap %d, want %s min %d cap %d",
				tc.cpus, tc.eligible, tc.ratio, v.Status, v.ExpectedMinCPUs, v.MaxAllowed, tc.want, tc.min, tc.cap)
		}
	}
}

func TestQueueName(t *testing.T) {
	for name, want := range map[string]string{
		"mlx5_comp0@pci:0001:00:02.0":  "comp0",
		"mlx5_comp15@pci:0001:00:02.0": "comp15",
		"mlx5_async0@pci:0001:00:02.0": "",
		"mlx5_pages_eq@pci:0001:00:02": "",
		"mana_q3@pci:7870:00:00.0":     "q3",
		"mana_hwc@pci:7870:00:00.0":    "",
		"virtio2-input.0":              "input.0",
		"virtio12-output.31":           "output.31",
		"virtio2-config":               "",
		"virtio3-rx":                   "",
		"virtio0-req.0":                "",
		"virtio2-control":              "",
		"eth0-TxRx-3":                  "TxRx-3",
		"i40e-eno1-TxRx-12":            "TxRx-12",
		"ice-ens1f0-TxRx-0":            "TxRx-0",
		"eno1":                         "",
		"eth0-rx-2":                    "rx-2",
		"eth0-tx-2":                    "tx-2",
		"eth0-Tx-Rx-1":                 "Tx-Rx-1",
		"ena-mgmnt@pci:0000:00:05.0":   "",
		"gve-ntfy-blk4@pci:0000:00:04": "ntfy-blk4",
		"nvme0q1":                      "",
		"ttyS0":                        "",
		"":                             "",
	} {
		got, ok := QueueName(name)
		if got != want || ok != (want != "") {
			t.Errorf("QueueName(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}

func FuzzQueueName(f *testing.F) {
	for _, s := range []string{"mlx5_comp1@pci:x", "virtio2-input.0", "eth0-TxRx-1", "mana_q", "virtio-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, ok := QueueName(s)
		if ok && (q == "" || !strings.Contains(s, q)) {
			t.Fatalf("QueueName(%q) = %q", s, q)
		}
	})
}
