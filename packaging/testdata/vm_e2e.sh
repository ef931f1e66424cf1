#!/bin/bash
# TestVMPackageFreezeResume's scenario (vm_e2e_test.go): installs the package,
# walks a Freeze through a pause of the daemon, checks the sandbox, removes
# the package; prints KEY=VALUE results and leaves the witnesses (journal,
# metrics, state) on the output disk.
# Parameters (vm.Options.Env): NIC, VM_NAME, IMDS (host:port), METRICS
# (host:port, local), NODE_ADDR, OUTSIDE_ADDR, PAUSE and COOLDOWN (seconds),
# DEB (the package's file name), MSG_SCHEDULED and MSG_PAUSE (message ids).
# Functions given to wait_until are called through it, which shellcheck
# takes for unreachable code:
# shellcheck disable=SC2317
set -u
# shellcheck source=internal/testenv/vm/guest/lib.sh
. ./lib.sh

NK=nodekeeper.service
imds_pid=

# fatal WHY: what follows cannot run; collect what there is and stop.
fatal() {
	echo "fail=$*"
	systemctl status --no-pager "$NK" >"$OUT/nodekeeper-status.txt" 2>&1
	journalctl -u "$NK" -o json --no-pager >"$OUT/journal.json" 2>&1
	finish 1
}
finish() {
	[ -f /run/fakeimds.log ] && cp /run/fakeimds.log "$OUT/fakeimds.log"
	# The output disk is unmounted after the script: nothing may keep it open.
	if [ -n "$imds_pid" ]; then
		kill "$imds_pid" 2>/dev/null
		wait "$imds_pid" 2>/dev/null
	fi
	sync
	exit "$1"
}

# The daemon's own journal entries (not systemd's about its unit).
nk_entries() { journalctl -q --no-pager -o cat _SYSTEMD_UNIT="$NK" "$@"; }
has_msgid() { [ -n "$(nk_entries MESSAGE_ID="$1")" ]; }
has_msg() { nk_entries | grep -qF -- "$1"; }

# masks TAG: one TAG=IRQ NAME REQUESTED EFFECTIVE line per queue IRQ.
masks() {
	local n name
	while read -r n name; do
		echo "$1=$n $name $(cat "/proc/irq/$n/smp_affinity_list") $(cat "/proc/irq/$n/effective_affinity_list" 2>/dev/null)"
	done < <(queue_irqs "$NIC")
}
mask_sig() {
	local n name
	while read -r n name; do printf '%s:%s ' "$n" "$(cat "/proc/irq/$n/smp_affinity_list")"; done < <(queue_irqs "$NIC")
}
single_cpus() {
	local n name m rc=0
	while read -r n name; do
		m=$(cat "/proc/irq/$n/smp_affinity_list")
		case $m in *[-,]*) rc=1 ;; esac
	done < <(queue_irqs "$NIC")
	return "$rc"
}
# settled: irqbalance put each queue IRQ on one CPU and left them alone for 3 s.
last_sig='' last_change=''
settled() {
	local sig
	sig=$(mask_sig)
	if [ "$sig" != "$last_sig" ]; then
		last_sig=$sig last_change=$(now)
		return 1
	fi
	single_cpus && over "$last_change" 3
}

# kubelet_state sets pid, proc (the main process's Cpus_allowed_list), eff
# (EffectiveCPUs) and allowed (AllowedCPUs) of kubelet.service.
kubelet_state() {
	local k v
	kpid='' eff='' allowed='' proc=''
	while IFS='=' read -r k v; do
		case $k in
		MainPID) kpid=$v ;;
		EffectiveCPUs) eff=$v ;;
		AllowedCPUs) allowed=$v ;;
		esac
	done < <(systemctl show --property=MainPID --property=EffectiveCPUs --property=AllowedCPUs kubelet.service)
	if [ -n "$kpid" ] && [ "$kpid" != 0 ]; then
		proc=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$kpid/status" 2>/dev/null)
	fi
}
show_kubelet() {
	echo "$1_proc=$proc"
	echo "$1_effective=$eff"
	echo "$1_allowed=$allowed"
}
# nk_cpu PID: the process's user + system CPU seconds.
nk_cpu() {
	awk -v h="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / h }' "/proc/$1/stat"
}
# irqbalance_age: seconds since irqbalance.service last left inactive.
irqbalance_age() {
	local us
	us=$(systemctl show --property=InactiveExitTimestampMonotonic --value irqbalance.service)
	awk -v us="$us" -v up="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", up - us / 1e6 }'
}

