#!/bin/sh
# nodekeeper package: after the files are removed.
#   deb postrm    $1 = remove | purge | upgrade | disappear | failed-upgrade
#                      | abort-install | abort-upgrade
#   rpm %postun   $1 = 0 after a removal, 1 or more after an upgrade
# Nothing here may block a removal. /run/nodekeeper (kept across restarts by
# RuntimeDirectoryPreserve=) is left to go with the next boot.
set -e

unit=nodekeeper.service

# systemd runs and systemctl reaches it: not in a chroot from another PID
# namespace (`nodekeeper install` in a pod, which talks to systemd over D-Bus
# itself), where /run/systemd/system is there but the manager refuses.
systemd_running() {
	[ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] &&
		systemctl show --property=Version >/dev/null 2>&1
}

reload() {
	if systemd_running; then
		systemctl --system daemon-reload >/dev/null || true
	fi
}

update_catalog() {
	if command -v journalctl >/dev/null 2>&1; then
		journalctl ${DPKG_ROOT:+--root="$DPKG_ROOT"} --update-catalog || true
	fi
}

case "$1" in
remove)
	# Debian: as dh_installsystemd does, mask the unit while its enablement
	# links are kept (a reinstall unmasks it); the catalog loses our entries.
	deb-systemd-helper mask "$unit" >/dev/null || true
	reload
	update_catalog
	;;
purge)
	# Debian: forget the enablement and the mask. dpkg removes the packaged
	# configuration; files others wrote to /etc/nodekeeper/config.d (image
	# builds, cloud-init) are theirs and stay.
	deb-systemd-helper purge "$unit" >/dev/null || true
	deb-systemd-helper unmask "$unit" >/dev/null || true
	reload
	;;
0)
	# RPM removal. A changed config.yaml is kept as config.yaml.rpmsave.
	reload
	update_catalog
	;;
[1-9]*)
	# RPM upgrade: this is the old package's script; the new files are in
	# place. Restart a running daemon, as %systemd_postun_with_restart does.
	if systemd_running; then
		systemctl --system daemon-reload >/dev/null || true
		systemctl try-restart "$unit" ||
			echo "nodekeeper: $unit did not restart after the upgrade; see journalctl -xu nodekeeper" >&2
	fi
	;;
esac
exit 0
