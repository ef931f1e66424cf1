#!/usr/bin/env bash
# Measures nodekeeper run's steady-state cost: CPU time (user+system) over a
# window after start-up, and peak/final RSS. The CPU time is the scheduler's
# run time of the daemon's threads (/proc/PID/task/*/schedstat, in ns); the
# clock-tick count of /proc/PID/stat (10 ms a tick) is printed beside it, too
# coarse for a daemon that wakes for microseconds.
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
runns() { cat "/proc/$pid/task/"*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
c0=$(cpu) r0=$(runns)
t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu) r1=$(runns)
t1=$(date +%s.%N)
rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
awk -v c0="$c0" -v c1="$c1" -v r0="$r0" -v r1="$r1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" -v rss="$rss" -v hwm="$hwm" 'BEGIN {
	run = (r1 - r0) / 1e9; ticks = (c1 - c0) / hz; wall = t1 - t0
	printf "window %.0fs: cpu %.3fs = %.4f%% of one CPU (clock ticks: %.2fs); RSS %.1f MiB (peak %.1f MiB)\n", wall, run, 100 * run / wall, ticks, rss / 1024, hwm / 1024
}'
