#!/bin/sh
# nodekeeper package: after the files are installed.
#   deb postinst  $1 = configure (with $2 = the version configured before,
#                      empty on a first install) | abort-upgrade | abort-remove
#                      | abort-deconfigure
#   rpm %post     $1 = 1 on a first install, 2 or more on an upgrade
# A first install enables the service (it starts at the next boot, or with
# systemctl start); an upgrade keeps the enablement the administrator chose
# and restarts a running daemon. A changed /etc/nodekeeper/config.yaml is
# kept by the package manager (conffile, %config(noreplace)).
set -e

unit=nodekeeper.service

# systemd runs and systemctl reaches it: not in a chroot from another PID
# namespace (`nodekeeper install` in a pod, which talks to systemd over D-Bus
# itself), where /run/systemd/system is there but the manager refuses.
systemd_running() {
	[ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] &&
		systemctl show --property=Version >/dev/null 2>&1
}

# reload_units: a manager that answered the probe can still drop the reload
# (seen from a chroot in another PID namespace: "Transport endpoint is not
# connected"); like debhelper's scripts, that does not fail the package.
# `nodekeeper install` reloads over D-Bus itself.
reload_units() {
	systemctl --system daemon-reload >/dev/null ||
		echo "nodekeeper: systemctl daemon-reload failed; systemd reads the new unit at its next reload" >&2
}

update_catalog() {
	if command -v journalctl >/dev/null 2>&1; then
		journalctl ${DPKG_ROOT:+--root="$DPKG_ROOT"} --update-catalog
	fi
}

case "$1" in
configure | abort-upgrade | abort-remove | abort-deconfigure)
	# Debian: what dh_installsystemd does, with init-system-helpers' tools
	# (essential on Debian and Ubuntu): they go through policy-rc.d and keep
	# an administrator's disable across upgrades.
	update_catalog
	# Removes only the mask that the postrm made on removal.
	deb-systemd-helper unmask "$unit" >/dev/null
	# was-enabled is true on a first install: it enables then.
	if deb-systemd-helper --quiet was-enabled "$unit"; then
		deb-systemd-helper enable "$unit" >/dev/null
	else
		deb-systemd-helper update-state "$unit" >/dev/null
	fi
	if systemd_running; then
		reload_units
		if [ "$1" = configure ] && [ -n "${2:-}" ]; then
			# The upgrade itself succeeded; a daemon that does not come
			# back says why in its journal.
			deb-systemd-invoke try-restart "$unit" ||
				echo "nodekeeper: $unit did not restart after the upgrade; see journalctl -xu nodekeeper" >&2
		fi
	fi
	;;
[0-9]*)
	# RPM. The restart after an upgrade is done by the old package's
	# %postun (postremove.sh), once the old files are gone.
	if [ "$1" -eq 1 ]; then
		systemctl --no-reload enable "$unit"
	fi
	update_catalog
	if systemd_running; then
		reload_units
	fi
	;;
esac
exit 0
