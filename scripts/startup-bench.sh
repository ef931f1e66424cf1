#!/usr/bin/env bash
# Start-up cost of the node-problem-detector plugin: the whole-process time of
# `nodekeeper check irq` on the 192-CPU fixture (and of `nodekeeper version`)
# against a hello-world Go binary built the same way (CGO_ENABLED=0 -trimpath
# -ldflags '-s -w'), and the ratio. NPD runs the plugin every minute on every
# node; the target is at most 2x the hello-world floor.
#   scripts/startup-bench.sh [RUNS]     (default 200; uses hyperfine when installed)
set -euo pipefail
runs=${1:-200}
go=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() { CGO_ENABLED=0 "$go" build -trimpath -ldflags '-s -w' -o "$@"; }

mkdir "$work/hello"
printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n' >"$work/hello/main.go"
printf 'module hello\n\ngo 1.22\n' >"$work/hello/go.mod"
(cd "$work/hello" && build hello .)
build "$work/nodekeeper" ./cmd/nodekeeper
read -r -a fixture < <("$go" run ./internal/testenv/hostfixture/cmd/hostfixture "$work/host")

# mean_ms CMD... prints the mean wall time of one run in milliseconds.
mean_ms() {
	if command -v hyperfine >/dev/null; then
		hyperfine -N -i --warmup 20 --runs "$runs" --export-json "$work/h.json" "$*" >/dev/null 2>&1
		sed -n 's/.*"mean": *\([0-9.e+-]*\).*/\1/p' "$work/h.json" | head -n1 | awk '{printf "%.2f", $1 * 1000}'
		return
	fi
	local i t0 t1
	for ((i = 0; i < 20; i++)); do "$@" >/dev/null 2>&1 || true; done
	t0=$(date +%s%N)
	for ((i = 0; i < runs; i++)); do "$@" >/dev/null 2>&1 || true; done
	t1=$(date +%s%N)
	awk -v d=$((t1 - t0)) -v n="$runs" 'BEGIN {printf "%.2f", d / n / 1e6}'
}

hello=$(mean_ms "$work/hello/hello")
version=$(mean_ms "$work/nodekeeper" version)
check=$(mean_ms "$work/nodekeeper" check irq "${fixture[@]}")
awk -v h="$hello" -v v="$version" -v c="$check" 'BEGIN {
	printf "hello world                   %6.2f ms\n", h
	printf "nodekeeper version            %6.2f ms  %.2fx\n", v, v / h
	printf "nodekeeper check irq (192 CPU) %5.2f ms  %.2fx  (target <= 2x)\n", c, c / h
}'
