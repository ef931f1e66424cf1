#!/usr/bin/env bash
# Builds dist/ packages with nfpm, a tool dependency of the tools/ module (its
# own go.mod, so the daemon's module graph does not carry nfpm's dependencies):
# `go tool -modfile=tools/go.mod nfpm`.
#
#   packaging/package.sh deb|rpm        (the Makefile's deb and rpm targets)
#   packaging/package.sh version        print the package version and stop
#
# Expects the binary of `make build`. Environment:
#   GO       the go command (default: go)
#   VERSION  what `make build` stamped into the binary (git describe --tags
#            --always --dirty, or devel); turned into a package version here:
#              v1.2.3               -> 1.2.3
#              v1.2.3-4-gabc1234    -> 1.2.3+4.gabc1234   (sorts after 1.2.3)
#              abc1234 (no tag yet) -> 0.0.0~git<commits>.abc1234
#              any of them -dirty   -> ... +dirty / .dirty
#              devel (no git)       -> 0.0.0~devel
#   PKG_VERSION  use this package version as it is instead
#   NODEKEEPER_MAINTAINER  the Maintainer/Packager field ("Name <address>")
#   BIN      the binary to package (default: bin/nodekeeper)
#   DIST     where the packages go (default: dist); generated files go to
#            DIST/.pkg
# File dates come from SOURCE_DATE_EPOCH, else the last commit's date, so the
# same commit gives the same packages.
set -euo pipefail
cd "$(dirname "$0")/.."

packager=${1:-}
case "$packager" in deb | rpm | version) ;; *)
	echo "usage: $0 deb|rpm|version" >&2
	exit 2
	;;
esac
GO=${GO:-go}
BIN=${BIN:-bin/nodekeeper}
DIST=${DIST:-dist}

# pkg_version VERSION: the package version for a git describe string.
# A bare commit hash is matched before the release forms: an abbreviated
# hash can be all digits (7742686), which read as a release would sort
# above every real one and block upgrades to them.
pkg_version() {
	local v=${1#v} dirty=""
	case "$v" in *-dirty) dirty=1 v=${v%-dirty} ;; esac
	if [[ "$1" != v* && "$v" =~ ^[0-9a-f]{7,40}$ ]]; then
		local n
		n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
		v="0.0.0~git$n.$v"
		[ -z "$dirty" ] || v="$v.dirty"
	elif [[ "$v" =~ ^([0-9]+(\.[0-9]+)*)$ ]]; then
		v=${BASH_REMATCH[1]}
		[ -z "$dirty" ] || v="$v+dirty"
	elif [[ "$v" =~ ^([0-9]+(\.[0-9]+)*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		v="${BASH_REMATCH[1]}+${BASH_REMATCH[3]}.g${BASH_REMATCH[4]}"
		[ -z "$dirty" ] || v="$v.dirty"
	elif [ "$v" = devel ] || [ -z "$v" ]; then
		v=0.0.0~devel
	else
		echo "package: cannot make a package version of $1; set PKG_VERSION" >&2
		return 1
	fi
	printf '%s\n' "$v"
}

version=${PKG_VERSION:-$(pkg_version "${VERSION:-devel}")}
if [ "$packager" = version ]; then
	printf '%s\n' "$version"
	exit 0
fi
[ -x "$BIN" ] || { echo "package: $BIN is missing: run make build" >&2; exit 1; }
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

# Generated files both packages ship: the man page and a changelog (Debian's
# format, as a native package has it), compressed reproducibly.
gen=$DIST/.pkg
mkdir -p "$gen"
export NODEKEEPER_MAINTAINER=${NODEKEEPER_MAINTAINER:-nodekeeper maintainers <nodekeeper-maintainers@users.noreply.github.com>}
date=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a, %d %b %Y %H:%M:%S +0000')
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
{
	printf 'nodekeeper (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from commit %s.\n\n' "$commit"
	printf ' -- %s  %s\n' "$NODEKEEPER_MAINTAINER" "$date"
} | gzip -9n >"$gen/changelog.gz"
sed "s/@VERSION@/$version/" packaging/nodekeeper.8 | gzip -9n >"$gen/nodekeeper.8.gz"
touch -d "@$SOURCE_DATE_EPOCH" "$gen/changelog.gz" "$gen/nodekeeper.8.gz"

# RPM keeps its changelog in the header (%changelog): nfpm takes it from a
# changelog file named in the configuration, which for a .deb would add a
# second changelog file, so only the RPM's configuration names it.
config=packaging/nfpm.yaml
if [ "$packager" = rpm ]; then
	iso=$(date -u -d "@$SOURCE_DATE_EPOCH" '+%Y-%m-%dT%H:%M:%SZ')
	cat >"$gen/changelog.yml" <<-EOF
		- semver: "$version-1"
		  date: $iso
		  packager: "$NODEKEEPER_MAINTAINER"
		  changes:
		    - commit: "$commit"
		      note: "Built from commit $commit."
	EOF
	config=$gen/nfpm-rpm.yaml
	{ cat packaging/nfpm.yaml; printf '\nchangelog: %s\n' "$gen/changelog.yml"; } >"$config"
fi

export NODEKEEPER_VERSION=$version NODEKEEPER_BIN=$BIN NODEKEEPER_GEN=$gen
export NODEKEEPER_ARCH=${NODEKEEPER_ARCH:-$("$GO" env GOARCH)}
case "$packager" in
deb) rm -f "$DIST"/nodekeeper_*.deb ;;
rpm) rm -f "$DIST"/nodekeeper-*.rpm ;;
esac
"$GO" tool -modfile=tools/go.mod nfpm package --config "$config" --packager "$packager" --target "$DIST/"
