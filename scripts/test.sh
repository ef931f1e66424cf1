#!/usr/bin/env bash
# Runs every test layer this machine allows, installing what the layers need:
#   unit    fixture trees and fakes                           always
#   root    real /proc/irq writes, real compaction, cgroups   as root
#   nspawn  real systemd + D-Bus + irqbalance in a container  as root, with systemd-nspawn
#   vm      a real kernel in QEMU (TCG): cgroup2 cpuset, multi-queue NIC, the package installed  as root, with qemu
# A layer that cannot run is skipped with its reason; a layer named in
# NODEKEEPER_REQUIRE_LAYERS (CI: root,nspawn) fails the run instead.
set -uo pipefail
GO=${1:-go}
cd "$(dirname "$0")/.." || exit 1
export NODEKEEPER_CACHE=${NODEKEEPER_CACHE:-/var/cache/nodekeeper-test}

say() { printf '== %s\n' "$*"; }
require() { [[ ",${NODEKEEPER_REQUIRE_LAYERS:-}," == *",$1,"* ]]; }

if [ "$(id -u)" = 0 ]; then
	say "layer root: running as root"
	if scripts/test-deps.sh; then
		if rootfs=$(scripts/build-rootfs.sh | tail -n1) && [ -d "$rootfs" ]; then
			export NODEKEEPER_ROOTFS=$rootfs
			say "layer nspawn: container root file system $rootfs"
			if scripts/vm-deps.sh && vmimage=$(scripts/build-vm-image.sh | tail -n1) && [ -f "$vmimage/rootfs.img" ]; then
				export NODEKEEPER_VM_IMAGE=$vmimage
				say "layer vm: VM image $vmimage"
			else
				say "layer vm: SKIPPED: its packages could not be installed or its image could not be built"
				require vm && exit 1
			fi
		else
			say "layer nspawn: SKIPPED: the container root file system could not be built"
			say "layer vm: SKIPPED: needs the nspawn layer's root file system"
			require nspawn && exit 1
			require vm && exit 1
		fi
	else
		say "layer nspawn: SKIPPED: its packages could not be installed"
		say "layer vm: SKIPPED: needs the nspawn layer's root file system"
		require nspawn && exit 1
		require vm && exit 1
	fi
else
	say "layer root: SKIPPED: not root (run 'sudo make test' for real /proc/irq, systemd, cgroup and VM tests)"
	say "layer nspawn: SKIPPED: not root"
	say "layer vm: SKIPPED: not root"
	require root && exit 1
fi

say "lint: gofmt, go vet, staticcheck"
make -s lint GO="$GO" || { say "lint FAILED"; exit 1; }

say "go test ./... ($("$GO" env GOVERSION))"
set -o pipefail
"$GO" build -o bin/testsummary ./internal/testenv/testsummary || exit 1
# The tools/ module (packaging tools and test-only parsers) is its own module,
# outside ./...; its tests join the same summary.
{
	"$GO" test -count=1 -json -timeout 30m -p 2 ./...
	(cd tools && "$GO" test -count=1 -json -timeout 10m ./...)
} | bin/testsummary
