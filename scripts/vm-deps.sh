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

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

has_candidate() {
	local c
	c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
	[ -n "$c" ] && [ "$c" != "(none)" ]
}

missing=()
for p in "${PKGS[@]}"; do
	installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	log "already installed: ${PKGS[*]}"
	exit 0
fi
log "to install: ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive
apt_install() {
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

updated=0
for p in "${missing[@]}"; do
	if ! has_candidate "$p"; then
		log "no install candidate for $p: running apt-get update"
		apt-get update -q
		updated=1
		break
	fi
done

start=$(date +%s)
if ! apt_install "${missing[@]}"; then
	[ "$updated" -eq 0 ] || die "apt-get install failed"
	log "install failed with the current package lists: running apt-get update and retrying"
	apt-get update -q
	apt_install "${missing[@]}"
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 still not found after the install"
log "installed ${missing[*]} in $(($(date +%s) - start)) s"
