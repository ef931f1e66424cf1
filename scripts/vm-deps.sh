#!/usr/bin/env bash
# Installs the host packages the VM test layer needs:
#   qemu-system-x86  qemu-system-x86_64 (the guest runs under TCG: /dev/kvm is not needed)
#   qemu-utils       qemu-img
#   e2fsprogs        mkfs.ext4 -d (root and payload disks without a loop mount), debugfs
#   iproute2         ip tuntap (the guest's NIC is a tap in a network namespace of its own)
# Idempotent: does nothing when everything is installed. Installs without
# recommended packages. Runs `apt-get update` only when a package has no install
# candidate or a first install attempt fails.
set -euo pipefail

PKGS=(qemu-system-x86 qemu-utils e2fsprogs iproute2)

log() { printf 'vm-deps: %s\n' "$*"; }
die() { printf 'vm-deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null || die "apt-get not found: only Debian-based hosts are supported"

# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"

missing_packages "${PKGS[@]}"
if [ "${#missing[@]}" -eq 0 ]; then
	log "already installed: ${PKGS[*]}"
	exit 0
fi
log "to install: ${missing[*]}"

install_packages "${missing[@]}"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 still not found after the install"
