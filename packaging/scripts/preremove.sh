#!/bin/sh
# nodekeeper package: before the files are removed.
#   deb prerm     $1 = remove | upgrade | deconfigure | failed-upgrade
#   rpm %preun    $1 = 0 on removal, 1 or more on an upgrade
# On removal: stop the daemon, then take away what it applied (the kubelet CPU
# pin) with `nodekeeper undo`. The daemon is stopped first so that it cannot
# apply the pin again between the two. Neither may block the removal: a
# failure is reported and the removal goes on. On an upgrade nothing happens
# here: the new package restarts the daemon and the pin stays.
set -e

unit=nodekeeper.service

# systemd runs and systemctl reaches it: not in a chroot from another PID
# namespace (`nodekeeper install` in a pod, which talks to systemd over D-Bus
# itself), where /run/systemd/system is there but the manager refuses.
systemd_running() {
	[ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] &&
		systemctl show --property=Version >/dev/null 2>&1
}

undo() {
	systemd_running || return 0
	if command -v nodekeeper >/dev/null 2>&1 && nodekeeper undo; then
		return 0
	fi
	echo "nodekeeper: 'nodekeeper undo' failed: kubelet may keep the CPUs nodekeeper pinned it to" >&2
	echo "nodekeeper: (systemctl show -p AllowedCPUs kubelet.service)" >&2
}

case "$1" in
remove)
	# Debian: stop as dh_installsystemd does (through policy-rc.d); the
	# enablement is kept until purge.
	if systemd_running; then
		deb-systemd-invoke stop "$unit" >/dev/null || true
	fi
	undo
	;;
0)
	# RPM: disable and stop, as %systemd_preun does.
	if systemd_running; then
		systemctl --no-reload disable --now "$unit" >/dev/null 2>&1 || true
	else
		systemctl --no-reload disable "$unit" >/dev/null 2>&1 || true
	fi
	undo
	;;
esac
exit 0
