package packaging_test

// The kubelet pin on a cgroup v1/hybrid host under the hardened unit, in one
// VM boot: the Debian guest (systemd 252) boots with
// systemd.unified_cgroup_hierarchy=0, so systemd mounts the v1 controllers
// (among them cpuset at /sys/fs/cgroup/cpuset) and keeps its own tracking on
// the small cgroup2 mount at /sys/fs/cgroup/unified (hybrid); there is no
// cgroup.controllers at /sys/fs/cgroup. systemd stores AllowedCPUs= there but
// does not enforce it: the daemon creates the v1 cpuset cgroup
// nodekeeper-kubelet, sets its cpuset.cpus and cpuset.mems and moves kubelet's
// main process into it, which the unit allows only through
// CapabilityBoundingSet=CAP_SYS_NICE CAP_DAC_OVERRIDE (the move; the mkdir and
// rmdir in the hierarchy's root, a directory of mode 0555) and
// ReadWritePaths=-/sys/fs/cgroup/cpuset, which the package's generator
// (systemd/nodekeeper-generator) adds on v1 hosts only; the v2 end-to-end
// test sees no capability at all.
//
// The .deb is installed by image/scripts/install.sh with a static pin on CPUs
// 2-3 and everything else off; the daemon is started; kubelet's process must
// end up on 2-3, listed in the cgroup; a restart of kubelet must be followed
// (the new process is moved in again); package removal must give kubelet every
// CPU back and remove the cgroup; and the journal must show no refused
// operation.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/testenv/vm"
)

const (
	v1KubeletCPUs = "2-3"
	v1Timeout     = 8 * time.Minute
)

// v1KernelArgs make systemd 252 boot with the hybrid hierarchy: the v1
// controllers, cpuset among them, at /sys/fs/cgroup/<controller>.
var v1KernelArgs = []string{"systemd.unified_cgroup_hierarchy=0"}

var v1Override = fmt.Sprintf(`metrics:
  listen: ""
imds:
  enabled: "false"
irq:
  remediation: none
kubelet:
  pinning: static
  cpus: %q
compaction:
  mode: "off"
`, v1KubeletCPUs)

func v1ScriptHead(deb string) string {
	return fmt.Sprintf(`#!/bin/bash
set -u
DEB=%q
WANT=%q
CG=/sys/fs/cgroup/cpuset/%s
`, deb, v1KubeletCPUs, "nodekeeper-kubelet")
}

