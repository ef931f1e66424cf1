package kubelet

// kubelet's pin under a real kernel with cgroup v2 and the cpuset controller,
// in a QEMU guest (internal/testenv/vm): the daemon, installed with the
// packaged unit, stores AllowedCPUs= on the guest's stand-in kubelet.service
// over D-Bus, systemd enforces it (EffectiveCPUs, the main process's
// Cpus_allowed_list), the pin follows the NIC queue IRQs when they move, where
// the queues cover every CPU kubelet gets the minCPUs least-loaded ones, and
// `nodekeeper undo` gives kubelet every CPU back.
//
// Each test is one VM boot: the payload's run.sh drives the whole scenario in
// the guest and prints key=value lines (then the daemon's journal between
// "journal-begin" and "journal-end"), which the test parses and judges.
// irqbalance is stopped and masked in the guest so that only the payload
// places the IRQs, and irq.remediation is none so that the daemon does not
// move them either.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

// vmScriptHead is the first part of every payload: installing the daemon and
// the shell functions the scenarios use. It never exits early without the journal:
// fail prints "fail=<why>", the journal, and exits 1.
var vmScriptHead = fmt.Sprintf(`#!/bin/bash
set -u
NIC=%[1]s
WAIT=%[2]d
CHECK_INTERVAL=%[3]d

finish() {
	echo "journal-begin"
	journalctl -u nodekeeper.service -o cat --no-pager
	echo "journal-end"
	exit "$1"
}
fail() {
	echo "fail=$*"
	finish 1
}
now() { date +%%s.%%N; }
# elapsed START: seconds since START (a now value), two decimals.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%%.2f", b - a }'; }
# over START LIMIT: true once LIMIT seconds have passed since START.
over() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN { exit !(b - a >= l) }'; }

# kubelet_state sets pid, proc (the main process's Cpus_allowed_list), eff
# (EffectiveCPUs) and allowed (AllowedCPUs) of kubelet.service.
kubelet_state() {
	local k v
	pid='' eff='' allowed='' proc=''
	while IFS='=' read -r k v; do
		case $k in
		MainPID) pid=$v ;;
		EffectiveCPUs) eff=$v ;;
		AllowedCPUs) allowed=$v ;;
		esac
	done < <(systemctl show --property=MainPID --property=EffectiveCPUs --property=AllowedCPUs kubelet.service)
	if [ -n "$pid" ] && [ "$pid" != 0 ]; then
		proc=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
	fi
}

# wait_kubelet TAG COND [START]: polls kubelet's state until the shell
# function COND is true, for at most WAIT seconds; prints TAG_ok (1 or 0),
# TAG_seconds (since START, a now value; default: the call) and the state it
# saw last. Returns 1 when COND never held.
wait_kubelet() {
	local tag=$1 cond=$2 start=${3:-} ok=0
	[ -n "$start" ] || start=$(now)
	while :; do
		kubelet_state
		if "$cond"; then
			ok=1
			break
		fi
		over "$start" "$WAIT" && break
		sleep 0.1
	done
	echo "${tag}_seconds=$(elapsed "$start")"
	echo "${tag}_ok=$ok"
	show_kubelet "$tag"
	[ "$ok" = 1 ]
}

# show_kubelet TAG prints the state kubelet_state read last.
show_kubelet() {
	echo "$1_proc=$proc"
	echo "$1_effective=$eff"
	echo "$1_allowed=$allowed"
}

# queue_irqs prints "IRQ NAME" for each queue IRQ of NIC: its IRQs are those of
# the PCI parent of the virtio device behind the interface (the N of virtioN
# varies), named virtioN-input.Q / virtioN-output.Q in /proc/interrupts.
queue_irqs() {
	local dev virt f n name
	dev=$(readlink -f "/sys/class/net/$NIC/device") || return 1
	virt=${dev##*/}
	for f in "$dev"/../msi_irqs/*; do
		n=${f##*/}
		name=$(awk -v k="$n:" '$1 == k { print $NF }' /proc/interrupts)
		case $name in
		"$virt"-input.* | "$virt"-output.*) echo "$n $name" ;;
		esac
	done
}

# place TAG BASE: puts queue Q's IRQs (input.Q and output.Q) on CPU BASE+Q,
# all writes back to back; sets placed_at (a now value) after the last write,
# then prints each IRQ's requested CPUs as read back: TAG=IRQ NAME CPUS.
place() {
	local tag=$1 base=$2 n name i
	local -a irqs=() names=()
	while read -r n name; do
		irqs+=("$n")
		names+=("$name")
	done < <(queue_irqs)
	[ "${#irqs[@]}" -gt 0 ] || fail "no queue IRQs found for $NIC"
	for i in "${!irqs[@]}"; do
		echo "$((base + ${names[i]##*.}))" >"/proc/irq/${irqs[i]}/smp_affinity_list" ||
			fail "write CPU $((base + ${names[i]##*.})) to IRQ ${irqs[i]} (${names[i]})"
	done
	placed_at=$(now)
	for i in "${!irqs[@]}"; do
		echo "$tag=${irqs[i]} ${names[i]} $(cat "/proc/irq/${irqs[i]}/smp_affinity_list")"
	done
}

netrx() { awk '$1 == "NET_RX:" { $1 = ""; print substr($0, 2) }' /proc/softirqs; }

echo "nproc=$(nproc)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
for f in isolated nohz_full; do
	echo "$f=$(cat "/sys/devices/system/cpu/$f" 2>/dev/null || echo absent)"
done
[ -e "/sys/class/net/$NIC/device" ] || fail "no $NIC"

# irqbalance would move the IRQs the scenario places.
systemctl stop irqbalance.service || fail "stop irqbalance"
systemctl mask --runtime irqbalance.service >/dev/null 2>&1 || fail "mask irqbalance"
echo "irqbalance=$(systemctl is-active irqbalance.service)"

install -D -m 0755 nodekeeper /usr/local/bin/nodekeeper || fail "install the binary"
install -D -m 0644 config.yaml /etc/nodekeeper/config.yaml || fail "install the configuration"
sed 's#^ExecStart=/usr/bin/nodekeeper #ExecStart=/usr/local/bin/nodekeeper #' nodekeeper.service \
	>/etc/systemd/system/nodekeeper.service || fail "install the unit"
grep -q '^ExecStart=/usr/local/bin/nodekeeper run' /etc/systemd/system/nodekeeper.service ||
	fail "the unit's ExecStart is not /usr/bin/nodekeeper run: $(grep ^ExecStart= nodekeeper.service)"
nodekeeper config validate || fail "config validate"
systemctl daemon-reload || fail "daemon-reload"

# start_nodekeeper: Type=notify, so this returns once the first check ran and
# kubelet's pin was stored (READY=1).
start_nodekeeper() {
	local start
	start=$(now)
	if ! systemctl start nodekeeper.service; then
		systemctl status --no-pager nodekeeper.service
		fail "systemctl start nodekeeper"
	fi
	echo "start_seconds=$(elapsed "$start")"
	kubelet_state
	show_kubelet ready
}
`, vm.GuestNIC, int(vmWait.Seconds()), int(vmCheckInterval.Seconds()))

