#!/bin/bash
# TestVMKubeletQueuesOnEveryCPU: 4 queue pairs, one per CPU: no CPU is free
# of NIC queues, so kubelet gets minCPUs of them; then the daemon stops and
# undo unpins kubelet.
# Parameters: those of vm_setup.sh.
# Functions given to wait_kubelet are called through it, which shellcheck
# takes for unreachable code:
# shellcheck disable=SC2317
set -u
# shellcheck source=internal/testenv/vm/guest/lib.sh
. ./lib.sh
# shellcheck source=internal/kubelet/testdata/vm_setup.sh
. ./vm_setup.sh

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
block check-json nodekeeper check kubelet --output json

# The daemon would pin kubelet again at its next check: stop it first.
systemctl stop nodekeeper.service || fail "stop nodekeeper"
nodekeeper undo
echo "undo_exit=$?"
unpinned() { [ "$proc" = 0-3 ] && [ -z "$allowed" ]; }
wait_kubelet undo unpinned
finish 0
