package kubelet

// kubelet's pin under a real kernel with cgroup v2 and the cpuset controller,
// in a QEMU guest (internal/testenv/vm): the daemon, installed with the
// packaged unit, stores AllowedCPUs= on the guest's stand-in kubelet.service
// over D-Bus, systemd enforces it (EffectiveCPUs, the main process's
// Cpus_allowed_list), the pin follows the NIC queue IRQs when they move, where
// the queues cover every CPU kubelet gets the minCPUs least-loaded ones, and
// `nodekeeper undo` gives kubelet every CPU back.
//
// Each test is one VM boot: a script under testdata/ (vm_follow.sh,
// vm_cover.sh, both sourcing vm_setup.sh) drives the whole scenario in the
// guest and prints KEY=VALUE lines, then the daemon's journal as the block
// "journal" (vm.Output), which the test judges.
// irqbalance is stopped and masked in the guest so that only the payload
// places the IRQs, and irq.remediation is none so that the daemon does not
// move them either.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/testenv/vm"
)

const (
	// vmCheckInterval is irq.checkInterval in the guest: kubelet's pin is
	// reconciled after every IRQ check.
	vmCheckInterval = 2 * time.Second
	// vmRepinInterval is kubelet.repinInterval (its validation floor).
	vmRepinInterval = 10 * time.Second
	// vmWait bounds each wait for kubelet's CPUs in the guest.
	vmWait = 30 * time.Second
	// vmRunTimeout bounds one VM run (boot, payload, power-off).
	vmRunTimeout = 4 * time.Minute
)

// vmConfig is the daemon's configuration in the guest.
var vmConfig = fmt.Sprintf(`# nodekeeper VM test
metrics:
  listen: ""
imds:
  enabled: "false"
irq:
  checkInterval: %s
  remediation: none
kubelet:
  pinning: auto
  minCPUs: 2
  repinInterval: %s
compaction:
  mode: "off"
`, vmCheckInterval, vmRepinInterval)