echo "nproc=$(nproc)"
echo "kernel=$(uname -r)"
echo "irqbalance_version=$(dpkg-query --show --showformat='${Version}' irqbalance)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "nohz_full=$(cat /sys/devices/system/cpu/nohz_full)"
[ -e "/sys/class/net/$NIC/device" ] || fatal "no $NIC"
masks boot

# 1. The image's install step: the package, the override, enabled, verified.
start=$(now)
out=$(NODEKEEPER_CONFIG_OVERRIDE=$(cat override.yaml) bash ./install.sh "$PWD/$DEB" 2>&1)
rc=$?
printf '%s\n' "$out" >"$OUT/install.log"
echo "install_exit=$rc"
echo "install_seconds=$(elapsed "$start")"
[ "$rc" = 0 ] || fatal "install.sh: $out"
echo "after_install_enabled=$(systemctl is-enabled "$NK")"
echo "after_install_active=$(systemctl is-active "$NK")"

# 2. The fake IMDS, at Azure's address in a network namespace of its own
# ("outside", over a veth pair; the node reaches 169.254.169.254 through it,
# as an Azure VM through its gateway): this VM's Freeze is Scheduled from the
# start. The outside namespace also plays a host that scrapes the metrics.
ip netns add outside || fatal "ip netns add outside"
ip link add nk-node type veth peer name nk-out netns outside || fatal "veth pair"
if ! { ip addr add "$NODE_ADDR/24" dev nk-node && ip link set nk-node up; }; then
	fatal "nk-node up"
fi
if ! { ip -n outside link set lo up && ip -n outside addr add "$OUTSIDE_ADDR/24" dev nk-out &&
	ip -n outside addr add "${IMDS%:*}/32" dev nk-out && ip -n outside link set nk-out up; }; then
	fatal "nk-out up"
fi
ip route add "${IMDS%:*}/32" via "$OUTSIDE_ADDR" dev nk-node || fatal "route to ${IMDS%:*}"
mkdir -p /run/fakeimds
ip netns exec outside ./fakeimds serve -listen "$IMDS" -vm "$VM_NAME" -dir /run/fakeimds >/run/fakeimds.log 2>&1 &
imds_pid=$!
imds_up() { ./fakeimds get "http://$IMDS/metadata/scheduledevents?api-version=2020-07-01" >/dev/null 2>&1; }
wait_until imds 20 imds_up || fatal "the fake IMDS does not answer"
./fakeimds get -bare "http://$IMDS/metadata/instance" >/dev/null 2>&1
echo "imds_bare_exit=$?"

# 3. irqbalance's own placement of the queue IRQs. irqbalance 1.9 leaves an
# IRQ alone after its first placement only when it had to write the mask then
# (else it writes it back every interval and undoes any skew): every mask is
# made wide before irqbalance starts.
systemctl stop irqbalance.service || fatal "stop irqbalance"
while read -r n name; do
	echo "0-$(($(nproc) - 1))" >"/proc/irq/$n/smp_affinity_list" || fatal "widen IRQ $n ($name)"
done < <(queue_irqs "$NIC")
systemctl start irqbalance.service || fatal "start irqbalance"
wait_until placed 60 settled || problem "irqbalance did not place the NIC IRQs: $(mask_sig)"
masks placed
nodekeeper check irq --output json >"$OUT/check-irq-before.json"
echo "check_irq_before_exit=$?"
echo "kubelet_active=$(systemctl is-active kubelet.service)"
kubelet_state
show_kubelet kubelet_before
cat /proc/buddyinfo >"$OUT/buddyinfo-before.txt"

