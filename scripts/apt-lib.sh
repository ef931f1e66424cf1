# shellcheck shell=bash
# Sourced by the *-deps.sh scripts: install Debian packages that are missing,
# without recommends, running `apt-get update` only when a package has no
# install candidate or a first install attempt fails. The caller defines
# log() and die().

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

has_candidate() {
	local c
	c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
	[ -n "$c" ] && [ "$c" != "(none)" ]
}

# missing_packages PKG…: sets the array `missing` to those not installed.
missing_packages() {
	missing=()
	local p
	for p in "$@"; do
		installed "$p" || missing+=("$p")
	done
}

apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# install_packages PKG…: installs them, updating the package lists only when needed.
install_packages() {
	local p updated=0 start
	for p in "$@"; do
		if ! has_candidate "$p"; then
			log "no install candidate for $p: running apt-get update"
			apt-get update -q
			updated=1
			break
		fi
	done
	start=$(date +%s)
	if ! apt_install "$@"; then
		[ "$updated" -eq 0 ] || die "apt-get install failed"
		log "install failed with the current package lists: running apt-get update and retrying"
		apt-get update -q
		apt_install "$@"
	fi
	log "installed $* in $(($(date +%s) - start)) s"
}