const v1Script = `
OUT=${OUTPUT_DIR:-/output}
NK=nodekeeper.service
problems=0

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
over() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN { exit !(b - a >= l) }'; }
problem() {
	echo "problem=$*"
	problems=$((problems + 1))
}
collect() {
	systemctl status --no-pager "$NK" >"$OUT/nodekeeper-status.txt" 2>&1
	journalctl -u "$NK" -o json --no-pager >"$OUT/journal.json" 2>&1
	journalctl -b --no-pager >"$OUT/journal-all.txt" 2>&1
}
finish() {
	sync
	exit "$1"
}
fatal() {
	echo "fail=$*"
	collect
	finish 1
}
wait_until() {
	local tag=$1 limit=$2 start ok=0
	shift 2
	start=$(now)
	while :; do
		if "$@"; then
			ok=1
			break
		fi
		over "$start" "$limit" && break
		sleep 0.2
	done
	echo "${tag}_seconds=$(elapsed "$start")"
	echo "${tag}_ok=$ok"
	[ "$ok" = 1 ]
}

# kubelet_state sets kpid (MainPID), proc (its Cpus_allowed_list), allowed
# (AllowedCPUs as systemd stores it) and incg (1 when the cgroup lists kpid).
kubelet_state() {
	local k v
	kpid='' allowed='' proc='' incg=0
	while IFS='=' read -r k v; do
		case $k in
		MainPID) kpid=$v ;;
		AllowedCPUs) allowed=$v ;;
		esac
	done < <(systemctl show --property=MainPID --property=AllowedCPUs kubelet.service)
	if [ -n "$kpid" ] && [ "$kpid" != 0 ]; then
		proc=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$kpid/status" 2>/dev/null)
		grep -qx "$kpid" "$CG/cgroup.procs" 2>/dev/null && incg=1
	fi
}
show_kubelet() {
	echo "$1_pid=$kpid"
	echo "$1_proc=$proc"
	echo "$1_allowed=$allowed"
	echo "$1_in_cgroup=$incg"
	echo "$1_cpuset_line=$(grep cpuset "/proc/$kpid/cgroup" 2>/dev/null)"
}
pinned() {
	kubelet_state
	[ "$proc" = "$WANT" ] && [ "$incg" = 1 ]
}

# 0. The guest's cgroup layout.
echo "nproc=$(nproc)"
echo "kernel=$(uname -r)"
echo "systemd_version=$(systemctl --version | awk 'NR == 1 { print $2 }')"
echo "cmdline=$(cat /proc/cmdline)"
echo "cgroup_fstype=$(stat -f -c %T /sys/fs/cgroup)"
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
	echo "root_controllers=present:$(cat /sys/fs/cgroup/cgroup.controllers)"
else
	echo "root_controllers=absent"
fi
if [ -d /sys/fs/cgroup/cpuset ]; then echo "cpuset_dir=present"; else echo "cpuset_dir=absent"; fi
echo "unified_fstype=$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)"
echo "root_cpuset_cpus=$(cat /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null)"
echo "root_cpuset_mems=$(cat /sys/fs/cgroup/cpuset/cpuset.mems 2>/dev/null)"
while read -r _ dir type opts _; do
	case $type in cgroup | cgroup2) echo "cgroup_mount=$dir $type $opts" ;; esac
done </proc/mounts
echo "kubelet_active=$(systemctl is-active kubelet.service)"
kubelet_state
show_kubelet before
[ -d /sys/fs/cgroup/cpuset ] || fatal "no v1 cpuset hierarchy at /sys/fs/cgroup/cpuset"

# 1. The image's install step.
start=$(now)
out=$(NODEKEEPER_CONFIG_OVERRIDE=$(cat override.yaml) bash ./install.sh "$PWD/$DEB" 2>&1)
rc=$?
printf '%s\n' "$out" >"$OUT/install.log"
echo "install_exit=$rc"
echo "install_seconds=$(elapsed "$start")"
[ "$rc" = 0 ] || fatal "install.sh: $out"

# 2. Start: the pin is applied before READY=1.
start=$(now)
systemctl start "$NK" || fatal "systemctl start $NK"
echo "start_seconds=$(elapsed "$start")"
echo "active_after_start=$(systemctl is-active "$NK")"
# The sandbox on this v1 host: the generator's drop-in granted the two
# capabilities of the v1 pin.
pid=$(systemctl show --property=MainPID --value "$NK")
echo "nk_capeff=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")"
echo "generated_dropins=$(ls /run/systemd/generator/nodekeeper.service.d 2>/dev/null | tr '\n' ' ')"
systemd-analyze security --no-pager "$NK" >"$OUT/security.txt" 2>&1
echo "security_exposure=$(awk '/Overall exposure level/ { print $(NF-2) }' "$OUT/security.txt")"
kubelet_state
show_kubelet at_ready
wait_until pinned 30 pinned || problem "kubelet not pinned by the v1 cpuset: proc=$proc in_cgroup=$incg"
kubelet_state
show_kubelet pinned
echo "cg_cpus=$(cat "$CG/cpuset.cpus" 2>/dev/null)"
echo "cg_mems=$(cat "$CG/cpuset.mems" 2>/dev/null)"
echo "cg_procs=$(tr '\n' ' ' <"$CG/cgroup.procs" 2>/dev/null)"
echo "cg_tasks=$(wc -l <"$CG/tasks" 2>/dev/null)"
nodekeeper check kubelet >"$OUT/check-kubelet.txt" 2>&1
echo "check_kubelet_exit=$?"
echo "nk_pid=$(systemctl show --property=MainPID --value "$NK")"

# 3. kubelet restarts: its new process starts in the root cpuset and must be
# moved in again.
old=$kpid
start=$(now)
systemctl restart kubelet.service || problem "systemctl restart kubelet"
newpid() { kubelet_state; [ -n "$kpid" ] && [ "$kpid" != 0 ] && [ "$kpid" != "$old" ]; }
wait_until newpid 15 newpid || problem "kubelet has no new MainPID"
repinned() { pinned && [ "$kpid" != "$old" ]; }
wait_until repinned 30 repinned || problem "the restarted kubelet was not moved into the cpuset: proc=$proc in_cgroup=$incg"
echo "restart_to_repinned_seconds=$(elapsed "$start")"
kubelet_state
show_kubelet restarted
echo "cg_procs_restarted=$(tr '\n' ' ' <"$CG/cgroup.procs" 2>/dev/null)"
echo "nk_active_end=$(systemctl is-active "$NK")"
echo "nk_restarts=$(systemctl show --property=NRestarts --value "$NK")"
echo "nk_pid_end=$(systemctl show --property=MainPID --value "$NK")"
systemctl show "$NK" >"$OUT/nodekeeper-show.txt"
cp /run/nodekeeper/state.json "$OUT/state.json" 2>/dev/null
collect

# 4. Removal: the daemon stops, nodekeeper undo moves kubelet back and
# removes the cgroup.
start=$(now)
dpkg --remove nodekeeper >"$OUT/dpkg-remove.log" 2>&1
echo "remove_exit=$?"
echo "remove_seconds=$(elapsed "$start")"
echo "after_remove_status=$(dpkg-query --show --showformat='${db:Status-Status}' nodekeeper)"
echo "after_remove_active=$(systemctl show --property=ActiveState --value "$NK")"
kubelet_state
show_kubelet after_remove
if [ -e "$CG" ]; then echo "after_remove_cgroup=present"; else echo "after_remove_cgroup=absent"; fi
journalctl -u "$NK" -o json --no-pager >"$OUT/journal.json"
echo "problems=$problems"
[ "$problems" = 0 ]
finish $?
`

