#!/bin/bash
# TestVMInstallerImage's scenario (vm_image_test.go): runs the installer image
# from the OCI layout on the payload disk in podman as the DaemonSet's pod,
# checks the host's unit, runs a second pod (nothing may restart), then the
# uninstall DaemonSet's pod. Prints KEY=VALUE results.
# Parameters (vm.Options.Env): RUN_ARGS and UNINSTALL_ARGS (podman run
# arguments derived from the manifests, IMAGE standing for the image), READY
# (the readiness probe's command), INSTALLER (0: the binary has no install
# command yet: only the image is checked).
# shellcheck disable=SC2317
set -u
# shellcheck source=internal/testenv/vm/guest/lib.sh
. ./lib.sh

NK=nodekeeper.service
finish() {
	systemctl status --no-pager "$NK" >"$OUT/nodekeeper-status.txt" 2>&1
	sync
	exit "$1"
}
fatal() {
	echo "fail=$*"
	finish 1
}
# pod NAME ARGS: starts a pod's container, detached, from the image loaded
# from the layout (IMAGE in ARGS).
pod() {
	local name=$1 args=()
	for a in $2; do
		[ "$a" = IMAGE ] && a=$id
		args+=("$a")
	done
	podman run -d --name "$name" "${args[@]}"
}
read -ra ready_cmd <<<"$READY"
ready() { podman exec "$1" "${ready_cmd[@]}" >/dev/null 2>&1; }
installed() { [ "$(dpkg-query -W -f='${Status}' nodekeeper 2>/dev/null)" = "install ok installed" ]; }
not_installed() { ! installed; }

# A copy on a writable file system: the payload disk is read-only.
cp -a /payload/oci /run/nk-oci || fatal "copying the layout"
echo "podman=$(podman --version)"

# The image as the runtime sees it: loaded from the layout, this machine's
# platform chosen from the index, the installer as its entrypoint.
id=$(podman pull -q oci:/run/nk-oci 2>>"$OUT/podman-run.txt")
echo "pull_exit=$?"
[ -n "$id" ] || fatal "podman could not load the image from its OCI layout"
echo "image_arch=$(podman image inspect -f '{{.Architecture}}' "$id")"
echo "image_entrypoint=$(podman image inspect -f '{{join .Config.Entrypoint " "}}' "$id")"
echo "image_version=$(podman run --rm --network=none --entrypoint /nodekeeper "$id" version 2>&1 | head -n1)"

pod nk1 "$RUN_ARGS" >>"$OUT/podman-run.txt" 2>&1
echo "run_exit=$?"
# Active, or the installer gave up (its container ended).
settled() { systemctl is-active --quiet "$NK" || [ "$(podman inspect -f '{{.State.Running}}' "$1")" != true ]; }
wait_until active 300 settled nk1
echo "unit_active=$(systemctl is-active "$NK")"
echo "container=$(podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' nk1)"
if ! systemctl is-active --quiet "$NK"; then
	podman logs nk1 >"$OUT/installer.log" 2>&1
	fatal "nodekeeper.service is not active after the installer's pod"
fi
echo "unit_enabled=$(systemctl is-enabled "$NK")"
echo "unit_sha=$(sha256sum </usr/lib/systemd/system/nodekeeper.service | cut -d' ' -f1)"
echo "unit_dropins=$(systemctl show -p DropInPaths --value "$NK")"
echo "pkg=$(dpkg-query -W -f='${Status} ${Version}' nodekeeper)"
for f in /etc/nodekeeper/config.d/*.yaml; do
	[ -e "$f" ] && echo "configd=${f##*/} $(sha256sum <"$f" | cut -d' ' -f1)"
done
wait_until ready_wait 120 ready nk1
echo "ready_ok=$([ "$(podman inspect -f '{{.State.Running}}' nk1)" = true ] && ready nk1 && echo 1 || echo 0)"
pid=$(systemctl show -p MainPID --value "$NK")
echo "daemon_cgroup=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")"
podman logs nk1 >"$OUT/installer.log" 2>&1
# The probe compares with the install record in the container's /tmp.
podman cp nk1:/tmp/nodekeeper-install.version "$OUT/record" >/dev/null 2>&1
echo "record_kept=$([ -s "$OUT/record" ] && [ "$(cat "$OUT/record")" = "$(dpkg-query -W -f='${Version}' nodekeeper)" ] && echo 1 || echo 0)"

# The pod again (a restarted pod, a node that gets it again): nothing restarts.
podman rm -f nk1 >/dev/null 2>&1
pod nk2 "$RUN_ARGS" >>"$OUT/podman-run.txt" 2>&1
wait_until ready2_wait 120 ready nk2
echo "ready2_ok=$(ready nk2 && echo 1 || echo 0)"
pid2=$(systemctl show -p MainPID --value "$NK")
echo "restarted=$([ "$pid" = "$pid2" ] && echo no || echo "yes: MainPID $pid then $pid2")"
podman logs nk2 >"$OUT/installer2.log" 2>&1
podman rm -f nk2 >/dev/null 2>&1

# The uninstall DaemonSet's pod.
pod nk-un "$UNINSTALL_ARGS" >>"$OUT/podman-run.txt" 2>&1
wait_until uninstalled_wait 300 not_installed
echo "uninstalled_ok=$(not_installed && echo 1 || echo 0)"
echo "unit_after_uninstall=$(systemctl is-active "$NK")"
podman logs nk-un >"$OUT/uninstaller.log" 2>&1
podman rm -f nk-un >/dev/null 2>&1
finish 0
