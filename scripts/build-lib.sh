# shellcheck shell=bash
# Sourced by build-rootfs.sh and build-vm-image.sh (and part of their cache
# keys): the cleanup of a temporary build tree. The caller defines log().

# unmount_under DIR: unmounts everything mounted below DIR, deepest first
# (debootstrap and systemd-nspawn mount proc, sys and more in the target; an
# interrupted build can leave them there).
unmount_under() {
	local m
	awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

# remove_tree DIR: unmounts what is below DIR, then removes it, never crossing
# into a file system that is still mounted there (it then says so and keeps
# DIR).
remove_tree() {
	[ -n "$1" ] && [ -d "$1" ] || return 0
	unmount_under "$1"
	if awk -v d="$1/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
		log "mounts remain under $1: not removing it"
		return 0
	fi
	rm -rf --one-file-system "$1"
}