// TestVMPackageCgroupV1Pin: see the top of this file.
func TestVMPackageCgroupV1Pin(t *testing.T) {
	vm.Require(t)
	p := buildPackages(t)
	deb, err := os.ReadFile(p.deb)
	if err != nil {
		t.Fatal(err)
	}
	install, err := os.ReadFile(repo("image/scripts/install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	debName := filepath.Base(p.deb)
	payload := map[string][]byte{
		"run.sh":        []byte(v1ScriptHead(debName) + v1Script),
		"install.sh":    install,
		debName:         deb,
		"override.yaml": []byte(v1Override),
	}

	// Waiting for another VM of this host does not count against v1Timeout.
	ctx, cancel := context.WithTimeout(t.Context(), v1Timeout+15*time.Minute)
	defer cancel()
	res, err := vm.Run(t, ctx, vm.Options{CPUs: 4, NICQueues: 2, OutputMiB: 16, Payload: payload, Timeout: v1Timeout,
		KernelArgs: v1KernelArgs})
	if res == nil {
		t.Fatal(err)
	}
	o, journal, own := guestRun(t, res, err, "install.log", "dpkg-remove.log", "check-kubelet.txt", "nodekeeper-status.txt", "state.json")

	// The guest runs the v1/hybrid hierarchy.
	o.want(t, "nproc", "4", "root_controllers", "absent", "cpuset_dir", "present", "root_cpuset_cpus", "0-3",
		"kubelet_active", "active", "before_proc", "0-3", "before_in_cgroup", "0")
	if !slices.ContainsFunc(o["cgroup_mount"], func(m string) bool {
		f := strings.Fields(m)
		return len(f) == 3 && f[0] == "/sys/fs/cgroup/cpuset" && f[1] == "cgroup" && slices.Contains(strings.Split(f[2], ","), "cpuset")
	}) {
		t.Errorf("no v1 cpuset mount at /sys/fs/cgroup/cpuset: %q", o["cgroup_mount"])
	}

	// Install, start, the pin.
	o.want(t, "install_exit", "0", "active_after_start", "active", "pinned_ok", "1",
		"pinned_proc", v1KubeletCPUs, "pinned_allowed", v1KubeletCPUs, "pinned_in_cgroup", "1",
		"cg_cpus", v1KubeletCPUs, "cg_mems", o.one(t, "root_cpuset_mems"), "check_kubelet_exit", "0")
	for _, k := range []string{"pinned_cpuset_line", "restarted_cpuset_line"} {
		if l := o.one(t, k); !strings.HasSuffix(l, ":cpuset:/nodekeeper-kubelet") {
			t.Errorf("%s = %q: kubelet's /proc/PID/cgroup does not put it in the v1 cpuset nodekeeper-kubelet", k, l)
		}
	}
	if !slices.Contains(strings.Fields(o.one(t, "cg_procs")), o.one(t, "pinned_pid")) {
		t.Errorf("cgroup.procs of nodekeeper-kubelet = %q, want kubelet's pid %s", o.one(t, "cg_procs"), o.one(t, "pinned_pid"))
	}
	if o.one(t, "at_ready_proc") != v1KubeletCPUs {
		t.Logf("note: when systemctl start returned, kubelet ran on %q (in cgroup %s)", o.one(t, "at_ready_proc"), o.one(t, "at_ready_in_cgroup"))
	}

	// Only here, on cgroup v1, the generator grants CAP_DAC_OVERRIDE (bit 1)
	// and CAP_SYS_NICE (bit 23), and the exposure stays within bounds.
	o.want(t, "nk_capeff", "0000000000800002", "generated_dropins", "50-cgroup-v1.conf 50-node-compact.conf ")
	if x := o.float(t, "security_exposure"); x <= 0 || x > 2.5 {
		t.Errorf("systemd-analyze security nodekeeper.service in the v1 guest: %v, want at most 2.5\n%s", x, res.Files["security.txt"])
	}

	// The restart of kubelet is followed.
	o.want(t, "newpid_ok", "1", "repinned_ok", "1", "restarted_proc", v1KubeletCPUs, "restarted_in_cgroup", "1",
		"nk_active_end", "active", "nk_restarts", "0")
	if o.one(t, "restarted_pid") == o.one(t, "pinned_pid") {
		t.Errorf("kubelet's MainPID %s did not change with the restart", o.one(t, "restarted_pid"))
	}
	if !slices.Contains(strings.Fields(o.one(t, "cg_procs_restarted")), o.one(t, "restarted_pid")) {
		t.Errorf("after the restart cgroup.procs = %q, want the new pid %s", o.one(t, "cg_procs_restarted"), o.one(t, "restarted_pid"))
	}
	if o.one(t, "nk_pid_end") != o.one(t, "nk_pid") {
		t.Errorf("nodekeeper's MainPID went from %s to %s: the daemon was restarted", o.one(t, "nk_pid"), o.one(t, "nk_pid_end"))
	}

	// Removal.
	o.want(t, "remove_exit", "0", "after_remove_status", "config-files", "after_remove_active", "inactive",
		"after_remove_proc", "0-3", "after_remove_allowed", "", "after_remove_in_cgroup", "0", "after_remove_cgroup", "absent")

	// The journal: pinned, re-pinned, nothing refused.
	var pinned, repinned int
	for _, e := range own {
		switch {
		case e["MESSAGE_ID"] == logging.MsgKubeletPinned:
			pinned++
		case e["MESSAGE_ID"] == logging.MsgKubeletPinFailed:
			t.Errorf("the journal has a kubelet pin failure: %s", e["MESSAGE"])
		case strings.HasPrefix(e["MESSAGE"], "kubelet restarted: pin re-applied"):
			repinned++
		}
		if p, _ := strconv.Atoi(e["PRIORITY"]); p <= 3 {
			t.Errorf("the daemon logged an error: %s", e["MESSAGE"])
		}
	}
	if pinned == 0 {
		t.Errorf("the journal has no kubelet pinned entry (MESSAGE_ID=%s)", logging.MsgKubeletPinned)
	}
	if repinned == 0 {
		t.Errorf("the journal does not say the restarted kubelet was re-pinned")
	}
	for _, e := range journal {
		m := strings.ToLower(e["MESSAGE"] + " " + e["ERR"])
		for _, bad := range []string{"permission denied", "operation not permitted", "read-only file system"} {
			if strings.Contains(m, bad) {
				t.Errorf("the journal shows %q (the unit's hardening?): %s", bad, e["MESSAGE"])
			}
		}
	}

	t.Logf("numbers (TCG guest): VM boot %.1f s (guest uptime %.1f s at the payload); systemd %s, kernel %s; "+
		"exposure %s with the v1 drop-in; install.sh %.1f s; systemctl start → READY=1 %.2f s (kubelet then on %s); READY=1 → pin seen by the poll %.2f s; "+
		"kubelet restart → new process re-pinned %.2f s (pid %s → %s); dpkg --remove %.2f s; %d journal entries of the daemon; VM gone after %.1f s",
		res.BootSeconds, res.GuestUptime, o.one(t, "systemd_version"), o.one(t, "kernel"), o.one(t, "security_exposure"),
		o.float(t, "install_seconds"), o.float(t, "start_seconds"), o.one(t, "at_ready_proc"), o.float(t, "pinned_seconds"),
		o.float(t, "restart_to_repinned_seconds"), o.one(t, "pinned_pid"), o.one(t, "restarted_pid"),
		o.float(t, "remove_seconds"), len(own), res.Duration.Seconds())
}