# 4. Start: Type=notify, so start returns at READY=1. The conntrack table
# exists (an AKS node has it loaded by kube-proxy): the daemon's SNAT scan
# must read it with the unit's one capability.
modprobe nf_conntrack_netlink || problem "modprobe nf_conntrack_netlink"
start=$(now)
systemctl start "$NK" || fatal "systemctl start $NK"
echo "start_seconds=$(elapsed "$start")"
echo "active_after_start=$(systemctl is-active "$NK")"
echo "nk_cpu_at_ready=$(nk_cpu "$(systemctl show --property=MainPID --value "$NK")")"
# The sandbox as it runs: cgroup v2, so the generator granted no capability
# beyond the unit's CAP_NET_ADMIN, only the compact file of each NUMA node.
pid=$(systemctl show --property=MainPID --value "$NK")
echo "nk_capeff=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")"
echo "nk_capbnd=$(awk '/^CapBnd:/ { print $2 }' "/proc/$pid/status")"
echo "generated_dropins=$(names /run/systemd/generator/nodekeeper.service.d)"
echo "generated_compact=$(grep -h '^ReadWritePaths=' /run/systemd/generator/nodekeeper.service.d/50-node-compact.conf 2>/dev/null)"
systemd-analyze security --no-pager "$NK" >"$OUT/security.txt" 2>&1
echo "security_exposure=$(awk '/Overall exposure level/ { print $(NF-2) }' "$OUT/security.txt")"
# In the daemon's own mount namespace (its view of /sys): the node's compact
# file is writable, its hugepage count is not (the value is written back
# unchanged, so nothing would change even if it were).
hp=/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages
# shellcheck disable=SC2016 # expanded by the inner sh
out=$(nsenter -t "$pid" -m sh -c 'v=$(cat "$1") && echo "$v" >"$1"' sh "$hp" 2>&1)
echo "sandbox_nr_hugepages_exit=$?"
echo "sandbox_nr_hugepages_err=$out"
out=$(nsenter -t "$pid" -m sh -c 'echo 1 >/sys/devices/system/node/node0/compact' 2>&1)
echo "sandbox_compact_exit=$?"
echo "sandbox_compact_err=$out"
echo "nk_ready_at=$(now)"
kubelet_state
show_kubelet kubelet_at_ready
wait_until freeze_scheduled 20 has_msg "scheduled event for this VM" || fatal "the daemon did not see the Freeze"

# A restart of irqbalance is refused until its last start is irq.cooldown
# old; the repair comes PAUSE + settleDelay after the stop.
old_enough() { awk -v a="$(irqbalance_age)" -v c="$COOLDOWN" -v p="$PAUSE" 'BEGIN { exit !(a + p >= c + 1) }'; }
wait_until cooldown 30 old_enough || problem "irqbalance started too recently: $(irqbalance_age) s ago"

# 5. The Freeze starts.
touch /run/fakeimds/start
wait_until freeze_started 20 has_msgid "$MSG_SCHEDULED" || fatal "the daemon did not see the Freeze start"

# 6. The pause: the daemon stops for PAUSE seconds, and the queue IRQs
# collapse onto CPU 0 meanwhile.
pid=$(systemctl show --property=MainPID --value "$NK")
echo "nk_pid=$pid"
kill -STOP "$pid" || fatal "SIGSTOP $pid"
stop_at=$(now)
stopped() { [ "$(awk '{ print $3 }' "/proc/$pid/stat")" = T ]; }
if ! wait_until sigstop 2 stopped; then
	kill -CONT "$pid"
	fatal "the daemon did not stop"
fi
while read -r n name; do
	echo 0 >"/proc/irq/$n/smp_affinity_list" || problem "skew IRQ $n ($name) onto CPU 0"
done < <(queue_irqs "$NIC")
masks skewed
sleep "$(awk -v a="$stop_at" -v b="$(now)" -v p="$PAUSE" 'BEGIN { d = p - (b - a); printf "%.3f", (d > 0 ? d : 0) }')"
masks before_cont
echo "cont_at_us=$(date +%s%6N)"
kill -CONT "$pid"
echo "stopped_seconds=$(elapsed "$stop_at")"
cont_at=$(now)

# 7. The daemon sees the pause; Azure removes the event after the impact.
wait_until pause_seen 15 has_msgid "$MSG_PAUSE" || problem "no VM pause in the journal"
touch /run/fakeimds/remove
wait_until freeze_over 20 has_msg "scheduled event over" || problem "the daemon did not see the Freeze end"
wait_until verified 45 has_msg "after the VM pause: spread" || problem "no verdict after the pause"
echo "cont_to_verified_seen=$(elapsed "$cont_at")"
masks repaired

# 8. kubelet follows the new placement at a later check.
kubelet_ok() { nodekeeper check kubelet >/dev/null 2>&1; }
wait_until kubelet_check 30 kubelet_ok || problem "check kubelet: $(nodekeeper check kubelet)"

