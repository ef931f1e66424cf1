# shellcheck shell=bash
# The first part of every scenario of vm_test.go, sourced after lib.sh:
# installs the daemon with the packaged unit and defines what the scenarios
# share. It never stops without the journal: fail prints "fail=<why>", the
# journal (block journal) and exits 1.
# Parameters (vm.Options.Env): NIC, WAIT (seconds a wait for kubelet's CPUs
# may take), CHECK_INTERVAL (irq.checkInterval, seconds).

finish() {
	block journal journalctl -u nodekeeper.service -o cat --no-pager
	exit "$1"
}
fail() {
	echo "fail=$*"
	finish 1
}

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

# place TAG BASE: puts queue Q's IRQs (input.Q and output.Q) on CPU BASE+Q,
# all writes back to back; sets placed_at (a now value) after the last write,
# then prints each IRQ's requested CPUs as read back: TAG=IRQ NAME CPUS.
place() {
	local tag=$1 base=$2 n name i
	local -a irqs=() names=()
	while read -r n name; do
		irqs+=("$n")
		names+=("$name")
	done < <(queue_irqs "$NIC")
	[ "${#irqs[@]}" -gt 0 ] || fail "no queue IRQs found for $NIC"
	for i in "${!irqs[@]}"; do
		echo "$((base + ${names[i]##*.}))" >"/proc/irq/${irqs[i]}/smp_affinity_list" ||
			fail "write CPU $((base + ${names[i]##*.})) to IRQ ${irqs[i]} (${names[i]})"
	done
	# shellcheck disable=SC2034 # read by the scenarios
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