// followScript: 2 queue pairs on CPUs 0-1, kubelet pinned to 2-3; the pairs
// move to 2-3 and kubelet follows to 0-1.
const followScript = `
place irq 0
kubelet_state
show_kubelet before
start_nodekeeper
on23() { [ "$proc" = 2-3 ] && [ "$eff" = 2-3 ]; }
wait_kubelet pin on23 || fail "kubelet is not on 2-3"
[ "$allowed" = 2-3 ] || fail "kubelet is on 2-3 but AllowedCPUs reads '$allowed'"

place moved 2
on01() { [ "$proc" = 0-1 ] && [ "$eff" = 0-1 ]; }
wait_kubelet follow on01 "$placed_at" || fail "kubelet did not follow to 0-1"

# The hysteresis keeps a pin that avoids the net_rx CPUs.
sleep $((3 * CHECK_INTERVAL))
kubelet_state
show_kubelet stable
nodekeeper check kubelet
echo "check_exit=$?"
echo "nodekeeper=$(systemctl is-active nodekeeper.service)"
finish 0
`

// coverScript: 4 queue pairs, one per CPU: no CPU is free of NIC queues, so
// kubelet gets minCPUs of them; then the daemon stops and undo unpins kubelet.
const coverScript = `
place irq 0
echo "netrx_before=$(netrx)"
start_nodekeeper
two() { [ -n "$proc" ] && [ "$proc" = "$eff" ] && [ "$proc" = "$allowed" ] && [ "$(cpus "$proc")" = 2 ]; }
# cpus LIST: the number of CPUs in a CPU list such as 0-1,3.
cpus() { echo "$1" | awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { n += (split($i, r, "-") == 2) ? r[2] - r[1] + 1 : 1 } print n }'; }
wait_kubelet pin two || fail "kubelet is not on 2 CPUs"

# The choice is made again after every check, with NET_RX rates from the
# second check on.
sleep $((3 * CHECK_INTERVAL))
kubelet_state
show_kubelet stable
echo "netrx_after=$(netrx)"
out=$(nodekeeper check kubelet)
echo "check_exit=$?"
echo "check_text=$out"
echo "check-json-begin"
nodekeeper check kubelet --output json | tr -d '\n'
echo
echo "check-json-end"

# The daemon would pin kubelet again at its next check: stop it first.
systemctl stop nodekeeper.service || fail "stop nodekeeper"
nodekeeper undo
echo "undo_exit=$?"
unpinned() { [ "$proc" = 0-3 ] && [ -z "$allowed" ]; }
wait_kubelet undo unpinned
finish 0
`