// vmPayload builds the daemon and makes the payload beside the scenario's
// script: the binary, the packaged unit, the configuration and
// testdata/vm_setup.sh, which every scenario sources.
func vmPayload(t *testing.T) map[string][]byte {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	bin := nkbin.Build(t)
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := os.ReadFile(filepath.Join("testdata", "vm_setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"vm_setup.sh":        setup,
		"nodekeeper":         exe,
		"nodekeeper.service": unit,
		"config.yaml":        []byte(vmConfig),
	}
}

var queueName = regexp.MustCompile(`^virtio[0-9]+-(input|output)\.([0-9]+)$`)

// placement checks the "IRQ NAME CPUS" lines of key k: every queue pair
// 0..pairs-1 present once per direction, queue Q on CPU base+Q.
func placement(t *testing.T, o vm.Output, k string, pairs, base int) {
	t.Helper()
	var got []string
	for _, line := range o.Values(k) {
		f := strings.Fields(line)
		var m []string
		if len(f) == 3 {
			m = queueName.FindStringSubmatch(f[1])
		}
		if m == nil {
			t.Errorf("%s=%s: want IRQ virtioN-input|output.Q CPUS", k, line)
			continue
		}
		q, _ := strconv.Atoi(m[2])
		if want := strconv.Itoa(base + q); f[2] != want {
			t.Errorf("%s: IRQ %s (%s) is on CPUs %s, want %s", k, f[0], f[1], f[2], want)
		}
		got = append(got, m[1]+"."+m[2])
	}
	var want []string
	for q := range pairs {
		want = append(want, fmt.Sprintf("input.%d", q), fmt.Sprintf("output.%d", q))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: NIC queue IRQs %q, want %q", k, got, want)
	}
}

// runVM runs the scenario script (under testdata/) in a VM with queues NIC
// queue pairs and checks what every scenario must show.
func runVM(t *testing.T, queues int, script string) (*vm.Result, vm.Output) {
	t.Helper()
	vm.Require(t)
	payload := vmPayload(t)
	// Room for the wait on another test's VM, a hung boot and the run again.
	ctx, cancel := context.WithTimeout(t.Context(), 2*vmRunTimeout+15*time.Minute)
	defer cancel()
	res, err := vm.Run(t, ctx, vm.Options{CPUs: 4, NICQueues: queues, Payload: payload, Timeout: vmRunTimeout,
		Script: filepath.Join("testdata", script), Env: map[string]string{"NIC": vm.GuestNIC,
			"WAIT": strconv.Itoa(int(vmWait.Seconds())), "CHECK_INTERVAL": strconv.Itoa(int(vmCheckInterval.Seconds()))}})
	if res == nil {
		t.Fatal(err)
	}
	o := vm.ParseOutput(res.Output)
	journal := o.Block("journal")
	t.Logf("payload output:\n%s", res.Output)
	if err != nil {
		t.Fatal(err)
	}
	o.Want(t, "nproc", "4", "irqbalance", "inactive")
	if c := strings.Fields(o.One(t, "controllers")); !slices.Contains(c, "cpuset") {
		t.Errorf("the guest's cgroup2 controllers %q lack cpuset: AllowedCPUs= would not be enforced", c)
	}
	if !strings.Contains(journal, "nodekeeper started") {
		t.Errorf("the journal does not show the daemon starting")
	}
	// Every IRQ check must judge: kubelet's CPUs are chosen from its report.
	for _, line := range strings.Split(journal, "\n") {
		if strings.Contains(line, "cannot judge IRQ spread") {
			t.Errorf("the daemon's IRQ check could not judge (isolated %q, nohz_full %q): %s",
				o.One(t, "isolated"), o.One(t, "nohz_full"), line)
			break
		}
	}
	o.Report(t, res.ExitCode)
	if res.ExitCode != 0 {
		t.FailNow()
	}
	return res, o
}

// TestVMKubeletFollowsIRQs: 4 vCPUs, 2 queue pairs (4 queue IRQs) placed on
// CPUs 0-1: the daemon pins kubelet to 2-3 before it reports ready; the IRQs
// move to 2-3 and kubelet follows to 0-1 at the next IRQ check (the applied
// pin overlaps the net_rx CPUs while a disjoint choice exists), well before
// kubelet.repinInterval.
func TestVMKubeletFollowsIRQs(t *testing.T) {
	res, o := runVM(t, 2, "vm_follow.sh")
	placement(t, o, "irq", 2, 0)
	placement(t, o, "moved", 2, 2)
	o.Want(t,
		"before_proc", "0-3", "before_allowed", "",
		// The pin is stored before READY=1: kubelet is on 2-3 when start returns.
		"ready_proc", "2-3", "ready_effective", "2-3", "ready_allowed", "2-3",
		"pin_ok", "1", "pin_proc", "2-3", "pin_effective", "2-3", "pin_allowed", "2-3",
		"follow_ok", "1", "follow_proc", "0-1", "follow_effective", "0-1", "follow_allowed", "0-1",
		"stable_proc", "0-1", "stable_effective", "0-1", "stable_allowed", "0-1",
		"check_exit", "0", "nodekeeper", "active")
	start, follow := o.Float(t, "start_seconds"), o.Float(t, "follow_seconds")
	// The overlap rule re-pins at the next check (one interval, plus the
	// check's own time under TCG); repinInterval alone would take 10 s.
	if limit := 2*vmCheckInterval + 2*time.Second; follow > limit.Seconds() {
		t.Errorf("kubelet followed the IRQs after %.2f s, want within %v (irq.checkInterval %v)", follow, limit, vmCheckInterval)
	}
	if n := strings.Count(o.Block("journal"), "kubelet pinned: "); n < 2 {
		t.Errorf("the journal shows %d pins, want at least 2 (2-3, then 0-1)", n)
	}
	t.Logf("timings: VM boot %.1f s (guest uptime %.1f s at the payload); systemctl start nodekeeper %.2f s "+
		"(kubelet on 2-3 when it returned); kubelet followed the IRQ move to 0-1 in %.2f s (checkInterval %v); VM gone after %.1f s",
		res.BootSeconds, res.GuestUptime, start, follow, vmCheckInterval, res.Duration.Seconds())
}

// TestVMKubeletQueuesOnEveryCPU: 4 vCPUs, 4 queue pairs (8 queue IRQs), pair Q
// on CPU Q: no CPU is free of NIC queues, so kubelet gets exactly minCPUs = 2,
// the least NET_RX-loaded (with no traffic every rate ties and higher CPU
// numbers win: 2-3); `check kubelet` is ok; after the daemon stops, `undo`
// resets AllowedCPUs and kubelet's process may use every CPU again.
func TestVMKubeletQueuesOnEveryCPU(t *testing.T) {
	res, o := runVM(t, 4, "vm_cover.sh")
	placement(t, o, "irq", 4, 0)
	o.Want(t, "pin_ok", "1", "check_exit", "0", "undo_exit", "0", "undo_ok", "1", "undo_proc", "0-3", "undo_allowed", "")
	pinned, err := cpuset.ParseList(o.One(t, "pin_proc"))
	if err != nil || pinned.Len() != 2 {
		t.Errorf("kubelet on %q (%v), want exactly minCPUs = 2 CPUs", o.One(t, "pin_proc"), err)
	}
	for _, k := range []string{"ready_proc", "ready_effective", "ready_allowed", "pin_effective", "pin_allowed",
		"stable_proc", "stable_effective", "stable_allowed"} {
		if got := o.One(t, k); got != pinned.List() {
			t.Errorf("%s = %q, want kubelet's pin %q", k, got, pinned.List())
		}
	}
	// Without traffic no CPU does NET_RX work and the tie-break decides.
	before, after := o.One(t, "netrx_before"), o.One(t, "netrx_after")
	if before == after {
		if pinned.List() != "2-3" {
			t.Errorf("kubelet on %s with no NET_RX work anywhere (%s), want 2-3 (ties go to the higher CPUs)", pinned, after)
		}
	} else {
		t.Logf("NET_RX counts moved during the run (%s -> %s): kubelet on %s", before, after, pinned)
	}
	var rep Report
	if err := json.Unmarshal([]byte(o.Block("check-json")), &rep); err != nil {
		t.Errorf("check kubelet --output json: %v\n%s", err, o.Block("check-json"))
	} else {
		if rep.Status != check.OK || rep.Disjoint || !rep.KubeletCPUs.Equal(pinned) || !rep.ChosenCPUs.Equal(pinned) ||
			!rep.NetRxCPUs.Equal(cpuset.Range(0, 3)) || !rep.Overlap.Equal(pinned) || rep.Mode != ModeSystemd {
			t.Errorf("check kubelet: %+v; want ok, mode systemd, not disjoint, kubelet = chosen = overlap = %s, net_rx 0-3", rep, pinned)
		}
	}
	if eff := o.One(t, "undo_effective"); eff != "" && eff != "0-3" {
		t.Errorf("EffectiveCPUs after undo = %q, want 0-3 (or none)", eff)
	}
	t.Logf("timings: VM boot %.1f s (guest uptime %.1f s at the payload); systemctl start nodekeeper %.2f s "+
		"(kubelet on %s when it returned); kubelet on 0-3 %.2f s after undo; VM gone after %.1f s",
		res.BootSeconds, res.GuestUptime, o.Float(t, "start_seconds"), pinned, o.Float(t, "undo_seconds"),
		res.Duration.Seconds())
}
