#!/usr/bin/env bash
# Prints the path of a Go toolchain able to build nodekeeper (the version in
# go.mod or newer), installing it when missing: Debian's golang-go (1.19 on
# Debian 12) is only used to fetch the pinned toolchain module through the
# configured Go module proxy, into a cache outside the work tree.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
want=$(awk '/^go [0-9]/{print $2; exit}' "$here/go.mod")
cache=${NODEKEEPER_CACHE:-/var/cache/nodekeeper-test}

version_ok() { # $1 = go binary
	local have
	have=$("$1" env GOVERSION 2>/dev/null | sed 's/^go//') || return 1
	[ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" = "$want" ]
}

for candidate in "$(command -v go || true)" /usr/local/go/bin/go "$cache/go$want/bin/go"; do
	if [ -n "$candidate" ] && [ -x "$candidate" ] && version_ok "$candidate"; then
		echo "$candidate"
		exit 0
	fi
done

boot=$(command -v go || true)
if [ -z "$boot" ]; then
	echo "ensure-go: installing Debian's golang-go to bootstrap Go $want" >&2
	if ! command -v apt-get >/dev/null; then
		echo "ensure-go: no Go $want and no apt-get: install Go $want and retry" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends golang-go ca-certificates >&2 ||
		{ apt-get update >&2 && apt-get install -y --no-install-recommends golang-go ca-certificates >&2; }
	boot=$(command -v go)
fi
arch=$(uname -m)
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
mod="golang.org/toolchain@v0.0.1-go$want.linux-$arch"
echo "ensure-go: fetching $mod through the Go module proxy" >&2
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
dir=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPATH="$tmp/gopath" "$boot" mod download -json "$mod" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "ensure-go: download of $mod failed" >&2; exit 1; }
mkdir -p "$cache"
rm -rf "$cache/go$want.tmp"
cp -r "$dir" "$cache/go$want.tmp"
chmod -R u+w "$cache/go$want.tmp"
chmod +x "$cache/go$want.tmp"/bin/* "$cache/go$want.tmp"/pkg/tool/*/*
rm -rf "$cache/go$want"
mv "$cache/go$want.tmp" "$cache/go$want"
version_ok "$cache/go$want/bin/go" || { echo "ensure-go: $cache/go$want/bin/go does not run" >&2; exit 1; }
echo "$cache/go$want/bin/go"