# 9. The tiny compaction threshold was for the start: back to the default,
# with a reload (SIGHUP).
printf 'compaction:\n  unusableIndexThreshold: 0.8\n' >/etc/nodekeeper/config.d/60-compaction.yaml
nodekeeper config validate || problem "config validate with 60-compaction.yaml"
systemctl reload "$NK" || problem "systemctl reload $NK"
wait_until reloaded 15 has_msg "configuration reloaded" || problem "no reload in the journal"
compaction_ok() { nodekeeper check compaction >/dev/null 2>&1; }
wait_until compaction_check 30 compaction_ok || problem "check compaction: $(nodekeeper check compaction)"

# 9b. Without irqbalance the daemon spreads the queue IRQs itself: the
# hardened unit must be able to write /proc/irq.
systemctl mask --now irqbalance.service >/dev/null 2>&1 || problem "mask irqbalance"
while read -r n name; do
	echo 0 >"/proc/irq/$n/smp_affinity_list" || problem "skew IRQ $n ($name) onto CPU 0"
done < <(queue_irqs "$NIC")
masks skewed_again
wait_until own_spread 60 has_msg "IRQ masks written" || problem "no spread of our own with irqbalance masked"
spread_ok() { nodekeeper check irq >/dev/null 2>&1; }
wait_until own_spread_verified 20 spread_ok || problem "check irq after our own spread: $(nodekeeper check irq)"
masks spread_by_nodekeeper

# 10. The witnesses.
nodekeeper check all >"$OUT/check-all.txt" 2>&1
echo "check_all_exit=$?"
nodekeeper check all --output json >"$OUT/check-all.json" 2>&1
./fakeimds get "http://$METRICS/metrics" >"$OUT/metrics.txt"
echo "metrics_exit=$?"
systemctl show "$NK" >"$OUT/nodekeeper-show.txt"
systemctl show --property=AllowedCPUs --property=EffectiveCPUs kubelet.service >"$OUT/kubelet-show.txt"
kubelet_state
show_kubelet kubelet_end
masks end
cp /run/nodekeeper/state.json "$OUT/state.json"
nodekeeper status >"$OUT/status.txt" 2>&1
# The daemon's own SNAT scan (not the CLI's, which runs with every
# capability): status shows what the daemon recorded.
echo "snat_daemon=$(nodekeeper status --output json | tr -d ' \n' | grep -o '"snat":{"check":"snat","status":"[a-z]*"')"
echo "nk_cpu_seconds=$(nk_cpu "$pid")"
echo "nk_end_at=$(now)"
echo "nk_rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")"
echo "nk_alive_seconds=$(ps -o etimes= -p "$pid" | tr -d ' ')"
echo "main_pid_end=$(systemctl show --property=MainPID --value "$NK")"

# 10b. The unit's IP allow list: the metrics port answers on localhost (above)
# but not to the outside namespace, another host as far as the filter can
# tell, until the documented drop-in names its network; metrics.listen
# already covers every address, so only the filter is in the way.
scrape() { ip netns exec outside timeout 5 ./fakeimds get "http://$NODE_ADDR:${METRICS##*:}/healthz" >/dev/null 2>&1; }
start=$(now)
scrape
echo "scrape_outside_exit=$?"
echo "scrape_outside_seconds=$(elapsed "$start")"
mkdir -p /etc/systemd/system/nodekeeper.service.d
printf '[Service]\nIPAddressAllow=%s/24\n' "${OUTSIDE_ADDR%.*}.0" >/etc/systemd/system/nodekeeper.service.d/50-scrape.conf
systemctl daemon-reload || problem "daemon-reload with the scrape drop-in"
systemctl restart "$NK" || problem "restart $NK with the scrape drop-in"
wait_until scrape_dropin 20 scrape
./fakeimds get "http://$METRICS/healthz" >/dev/null 2>&1
echo "scrape_local_dropin_exit=$?"

