#!/usr/bin/env bash
# Builds (or reuses) the root filesystem of the container test layer: a minimal
# Debian with systemd, D-Bus, irqbalance and a stand-in kubelet.service, provisioned
# from test/rootfs/ in this repository.
#
# The tree is cached outside the repository, in
#   ${NODEKEEPER_CACHE:-/var/cache/nodekeeper-test}/rootfs-<key>
# where <key> hashes the package list, the suite, this script and the provisioning
# files. It is built in a temporary directory and renamed into place, so a present
# rootfs-<key> is always complete. The last line on stdout is the rootfs path;
# progress goes to stderr.
#
# Environment:
#   NODEKEEPER_CACHE   cache directory (default /var/cache/nodekeeper-test)
#   NODEKEEPER_MIRROR  Debian mirror URL (default: parsed from /etc/apt/sources.list*)
#   NODEKEEPER_SUITE   Debian suite (default: this host's VERSION_CODENAME)
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT")/.." && pwd)
PROV="$REPO/test/rootfs"
CACHE=${NODEKEEPER_CACHE:-/var/cache/nodekeeper-test}
PACKAGES=systemd,systemd-sysv,dbus,irqbalance,procps,iproute2

log() { printf 'build-rootfs: %s\n' "$*" >&2; }
# shellcheck source=scripts/build-lib.sh
. "$REPO/scripts/build-lib.sh"
die() { printf 'build-rootfs: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap not found: run scripts/test-deps.sh"
[ -d "$PROV/files" ] || die "provisioning files not found in $PROV"

suite=${NODEKEEPER_SUITE:-}
if [ -z "$suite" ]; then
	# shellcheck disable=SC1091
	suite=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
fi
[ -n "$suite" ] || die "cannot tell the Debian suite: set NODEKEEPER_SUITE"
arch=$(dpkg --print-architecture)

# find_mirror SUITE: prints "URI KEYRING" of the first enabled "deb" source for
# SUITE in /etc/apt/sources.list, sources.list.d/*.list (one-line format) and
# sources.list.d/*.sources (deb822 format). KEYRING is "-" when none is named.
find_mirror() {
	local files=() f
	[ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && files+=("$f")
	done
	[ "${#files[@]}" -gt 0 ] || return 0
	awk -v suite="$1" '
	function ok(uri) { return uri ~ /^(https?|file):/ }
	function has(list, word,   n, a, i) {
		n = split(list, a, /[ \t]+/)
		for (i = 1; i <= n; i++) if (a[i] == word) return 1
		return 0
	}
	function flush(   n, u, i) {
		if (par && !found && enabled != "no" && has(types, "deb") && has(suites, suite)) {
			n = split(uris, u, /[ \t]+/)
			for (i = 1; i <= n; i++) if (ok(u[i])) {
				print u[i], (signed ~ /^\// ? signed : "-"); found = 1; break
			}
		}
		par = 0; types = uris = suites = signed = enabled = ""
	}
	FNR == 1 { flush() }
	FILENAME ~ /\.sources$/ {
		if ($0 ~ /^[ \t]*$/) { flush(); next }
		if ($0 ~ /^#/) next
		if (match($0, /^[A-Za-z-]+:/)) {
			key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
			gsub(/^[ \t]+|[ \t]+$/, "", val)
			par = 1
			if (key == "types") types = val
			else if (key == "uris") uris = val
			else if (key == "suites") suites = val
			else if (key == "signed-by") signed = val
			else if (key == "enabled") enabled = tolower(val)
		}
		next
	}
	{
		sub(/#.*/, "")
		if ($1 != "deb" || found) next
		i = 2
		if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
		if (ok($i) && $(i + 1) == suite) { print $i, "-"; found = 1 }
	}
	END { flush() }
	' "${files[@]}"
}

mirror=${NODEKEEPER_MIRROR:-}
keyring=-
if [ -z "$mirror" ]; then
	read -r mirror keyring < <(find_mirror "$suite") || true
	[ -n "$mirror" ] || die "no 'deb' source for suite $suite in /etc/apt/sources.list*: set NODEKEEPER_MIRROR"
fi

# The cache key: everything that decides the tree's content except the mirror.
key=$(
	{
		printf 'packages=%s\nsuite=%s\narch=%s\n' "$PACKAGES" "$suite" "$arch"
		sha256sum <"$SCRIPT"
		sha256sum <"$REPO/scripts/build-lib.sh"
		(cd "$PROV" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -c1-16
)
final="$CACHE/rootfs-$key"

if [ -d "$final" ]; then
	log "reusing $final"
	printf '%s\n' "$final"
	exit 0
fi

mkdir -p "$CACHE"
chmod 0755 "$CACHE"
# One build at a time per cache directory.
exec 9>"$CACHE/.lock"
flock 9
if [ -d "$final" ]; then
	log "reusing $final (built meanwhile)"
	printf '%s\n' "$final"
	exit 0
fi

tmp=$(mktemp -d "$CACHE/.rootfs-$key.XXXXXX")
cleanup() {
	remove_tree "${tmp:-}"
}
trap cleanup EXIT

debs="$CACHE/debs"
mkdir -p "$debs"
args=(--variant=minbase --include="$PACKAGES" --arch="$arch" --cache-dir="$debs")
[ "$keyring" = "-" ] || args+=(--keyring="$keyring")
log "debootstrap $suite from $mirror into $tmp (log: $tmp.log)"
start=$(date +%s)
if ! debootstrap "${args[@]}" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
	tail -n 30 "$tmp.log" >&2
	die "debootstrap failed (log: $tmp.log)"
fi
log "debootstrap took $(($(date +%s) - start)) s"
unmount_under "$tmp"

# Provision from test/rootfs/files (copied as plain files with fixed modes).
(cd "$PROV/files" && find . -type f) | while read -r f; do
	install -D -m 0644 -o root -g root "$PROV/files/$f" "$tmp/${f#./}"
done
systemctl --root="$tmp" --quiet set-default multi-user.target
systemctl --root="$tmp" --quiet enable kubelet.service irqbalance.service dbus.service
masks=()
while read -r unit; do
	unit=${unit%%#*}
	unit=${unit//[[:space:]]/}
	[ -n "$unit" ] && masks+=("$unit")
done <"$PROV/masked-units"
for unit in "${masks[@]}"; do
	mkdir -p "$tmp/etc/systemd/system"
	ln -sfn /dev/null "$tmp/etc/systemd/system/$unit"
done
# A fixed machine id: no first-boot setup on every boot.
if [ ! -s "$tmp/etc/machine-id" ] || grep -qx uninitialized "$tmp/etc/machine-id"; then
	printf '%s\n' "$key$key" >"$tmp/etc/machine-id"
fi
# The build host's name: the container's hostname is its machine name instead.
rm -f "$tmp/etc/hostname"
# Drop what a test never needs.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_* "$tmp"/usr/share/man/* "$tmp"/usr/share/doc/*
printf '%s\n' "$key" >"$tmp/etc/nodekeeper-test-rootfs"

chmod 0755 "$tmp"
mv -T "$tmp" "$final"
tmp=
rm -f "$CACHE"/.rootfs-*.log
# Keep the three newest trees: older keys belong to older checkouts.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name 'rootfs-*' -printf '%T@ %p\n' |
	sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do
	log "pruning $old"
	rm -rf --one-file-system "$old"
done
log "built $final in $(($(date +%s) - start)) s ($(du -sh "$final" | cut -f1))"
printf '%s\n' "$final"
