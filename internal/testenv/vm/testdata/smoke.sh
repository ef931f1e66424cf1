#!/bin/bash
# TestSmoke's payload: what the later VM tests rely on, as KEY=VALUE lines.
# Parameters (vm.Options.Env): NIC, GUEST_ADDR, HOST_ADDR, PREFIX_LEN.
set -u
# shellcheck source=internal/testenv/vm/guest/lib.sh
. ./lib.sh

echo "nproc=$(nproc)"
while read -r _ name; do
	echo "irq=$name"
done < <(queue_irqs "$NIC")
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "system=$(systemctl is-system-running)"
systemctl set-property --runtime kubelet.service AllowedCPUs=2-3 || problem "set-property failed: $?"
pid=$(systemctl show --property=MainPID --value kubelet.service)
echo "kubelet_cpus=$(proc_field "$pid" Cpus_allowed_list)"
echo "kubelet_effective=$(systemctl show --property=EffectiveCPUs --value kubelet.service)"
# Real receive interrupts: ARP and a TCP reset from tap0, the VM's other end in
# its own network namespace.
ip addr add "$GUEST_ADDR/$PREFIX_LEN" dev "$NIC" && ip link set "$NIC" up
# shellcheck disable=SC2016 # $1 is expanded by the inner bash
timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/9"' _ "$HOST_ADDR" 2>/dev/null
echo "rx_packets=$(cat "/sys/class/net/$NIC/statistics/rx_packets")"
echo "hello from $(uname -r)" >"$OUT/hello.txt"
block multi printf 'a=1\nb=2\n'
echo "problems=$problems"
