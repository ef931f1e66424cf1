#!/usr/bin/env bash
# Measures nodekeeper run's steady-state cost: CPU time (user+system) over a
# window after start-up, and peak/final RSS. The CPU time is /proc/PID/stat's:
# the kernel's run time of every thread, those that ended included (the SNAT
# scan's thread ends after each scan), in 10 ms clock ticks; use windows of
# 150 s or more, so that one tick is under 0.007 % of one CPU.
#   scripts/measure-daemon.sh SECONDS [nodekeeper run arguments…]
set -euo pipefail
secs=${1:?usage: measure-daemon.sh SECONDS [run args…]}
shift
bin=${NODEKEEPER_BIN:-bin/nodekeeper}
"$bin" run "$@" >"${MEASURE_LOG:-/dev/null}" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
sleep 5 # start-up is not steady state
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu)
t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu)
t1=$(date +%s.%N)
rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" -v rss="$rss" -v hwm="$hwm" 'BEGIN {
	cpu = (c1 - c0) / hz; wall = t1 - t0
	printf "window %.0fs: cpu %.3fs = %.4f%% of one CPU; RSS %.1f MiB (peak %.1f MiB)\n", wall, cpu, 100 * cpu / wall, rss / 1024, hwm / 1024
}'
