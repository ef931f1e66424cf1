#!/usr/bin/env bash
# Start-up cost of the node-problem-detector plugin: the whole-process time of
# `nodekeeper check irq` on the 192-CPU fixture (and of `nodekeeper version`)
# against a hello-world Go binary built the same way (CGO_ENABLED=0 -trimpath
# -ldflags '-s -w'), and the ratio. NPD runs the plugin every minute on every
# node; the target is at most 2x the hello-world floor.
#
# "deps floor" is an empty main that imports (blank) every package nodekeeper's
# own packages import: what the dependencies' initialisers and the runtime cost
# before main, whatever nodekeeper does. nodekeeper cannot start faster than
# that without dropping a dependency.
#
# The programs run interleaved (one run of each in turn), so a noisy machine
# slows all of them alike; each line gives the median and the 10th-90th
# percentile of the runs.
#   scripts/startup-bench.sh [RUNS]     (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
go=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() { CGO_ENABLED=0 "$go" build -trimpath -ldflags '-s -w' -o "$@"; }

mkdir "$work/hello"
printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n' >"$work/hello/main.go"
printf 'module hello\n\ngo 1.22\n' >"$work/hello/go.mod"
(cd "$work/hello" && build hello .)

mkdir "$work/floor"
sed 's|^module .*|module floor|' go.mod >"$work/floor/go.mod"
cp go.sum "$work/floor/"
{
	printf 'package main\n\nimport (\n'
	"$go" list -f '{{.ImportPath}} {{join .Imports " "}}' -deps ./cmd/nodekeeper |
		awk '$1 ~ /^github.com\/nodekeeper\/nodekeeper\// {for (i = 2; i <= NF; i++) print $i}' |
		grep -v '^github.com/nodekeeper/nodekeeper/' | grep -v -x unsafe | sort -u | sed 's/.*/\t_ "&"/'
	printf ')\n\nfunc main() {}\n'
} >"$work/floor/main.go"
(cd "$work/floor" && build floor .)

build "$work/nodekeeper" ./cmd/nodekeeper
read -r -a fixture < <("$go" run ./internal/testenv/hostfixture/cmd/hostfixture "$work/host")

names=(hello "deps floor" "nodekeeper version" "nodekeeper check irq (192 CPU)")
cmds=("$work/hello/hello" "$work/floor/floor" "$work/nodekeeper version" "$work/nodekeeper check irq ${fixture[*]}")
for i in "${!cmds[@]}"; do : >"$work/t$i"; done
for ((r = -20; r < runs; r++)); do # the first 20 rounds warm the page cache
	for i in "${!cmds[@]}"; do
		read -r -a argv <<<"${cmds[$i]}"
		t0=${EPOCHREALTIME/./} # microseconds, without forking date
		"${argv[@]}" >/dev/null 2>&1 || true
		t1=${EPOCHREALTIME/./}
		((r < 0)) || echo $((t1 - t0)) >>"$work/t$i"
	done
done

# stats FILE prints the median, the 10th and the 90th percentile in ms.
stats() {
	sort -n "$1" |
		awk '{v[NR] = $1 / 1000} END {printf "%.2f %.2f %.2f\n", v[int((NR + 1) / 2)], v[int(NR * 0.1) + 1], v[int(NR * 0.9)]}'
}
read -r hello _ _ < <(stats "$work/t0")
for i in "${!cmds[@]}"; do
	read -r med p10 p90 < <(stats "$work/t$i")
	awk -v n="${names[$i]}" -v m="$med" -v a="$p10" -v b="$p90" -v h="$hello" \
		'BEGIN {printf "%-31s %6.2f ms (p10 %6.2f, p90 %6.2f)  %.2fx\n", n, m, a, b, m / h}'
done
echo "target: nodekeeper check irq <= 2x hello; $runs interleaved runs each"
