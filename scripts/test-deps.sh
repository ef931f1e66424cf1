#!/usr/bin/env bash
# Installs the host packages the root test layers need:
#   systemd-container (systemd-nspawn, nsenter is in util-linux), debootstrap, irqbalance,
#   prometheus (promtool: checks the alert rules and the daemon's /metrics).
#   the shellcheck package (every shell script of the repository is checked).
#   kubectl (`kubectl kustomize` renders deploy/kubernetes for the manifest tests).
#   qemu-user (qemu-aarch64 runs the arm64 build; without its recommended
#   qemu-user-binfmt, so nothing is registered with the host's binfmt_misc).
# Idempotent: does nothing when everything is installed. Runs `apt-get update` only
# when a package has no install candidate or a first install attempt fails.
# Services that the packages would start on this host are kept from starting with a
# temporary /usr/sbin/policy-rc.d (an existing one is left alone); anything the
# install started anyway (irqbalance, dbus-daemon) is stopped again by PID.
set -euo pipefail

PKGS=(systemd-container debootstrap irqbalance debian-archive-keyring prometheus shellcheck conntrack nftables kubectl qemu-user)
POLICY=/usr/sbin/policy-rc.d
# Daemons a package's maintainer script may start on a host without systemd.
WATCH_COMMS=(irqbalance dbus-daemon prometheus)

log() { printf 'test-deps: %s\n' "$*"; }
die() { printf 'test-deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null || die "apt-get not found: only Debian-based hosts are supported"

# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"

# pids_of COMM: PIDs of processes whose comm is exactly COMM.
pids_of() {
	local f pid comm
	for f in /proc/[0-9]*/comm; do
		comm=$(cat "$f" 2>/dev/null) || continue
		[ "$comm" = "$1" ] || continue
		pid=${f#/proc/}
		printf '%s\n' "${pid%/comm}"
	done
}

missing_packages "${PKGS[@]}"
if [ "${#missing[@]}" -eq 0 ]; then
	log "already installed: ${PKGS[*]}"
	exit 0
fi
log "to install: ${missing[*]}"

# Remember which watched daemons run before the install.
declare -A before=()
for c in "${WATCH_COMMS[@]}"; do
	for pid in $(pids_of "$c"); do before[$pid]=1; done
done

created_policy=0
cleanup() {
	if [ "$created_policy" -eq 1 ]; then
		rm -f "$POLICY"
		log "removed temporary $POLICY"
	fi
}
trap cleanup EXIT
if [ -e "$POLICY" ]; then
	log "$POLICY already exists; left as it is"
else
	printf '#!/bin/sh\n# temporary: keep packages from starting services during a test-deps install\nexit 101\n' >"$POLICY"
	chmod 0755 "$POLICY"
	created_policy=1
	log "created temporary $POLICY (exit 101: no service starts)"
fi

install_packages "${missing[@]}"

# Stop whatever the install started anyway, by PID only.
for c in "${WATCH_COMMS[@]}"; do
	for pid in $(pids_of "$c"); do
		[ -z "${before[$pid]:-}" ] || continue
		log "the install started $c (pid $pid); stopping it"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			[ -e "/proc/$pid" ] || break
			sleep 0.2
		done
		if [ -e "/proc/$pid" ]; then
			log "$c (pid $pid) still running; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
done
for pid in $(pids_of irqbalance); do
	if [ -n "${before[$pid]:-}" ]; then log "note: irqbalance (pid $pid) was running before the install; left alone"; fi
done
log "done"