// vmPayload builds the daemon and makes the payload: the binary, the
// packaged unit, the configuration, and run.sh (vmScriptHead + scenario).
func vmPayload(t *testing.T, scenario string) map[string][]byte {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found to build the daemon: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "nodekeeper")
	start := time.Now()
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", bin, "./cmd/nodekeeper")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nodekeeper: %v\n%s", err, out)
	}
	t.Logf("built nodekeeper in %v", time.Since(start).Round(time.Millisecond))
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"run.sh":             []byte(vmScriptHead + scenario),
		"nodekeeper":         exe,
		"nodekeeper.service": unit,
		"config.yaml":        []byte(vmConfig),
	}
}

// vmOutput is a payload's output taken apart.
type vmOutput struct {
	kv      map[string][]string
	journal string
	json    string
}

func parseVMOutput(out string) vmOutput {
	o := vmOutput{kv: map[string][]string{}}
	rest := out
	if before, after, ok := strings.Cut(rest, "journal-begin\n"); ok {
		rest = before
		o.journal, _, _ = strings.Cut(after, "journal-end\n")
	}
	if before, after, ok := strings.Cut(rest, "check-json-begin\n"); ok {
		j, tail, _ := strings.Cut(after, "check-json-end\n")
		o.json = strings.TrimSpace(j)
		rest = before + tail
	}
	for _, line := range strings.Split(rest, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(k, " \t") {
			o.kv[k] = append(o.kv[k], v)
		}
	}
	return o
}

// one returns the only value of key k ("" and an error when there is not
// exactly one).
func (o vmOutput) one(t *testing.T, k string) string {
	t.Helper()
	if len(o.kv[k]) != 1 {
		t.Errorf("%s: got %q, want one value", k, o.kv[k])
		return ""
	}
	return o.kv[k][0]
}

func (o vmOutput) seconds(t *testing.T, k string) float64 {
	t.Helper()
	s := o.one(t, k)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Errorf("%s = %q: not a number of seconds", k, s)
	}
	return f
}

// want checks that each key holds its value.
func (o vmOutput) want(t *testing.T, kvs ...string) {
	t.Helper()
	for i := 0; i+1 < len(kvs); i += 2 {
		if got := o.one(t, kvs[i]); got != kvs[i+1] {
			t.Errorf("%s = %q, want %q", kvs[i], got, kvs[i+1])
		}
	}
}

var queueName = regexp.MustCompile(`^virtio[0-9]+-(input|output)\.([0-9]+)$`)

