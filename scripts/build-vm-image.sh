#!/usr/bin/env bash
# Builds (or reuses) the boot files of the VM test layer: a kernel, its initramfs
# and an ext4 root disk made from the container layer's root filesystem (see
# scripts/build-rootfs.sh, run first) plus the Debian cloud kernel and the guest
# side of the test runner from test/vm/files.
#
# The result is a directory
#   ${NODEKEEPER_CACHE:-/var/cache/nodekeeper-test}/vm-<key>/
#     vmlinuz       the guest kernel
#     initrd.img    its initramfs
#     rootfs.img    the root disk (raw ext4, label nodekeeper-root); boot it
#                   read-only or with qemu's -snapshot, it is shared
#     kernel-version
# where <key> hashes the rootfs key, the package list, the disk size, this script
# and the files under test/vm. It is built in a temporary directory and renamed
# into place, so a present vm-<key> is always complete. The last line on stdout
# is its path; progress goes to stderr.
#
# The packages are installed by apt inside the tree with systemd-nspawn (no
# boot), from the Debian mirror the rootfs was bootstrapped from; downloaded
# packages are kept in <cache>/vm-debs for the next build.
#
# Environment:
#   NODEKEEPER_CACHE   cache directory (default /var/cache/nodekeeper-test)
#   and those of scripts/build-rootfs.sh
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT")/.." && pwd)
PROV="$REPO/test/vm"
CACHE=${NODEKEEPER_CACHE:-/var/cache/nodekeeper-test}
# Beyond the rootfs: the kernel and what boots it, and what the guest's test
# runner and payloads use (udev comes with initramfs-tools; e2fsprogs, procps
# and iproute2 are in the rootfs already and listed so they stay). podman (with
# its network stack named, so apt does not have to choose one) runs the installer
# image as a DaemonSet's pod would, from an OCI layout: no registry.
PACKAGES=(linux-image-cloud-amd64 initramfs-tools zstd e2fsprogs procps iproute2 podman containernetworking-plugins)
DISK_SIZE=2G

