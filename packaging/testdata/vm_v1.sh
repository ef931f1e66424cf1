#!/bin/bash
# TestVMPackageCgroupV1Pin's scenario (vm_v1_test.go): on a cgroup v1/hybrid
# guest, installs the package with a static kubelet pin, checks the pin
# through the v1 cpuset cgroup CG, its renewal after a kubelet restart and
# its removal with the package; prints KEY=VALUE results.
# Parameters (vm.Options.Env): DEB (the package's file name), WANT (the
# pinned CPUs), CG (the v1 cpuset cgroup's directory).
# Functions given to wait_until are called through it, which shellcheck
# takes for unreachable code:
# shellcheck disable=SC2317
set -u
# shellcheck source=internal/testenv/vm/guest/lib.sh
. ./lib.sh

NK=nodekeeper.service
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
echo "generated_dropins=$(names /run/systemd/generator/nodekeeper.service.d)"
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
