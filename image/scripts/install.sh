#!/usr/bin/env bash
# Installs nodekeeper into a node image: the single install step of an image
# build (Packer, image-builder's Ansible role, or by hand on a VM being
# captured). Idempotent: running it again with the same inputs changes nothing.
#
#   install.sh PACKAGE        PACKAGE is a nodekeeper .deb or .rpm
#
# Environment:
#   NODEKEEPER_CONFIG_OVERRIDE      YAML written to
#                                   /etc/nodekeeper/config.d/50-image.yaml
#   NODEKEEPER_CONFIG_OVERRIDE_B64  the same, base64-encoded (wins when set)
#   Neither set or both empty: no image override (a previous one is removed).
#
# Steps: install the package (dpkg/rpm on the local file; skipped when that
# version is installed), write and validate the override (`nodekeeper config
# validate` on the packaged config plus config.d, before the file is put in
# place), enable the unit without starting it (it starts on the node's first
# boot, before kubelet), and check the unit with systemd-analyze verify.
set -euo pipefail

log() { printf 'nodekeeper-install: %s\n' "$*"; }
die() { printf 'nodekeeper-install: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 PACKAGE.deb|PACKAGE.rpm"
pkg=$1
[ -f "$pkg" ] || die "$pkg: no such file"
[ "$(id -u)" -eq 0 ] || die "must run as root"

unit=nodekeeper.service
confdir=/etc/nodekeeper
override=$confdir/config.d/50-image.yaml

# 1. The package.
case "$pkg" in
*.deb)
	want=$(dpkg-deb --field "$pkg" Version)
	have=$(dpkg-query --show --showformat='${db:Status-Status} ${Version}' nodekeeper 2>/dev/null || true)
	if [ "$have" = "installed $want" ]; then
		log "nodekeeper $want is installed already"
	else
		log "installing nodekeeper $want"
		# Keeps a changed /etc/nodekeeper/config.yaml without asking.
		DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold --install "$pkg"
	fi
	;;
*.rpm)
	want=$(rpm --query --package --queryformat '%{VERSION}-%{RELEASE}' "$pkg")
	have=$(rpm --query --queryformat '%{VERSION}-%{RELEASE}' nodekeeper 2>/dev/null || true)
	if [ "$have" = "$want" ]; then
		log "nodekeeper $want is installed already"
	else
		log "installing nodekeeper $want"
		rpm --upgrade --verbose "$pkg"
	fi
	;;
*) die "$pkg: not a .deb or .rpm" ;;
esac
command -v nodekeeper >/dev/null || die "nodekeeper is not on PATH after the install"

# 2. The image's configuration override.
content=${NODEKEEPER_CONFIG_OVERRIDE:-}
if [ -n "${NODEKEEPER_CONFIG_OVERRIDE_B64:-}" ]; then
	content=$(printf '%s' "$NODEKEEPER_CONFIG_OVERRIDE_B64" | base64 --decode) ||
		die "NODEKEEPER_CONFIG_OVERRIDE_B64 is not base64"
fi
if [ -n "$content" ]; then
	# Validate the whole configuration as the daemon will read it, with the
	# new override in place, in a copy: a bad override never reaches the image.
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' EXIT
	mkdir "$stage/config.d"
	cp "$confdir/config.yaml" "$stage/config.yaml"
	for f in "$confdir"/config.d/*.yaml; do
		if [ -e "$f" ] && [ "$f" != "$override" ]; then
			cp "$f" "$stage/config.d/"
		fi
	done
	printf '%s\n' "$content" >"$stage/config.d/50-image.yaml"
	if ! nodekeeper config validate "$stage/config.yaml" >/dev/null; then
		die "the configuration override is invalid (errors above; config.d/50-image.yaml is the override)"
	fi
	if cmp -s "$stage/config.d/50-image.yaml" "$override"; then
		log "$override is up to date"
	else
		install -m 0644 "$stage/config.d/50-image.yaml" "$override.tmp"
		mv -f "$override.tmp" "$override"
		log "wrote $override"
	fi
elif [ -e "$override" ]; then
	rm -f "$override"
	log "removed $override (no override given)"
fi
nodekeeper config validate >/dev/null || die "the configuration in $confdir is invalid"

# 3. Enabled, not started: the image's first boot starts it.
systemctl enable "$unit"
state=$(systemctl is-enabled "$unit" || true)
[ "$state" = enabled ] || die "$unit is $state after systemctl enable"

# 4. The unit as this image's systemd reads it. verify also reports problems
# of other units; only lines about ours fail the install.
if out=$(systemd-analyze verify --man=no "/usr/lib/systemd/system/$unit" 2>&1); then
	:
else
	printf '%s\n' "$out" >&2
	die "systemd-analyze verify failed for $unit"
fi
if printf '%s\n' "$out" | grep -q 'nodekeeper'; then
	printf '%s\n' "$out" >&2
	die "systemd-analyze verify found problems in $unit"
fi
log "done: $(nodekeeper version), $unit $state"