# 10c. The DNS probe under the unit: the cluster DNS address (here one of
# the outside namespace's, outside the scrape drop-in's network, nothing
# listening on port 53) is not on the allow list, so the daemon's probe says
# its queries are blocked (unknown, not a problem of the DNS); the documented
# drop-in lets them out, and the port's refusal is then a problem.
DNS_ADDR=198.51.100.53
ip -n outside addr add "$DNS_ADDR/32" dev lo || problem "add $DNS_ADDR in the outside namespace"
ip route add "$DNS_ADDR/32" via "$OUTSIDE_ADDR" dev nk-node || problem "route to $DNS_ADDR"
dns_status() { nodekeeper status --output json | tr -d '\n' | grep -o '"dns": *{[^}]*}'; }
dns_says() { dns_status | grep -q "$1"; }
printf 'dns:\n  enabled: true\n  servers: ["%s"]\n  timeout: 500ms\n  interval: 5s\n' "$DNS_ADDR" >/etc/nodekeeper/config.d/60-dns.yaml
systemctl restart "$NK" || problem "restart $NK with the DNS probe"
wait_until dns_blocked 20 dns_says 'sending blocked'
echo "dns_blocked=$(dns_status)"
printf '[Service]\nIPAddressAllow=%s\n' "$DNS_ADDR" >/etc/systemd/system/nodekeeper.service.d/50-dns.conf
systemctl daemon-reload || problem "daemon-reload with the DNS drop-in"
systemctl restart "$NK" || problem "restart $NK with the DNS drop-in"
wait_until dns_allowed 20 dns_says 'connection refused'
echo "dns_allowed=$(dns_status)"
rm -f /etc/nodekeeper/config.d/60-dns.yaml

# 10d. The conntrack check under the unit: a judgement from the counters
# (netlink under CAP_NET_ADMIN), the kernel log closed to it; the documented
# drop-in opens /dev/kmsg, and a table-full line written there becomes part
# of the daemon's verdict.
ct_status() { nodekeeper status --output json | tr -d '\n' | grep -o '"conntrack": *{[^}]*}'; }
ct_says() { ct_status | grep -q "$1"; }
printf 'conntrack:\n  window: 2s\nlatency:\n  window: 2s\n' >/etc/nodekeeper/config.d/60-conntrack.yaml
systemctl restart "$NK" || problem "restart $NK with 2 s conntrack and latency windows"
wait_until ct_judged 20 ct_says '"status": *"ok"'
echo "ct_daemon=$(ct_status)"
# The NET_RX latency programs load and attach under the unit (CAP_BPF,
# CAP_PERFMON, bpf(2)): the daemon's source is ebpf, not unavailable.
lat_status() { nodekeeper status --output json | tr -d '\n' | grep -o '"latency": *{[^}]*"source": *"[a-z]*"'; }
lat_says() { lat_status | grep -q "$1"; }
wait_until lat_ebpf 20 lat_says '"source": *"ebpf"'
echo "lat_daemon=$(lat_status)"
echo "lat_check=$(nodekeeper check latency)"
# CPUs with NET_RX samples in the daemon's last window: scrapes from the
# outside namespace (allowed by the scrape drop-in above) bring packets in.
lat_cpus() { nodekeeper check latency --output json | tr -d ' \n' | grep -o '"cpu":[0-9]*' | wc -l; }
lat_sampled() { scrape; [ "$(lat_cpus)" -gt 0 ]; }
wait_until lat_samples 30 lat_sampled
echo "lat_cpus=$(lat_cpus)"
echo "lat_sampled_check=$(nodekeeper check latency)"
# A CPU hog competing with ksoftirqd, measured by the daemon under the unit:
# a loopback flood in a namespace of its own whose NET_RX work is steered
# (RPS) to CPU 3, made costly by 3000 iptables rules so that it goes to
# ksoftirqd, and two busy loops on CPU 3 at the same priority. CPU 3's p99
# must rise above every other CPU's in the daemon's next windows.
hog_cpu=3
ip netns add nklat || problem "ip netns add nklat"
ip -n nklat link set lo up
ip netns exec nklat sh -c "echo 8 >/sys/class/net/lo/queues/rx-0/rps_cpus" || problem "RPS on nklat's lo"
{
	echo '*filter'
	for i in $(seq 0 2999); do echo "-A INPUT -s 10.$((i / 250)).$((i % 250)).1/32 -j ACCEPT"; done
	echo 'COMMIT'
} | ip netns exec nklat iptables-restore || problem "iptables rules in nklat"
hogs=()
for _ in 1 2; do
	taskset -c "$hog_cpu" sh -c 'while :; do :; done' &
	hogs+=($!)
