#!/bin/bash
# TestVMKubeletFollowsIRQs: 2 queue pairs on CPUs 0-1, kubelet pinned to 2-3;
# the pairs move to 2-3 and kubelet follows to 0-1.
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
