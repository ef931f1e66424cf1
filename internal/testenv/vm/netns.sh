#!/bin/sh
# Runs in the VM's fresh network namespace (unshare --net -- sh -c "$(cat
# netns.sh)" sh QUEUES ADDR QEMU ARGS...): makes tap0 with ADDR
# (address/prefix), multi-queue when QUEUES > 1 as QEMU's IFF_MULTI_QUEUE
# must match, then becomes QEMU, which attaches to it. The namespace, and
# tap0 with it, ends with QEMU.
set -e
queues=$1 addr=$2
shift 2
ip link set lo up
if [ "$queues" -gt 1 ]; then
	ip tuntap add dev tap0 mode tap multi_queue
else
	ip tuntap add dev tap0 mode tap
fi
ip addr add "$addr" dev tap0
ip link set tap0 up
exec "$@"