done
for _ in 1 2; do
	ip netns exec nklat taskset -c 0 bash -c 'while :; do echo x >/dev/udp/127.0.0.1/9; done' 2>/dev/null &
	hogs+=($!)
done
# A light flood on the host's loopback, processed on CPU 1 where it is
# sent: the CPU to compare with.
taskset -c 1 bash -c 'while :; do echo x >/dev/udp/127.0.0.1/9; sleep 0.01; done' 2>/dev/null &
hogs+=($!)
sleep 6 # the 2 s windows of the daemon's latency watch
lat_json=$(nodekeeper check latency --output json | tr -d ' \n')
kill "${hogs[@]}" 2>/dev/null
wait "${hogs[@]}" 2>/dev/null
ip netns delete nklat
echo "lat_hog=$(printf '%s' "$lat_json" | grep -o '"cpus":.*')"
hog_p99=$(printf '%s' "$lat_json" | grep -o "{\"cpu\":$hog_cpu,[^}]*}" | grep -o '"p99_us":[0-9.]*' | cut -d: -f2)
other_p99=$(printf '%s' "$lat_json" | grep -o '{"cpu":[0-9]*,[^}]*}' | grep -v "\"cpu\":$hog_cpu," | grep -o '"p99_us":[0-9.]*' | cut -d: -f2 | sort -g | tail -n1)
echo "lat_hog_p99=${hog_p99:-none} lat_other_p99=${other_p99:-none}"
if [ -n "$hog_p99" ] && [ -n "$other_p99" ] && awk -v h="$hog_p99" -v o="$other_p99" 'BEGIN { exit !(h > o) }'; then
	echo "lat_hog_above=1"
else
	echo "lat_hog_above=0"
fi
echo "ct_kmsg_closed=$(journalctl -u "$NK" -b -o cat --no-pager | grep -c 'the kernel log cannot be read')"
printf '[Service]\nProtectKernelLogs=no\nBindReadOnlyPaths=/dev/kmsg\nDeviceAllow=/dev/kmsg r\nCapabilityBoundingSet=CAP_SYSLOG\n' \
	>/etc/systemd/system/nodekeeper.service.d/50-kmsg.conf
systemctl daemon-reload || problem "daemon-reload with the kmsg drop-in"
systemctl restart "$NK" || problem "restart $NK with the kmsg drop-in"
sleep 3
echo "<4>nf_conntrack: table full, dropping packet" >/dev/kmsg
wait_until ct_table_full 20 ct_says 'kernel said table full'
echo "ct_kmsg=$(ct_status)"
echo "ct_kmsg_closed_after=$(journalctl -u "$NK" -o cat --no-pager _PID="$(systemctl show -P MainPID "$NK")" | grep -c 'the kernel log cannot be read')"
rm -f /etc/systemd/system/nodekeeper.service.d/50-kmsg.conf /etc/nodekeeper/config.d/60-conntrack.yaml
systemctl daemon-reload

# 11. Removal: the daemon stops, kubelet's pin goes, the conffile stays.
dpkg -L nodekeeper >"$OUT/dpkg-L.txt"
files=()
while read -r p; do [ -d "$p" ] || files+=("$p"); done <"$OUT/dpkg-L.txt"
dpkg --remove nodekeeper >"$OUT/dpkg-remove.log" 2>&1
echo "remove_exit=$?"
echo "after_remove_status=$(dpkg-query --show --showformat='${db:Status-Status}' nodekeeper)"
echo "after_remove_load=$(systemctl show --property=LoadState --value "$NK")"
echo "after_remove_active=$(systemctl show --property=ActiveState --value "$NK")"
# systemd applies the reset AllowedCPUs= to kubelet's cgroup asynchronously.
unpinned() { kubelet_state; [ "$proc" = "0-3" ]; }
wait_until unpinned_after_remove 10 unpinned
kubelet_state
show_kubelet after_remove
for p in "${files[@]}"; do
	if [ -e "$p" ] || [ -L "$p" ]; then echo "left=$p"; fi
done
echo "after_remove_config_d=$(names /etc/nodekeeper/config.d)"
journalctl -u "$NK" -o json --no-pager >"$OUT/journal.json"
echo "problems=$problems"
[ "$problems" = 0 ]
finish $?