log() { printf 'build-vm-image: %s\n' "$*" >&2; }
# shellcheck source=scripts/build-lib.sh
. "$REPO/scripts/build-lib.sh"
die() { printf 'build-vm-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (systemd-nspawn, file ownership in the disk image)"
for bin in systemd-nspawn mkfs.ext4; do
	command -v "$bin" >/dev/null || die "$bin not found: run scripts/test-deps.sh and scripts/vm-deps.sh"
done
[ -d "$PROV/files" ] || die "provisioning files not found in $PROV"

rootfs=$("$REPO/scripts/build-rootfs.sh" | tail -n1)
[ -f "$rootfs/etc/nodekeeper-test-rootfs" ] || die "build-rootfs.sh printed '$rootfs', which is not a test rootfs"
rootfs_key=$(cat "$rootfs/etc/nodekeeper-test-rootfs")

key=$(
	{
		printf 'rootfs=%s\npackages=%s\nsize=%s\n' "$rootfs_key" "${PACKAGES[*]}" "$DISK_SIZE"
		sha256sum <"$SCRIPT"
		sha256sum <"$REPO/scripts/build-lib.sh"
		(cd "$PROV" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		# File modes matter too (the runner must stay executable).
		(cd "$PROV" && find . -type f -printf '%m %p\n' | LC_ALL=C sort)
	} | sha256sum | cut -c1-16
)
final="$CACHE/vm-$key"

complete() { [ -s "$1/vmlinuz" ] && [ -s "$1/initrd.img" ] && [ -s "$1/rootfs.img" ]; }

if complete "$final"; then
	log "reusing $final"
	printf '%s\n' "$final"
	exit 0
fi

mkdir -p "$CACHE"
chmod 0755 "$CACHE"
# One build at a time per cache directory (not build-rootfs.sh's lock: it has
# run and released it above).
exec 9>"$CACHE/.vm-lock"
flock 9
if complete "$final"; then
	log "reusing $final (built meanwhile)"
	printf '%s\n' "$final"
	exit 0
fi

# Under the lock no other build runs: a temporary tree is a killed build's.
find "$CACHE" -mindepth 1 -maxdepth 1 -name '.vm-*.*' -type d -print0 |
	xargs -0 -r rm -rf --one-file-system

start=$(date +%s)
tmp=$(mktemp -d "$CACHE/.vm-$key.XXXXXX")
tree="$tmp/root"
cgroups=()

# remove_cgroup DIR: removes DIR and the cgroups below it, deepest first.
remove_cgroup() {
	local d
	[ -d "$1" ] || return 0
	find "$1" -depth -type d | while read -r d; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			rmdir "$d" 2>/dev/null && break
			[ -d "$d" ] || break
			sleep 0.2
		done
	done
}
cleanup() {
	local c
	for c in "${cgroups[@]}"; do remove_cgroup "$c"; done
	remove_tree "${tmp:-}"
}
trap cleanup EXIT

log "copying $rootfs"
cp -a --reflink=auto "$rootfs" "$tree"

# systemd-nspawn on a host without systemd: --register=no --keep-unit, and run
# in cgroups of our own (at the root of the cgroup2 and name=systemd
# hierarchies), removed afterwards with the payload/ and supervisor/ cgroups
# nspawn makes below them, which it would otherwise leave at the host's root.
while read -r mnt; do
	cg="$mnt/nodekeeper-vm-image-$$"
	mkdir "$cg"
	cgroups+=("$cg")
done < <(awk '$3 == "cgroup2" || ($3 == "cgroup" && $4 ~ /(^|,)name=systemd(,|$)/) { print $2 }' /proc/self/mounts)

# in_tree CMD...: runs CMD in the tree (no boot, the host's network for apt).
in_tree() {
	local procs=() c
	for c in "${cgroups[@]}"; do procs+=("$c/cgroup.procs"); done
	# shellcheck disable=SC2016
	env -u NOTIFY_SOCKET -u SYSTEMD_NSPAWN_API_VFS_WRITABLE sh -c '
		for f; do [ "$f" = -- ] && break; echo $$ >"$f" || exit 125; shift; done; shift
		exec "$@"' sh "${procs[@]}" -- \
		systemd-nspawn --quiet --register=no --keep-unit --directory="$tree" \
		--bind="$CACHE/vm-debs:/var/cache/apt/archives" \
		--setenv=DEBIAN_FRONTEND=noninteractive --setenv=LANG=C.UTF-8 \
		--setenv=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		-- "$@" </dev/null
}

mkdir -p "$CACHE/vm-debs"
# No service starts from a maintainer script (nothing runs systemd in the tree
# anyway; this is for invoke-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
chmod 0755 "$tree/usr/sbin/policy-rc.d"
# The initramfs only needs to find an ext4 root on virtio-blk.
mkdir -p "$tree/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$tree/etc/initramfs-tools/conf.d/nodekeeper-test.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' >>"$tree/etc/initramfs-tools/modules"

log "installing ${PACKAGES[*]} (log: $tmp.log)"
if ! in_tree sh -c "apt-get -q update && apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold ${PACKAGES[*]}" >"$tmp.log" 2>&1; then
	tail -n 30 "$tmp.log" >&2
	die "package install failed (log: $tmp.log)"
fi
unmount_under "$tree"
for c in "${cgroups[@]}"; do remove_cgroup "$c"; done
cgroups=()

# The kernel and initramfs go next to the disk, not on it.
kver=$(find "$tree/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n1)
if [ -z "$kver" ] || [ ! -f "$tree/boot/vmlinuz-$kver" ] || [ ! -f "$tree/boot/initrd.img-$kver" ]; then
	die "no kernel or initramfs in the tree (kernel modules: '${kver:-none}')"
fi
cp "$tree/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$tree/boot/initrd.img-$kver" "$tmp/initrd.img"
printf '%s\n' "$kver" >"$tmp/kernel-version"
rm -rf "${tree:?}"/boot/* "${tree:?}"/vmlinuz* "${tree:?}"/initrd.img*

# The guest side of the test runner.
(cd "$PROV/files" && find . -type f) | while read -r f; do
	mode=0644
	[ -x "$PROV/files/$f" ] && mode=0755
	install -D -m "$mode" -o root -g root "$PROV/files/$f" "$tree/${f#./}"
done
systemctl --root="$tree" --quiet enable nodekeeper-test-payload.service
while read -r unit; do
	unit=${unit%%#*}
	unit=${unit//[[:space:]]/}
	[ -n "$unit" ] && ln -sfn /dev/null "$tree/etc/systemd/system/$unit"
done <"$PROV/masked-units"
mkdir -p "$tree/payload" "$tree/output"
printf '/dev/vda / ext4 rw,noatime 0 0\n' >"$tree/etc/fstab"
printf 'nodekeeper-test\n' >"$tree/etc/hostname"
printf '%s\n' "$key" >"$tree/etc/nodekeeper-test-vm"

rm -f "$tree/usr/sbin/policy-rc.d"
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/cache/apt/*.bin "$tree"/var/lib/apt/lists/*_* \
	"$tree"/usr/share/man/* "$tree"/usr/share/doc/*

log "making the root disk ($DISK_SIZE, sparse)"
mkfs.ext4 -q -F -L nodekeeper-root -E root_owner=0:0 -d "$tree" "$tmp/rootfs.img" "$DISK_SIZE" >&2
rm -rf --one-file-system "$tree"
chmod 0644 "$tmp"/*
chmod 0755 "$tmp"
mv -T "$tmp" "$final"
tmp=
rm -f "$CACHE"/.vm-*.log
# Keep the two newest images: older keys belong to older checkouts.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name 'vm-*' ! -name vm-debs -printf '%T@ %p\n' |
	sort -rn | tail -n +3 | cut -d' ' -f2- | while read -r old; do
	log "pruning $old"
	rm -rf --one-file-system "$old"
done
log "built $final (kernel $kver) in $(($(date +%s) - start)) s ($(du -sh "$final" | cut -f1) on disk)"
printf '%s\n' "$final"