// placement checks the "IRQ NAME CPUS" lines of key k: every queue pair
// 0..pairs-1 present once per direction, queue Q on CPU base+Q.
func (o vmOutput) placement(t *testing.T, k string, pairs, base int) {
	t.Helper()
	var got []string
	for _, line := range o.kv[k] {
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

func runVM(t *testing.T, queues int, scenario string) (*vm.Result, vmOutput) {
	t.Helper()
	vm.Require(t)
	payload := vmPayload(t, scenario)
	ctx, cancel := context.WithTimeout(t.Context(), vmRunTimeout+time.Minute)
	defer cancel()
	res, err := vm.Run(t, ctx, vm.Options{CPUs: 4, NICQueues: queues, Payload: payload, Timeout: vmRunTimeout})
	if res == nil {
		t.Fatal(err)
	}
	o := parseVMOutput(res.Output)
	t.Logf("payload output:\n%s", res.Output)
	if err != nil {
		t.Fatal(err)
	}
	o.want(t, "nproc", "4", "irqbalance", "inactive")
	if c := strings.Fields(o.one(t, "controllers")); !slices.Contains(c, "cpuset") {
		t.Errorf("the guest's cgroup2 controllers %q lack cpuset: AllowedCPUs= would not be enforced", c)
	}
	if !strings.Contains(o.journal, "nodekeeper started") {
		t.Errorf("the journal does not show the daemon starting")
	}
	// Every IRQ check must judge: kubelet's CPUs are chosen from its report.
	for _, line := range strings.Split(o.journal, "\n") {
		if strings.Contains(line, "cannot judge IRQ spread") {
			t.Errorf("the daemon's IRQ check could not judge (isolated %q, nohz_full %q): %s",
				o.one(t, "isolated"), o.one(t, "nohz_full"), line)
			break
		}
	}
	if fails := o.kv["fail"]; len(fails) > 0 || res.ExitCode != 0 {
		t.Fatalf("the payload failed (exit code %d): %s", res.ExitCode, strings.Join(fails, "; "))
	}
	return res, o
}

// TestVMKubeletFollowsIRQs: 4 vCPUs, 2 queue pairs (4 queue IRQs) placed on
// CPUs 0-1: the daemon pins kubelet to 2-3 before it reports ready; the IRQs
// move to 2-3 and kubelet follows to 0-1 at the next IRQ check (the applied
// pin overlaps the net_rx CPUs while a disjoint choice exists), well before
// kubelet.repinInterval.
func TestVMKubeletFollowsIRQs(t *testing.T) {
	res, o := runVM(t, 2, followScript)
	o.placement(t, "irq", 2, 0)
	o.placement(t, "moved", 2, 2)
	o.want(t,
		"before_proc", "0-3", "before_allowed", "",
		// The pin is stored before READY=1: kubelet is on 2-3 when start returns.
		"ready_proc", "2-3", "ready_effective", "2-3", "ready_allowed", "2-3",
		"pin_ok", "1", "pin_proc", "2-3", "pin_effective", "2-3", "pin_allowed", "2-3",
		"follow_ok", "1", "follow_proc", "0-1", "follow_effective", "0-1", "follow_allowed", "0-1",
		"stable_proc", "0-1", "stable_effective", "0-1", "stable_allowed", "0-1",
		"check_exit", "0", "nodekeeper", "active")
	start, follow := o.seconds(t, "start_seconds"), o.seconds(t, "follow_seconds")
	// The overlap rule re-pins at the next check (one interval, plus the
	// check's own time under TCG); repinInterval alone would take 10 s.
	if limit := 2*vmCheckInterval + 2*time.Second; follow > limit.Seconds() {
		t.Errorf("kubelet followed the IRQs after %.2f s, want within %v (irq.checkInterval %v)", follow, limit, vmCheckInterval)
	}
	if n := strings.Count(o.journal, "kubelet pinned: "); n < 2 {
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
	res, o := runVM(t, 4, coverScript)
	o.placement(t, "irq", 4, 0)
	o.want(t, "pin_ok", "1", "check_exit", "0", "undo_exit", "0", "undo_ok", "1", "undo_proc", "0-3", "undo_allowed", "")
	pinned, err := cpuset.ParseList(o.one(t, "pin_proc"))
	if err != nil || pinned.Len() != 2 {
		t.Errorf("kubelet on %q (%v), want exactly minCPUs = 2 CPUs", o.one(t, "pin_proc"), err)
	}
	for _, k := range []string{"ready_proc", "ready_effective", "ready_allowed", "pin_effective", "pin_allowed",
		"stable_proc", "stable_effective", "stable_allowed"} {
		if got := o.one(t, k); got != pinned.List() {
			t.Errorf("%s = %q, want kubelet's pin %q", k, got, pinned.List())
		}
	}
	// Without traffic no CPU does NET_RX work and the tie-break decides.
	before, after := o.one(t, "netrx_before"), o.one(t, "netrx_after")
	if before == after {
		if pinned.List() != "2-3" {
			t.Errorf("kubelet on %s with no NET_RX work anywhere (%s), want 2-3 (ties go to the higher CPUs)", pinned, after)
		}
	} else {
		t.Logf("NET_RX counts moved during the run (%s -> %s): kubelet on %s", before, after, pinned)
	}
	var rep Report
	if err := json.Unmarshal([]byte(o.json), &rep); err != nil {
		t.Errorf("check kubelet --output json: %v\n%s", err, o.json)
	} else {
		if rep.Status != check.OK || rep.Disjoint || !rep.KubeletCPUs.Equal(pinned) || !rep.ChosenCPUs.Equal(pinned) ||
			!rep.NetRxCPUs.Equal(cpuset.Range(0, 3)) || !rep.Overlap.Equal(pinned) || rep.Mode != ModeSystemd {
			t.Errorf("check kubelet: %+v; want ok, mode systemd, not disjoint, kubelet = chosen = overlap = %s, net_rx 0-3", rep, pinned)
		}
	}
	if eff := o.one(t, "undo_effective"); eff != "" && eff != "0-3" {
		t.Errorf("EffectiveCPUs after undo = %q, want 0-3 (or none)", eff)
	}
	t.Logf("timings: VM boot %.1f s (guest uptime %.1f s at the payload); systemctl start nodekeeper %.2f s "+
		"(kubelet on %s when it returned); kubelet on 0-3 %.2f s after undo; VM gone after %.1f s",
		res.BootSeconds, res.GuestUptime, o.seconds(t, "start_seconds"), pinned, o.seconds(t, "undo_seconds"),
		res.Duration.Seconds())
}
