# shellcheck shell=bash
# Helpers for the payload scripts of the VM tests (internal/testenv/vm puts
# this file next to the script; it sources it with `. ./lib.sh`).
#
# What a script prints is read on the host by vm.Output:
#   KEY=VALUE             a result (a key may repeat; KEY has no blank)
#   problem=WHY           an expectation that failed; the scenario goes on
#   fail=WHY              the scenario cannot go on (the test stops there)
#   --- begin NAME        the lines up to "--- end NAME" are the block NAME,
#   --- end NAME          kept verbatim and not read as results
# The exit code of the script is the payload's: 0 when all went well.

# OUT: the output disk; its files come back in vm.Result.Files.
# shellcheck disable=SC2034 # used by the scripts that source this file
OUT=${OUTPUT_DIR:-/output}
problems=0

# problem WHY...: reports a failed expectation and counts it.
problem() {
	echo "problem=$*"
	problems=$((problems + 1))
}

# block NAME CMD...: runs CMD and prints its output as the block NAME.
block() {
	local name=$1 rc
	shift
	echo "--- begin $name"
	"$@"
	rc=$?
	echo
	echo "--- end $name"
	return "$rc"
}

now() { date +%s.%N; }
# elapsed START: seconds since START (a now value), two decimals.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# over START LIMIT: true once LIMIT seconds have passed since START.
over() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN { exit !(b - a >= l) }'; }

# wait_until TAG LIMIT CMD...: runs CMD every 0.2 s until it succeeds or LIMIT
# seconds have passed; prints TAG_seconds and TAG_ok; fails when it timed out.
wait_until() {
	local tag=$1 limit=$2 start ok=0
	shift 2
	start=$(now)
	while :; do
		if "$@"; then
			ok=1
			break
		fi
		over "$start" "$limit" && break
		sleep 0.2
	done
	echo "${tag}_seconds=$(elapsed "$start")"
	echo "${tag}_ok=$ok"
	[ "$ok" = 1 ]
}

# queue_irqs NIC prints "IRQ NAME" for each queue IRQ of the interface NIC:
# those of the PCI parent of the virtio device behind it (the N of virtioN
# varies), named virtioN-input.Q and virtioN-output.Q in /proc/interrupts.
queue_irqs() {
	local dev virt f n name
	dev=$(readlink -f "/sys/class/net/$1/device") || return 1
	virt=${dev##*/}
	for f in "$dev"/../msi_irqs/*; do
		n=${f##*/}
		name=$(awk -v k="$n:" '$1 == k { print $NF }' /proc/interrupts)
		case $name in
		"$virt"-input.* | "$virt"-output.*) echo "$n $name" ;;
		esac
	done
}

# proc_field PID FIELD: a field of /proc/PID/status ("Cpus_allowed_list",
# "CapEff"), empty when the process is gone.
proc_field() {
	awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null
}

# names DIR: the names of DIR's entries on one line, each followed by a
# blank, in the order of the glob (empty when DIR is empty or missing).
names() {
	local f
	for f in "$1"/*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		printf '%s ' "${f##*/}"
	done
}
