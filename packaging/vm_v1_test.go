package packaging_test

// The kubelet pin on a cgroup v1/hybrid host under the hardened unit, in one
// VM boot: the Debian guest (systemd 252) boots with
// systemd.unified_cgroup_hierarchy=0, so systemd mounts the v1 controllers
// (among them cpuset at /sys/fs/cgroup/cpuset) and keeps its own tracking on
// the small cgroup2 mount at /sys/fs/cgroup/unified (hybrid); there is no
// cgroup.controllers at /sys/fs/cgroup. systemd stores AllowedCPUs= there but
// does not enforce it: the daemon creates the v1 cpuset cgroup
// nodekeeper-kubelet, sets its cpuset.cpus and cpuset.mems and moves kubelet's
// main process into it, which the unit allows only through
// CapabilityBoundingSet=CAP_SYS_NICE CAP_DAC_OVERRIDE (the move; the mkdir and
// rmdir in the hierarchy's root, a directory of mode 0555) and
// ReadWritePaths=-/sys/fs/cgroup/cpuset, which the package's generator
// (systemd/nodekeeper-generator) adds on v1 hosts only; the v2 end-to-end
// test sees no capability at all.
//
// The .deb is installed by image/scripts/install.sh with a static pin on CPUs
// 2-3 and everything else off; the daemon is started; kubelet's process must
// end up on 2-3, listed in the cgroup; a restart of kubelet must be followed
// (the new process is moved in again); package removal must give kubelet every
// CPU back and remove the cgroup; and the journal must show no refused
// operation.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/testenv/vm"
)

const (
	v1KubeletCPUs = "2-3"
	v1Timeout     = 8 * time.Minute
)

// v1KernelArgs make systemd 252 boot with the hybrid hierarchy: the v1
// controllers, cpuset among them, at /sys/fs/cgroup/<controller>.
var v1KernelArgs = []string{"systemd.unified_cgroup_hierarchy=0"}

var v1Override = fmt.Sprintf(`metrics:
  listen: ""
imds:
  enabled: "false"
irq:
  remediation: none
kubelet:
  pinning: static
  cpus: %q
compaction:
  mode: "off"
`, v1KubeletCPUs)

// TestVMPackageCgroupV1Pin: see the top of this file.
func TestVMPackageCgroupV1Pin(t *testing.T) {
	vm.Require(t)
	p := buildPackages(t)
	deb, err := os.ReadFile(p.deb)
	if err != nil {
		t.Fatal(err)
	}
	install, err := os.ReadFile(repo("image/scripts/install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	debName := filepath.Base(p.deb)
	payload := map[string][]byte{
		"install.sh":    install,
		debName:         deb,
		"override.yaml": []byte(v1Override),
	}

	// Waiting for another VM of this host does not count against v1Timeout.
	ctx, cancel := context.WithTimeout(t.Context(), v1Timeout+15*time.Minute)
	defer cancel()
	res, err := vm.Run(t, ctx, vm.Options{CPUs: 4, NICQueues: 2, OutputMiB: 16, Payload: payload, Timeout: v1Timeout,
		KernelArgs: v1KernelArgs, Script: "testdata/vm_v1.sh",
		Env: map[string]string{"DEB": debName, "WANT": v1KubeletCPUs, "CG": "/sys/fs/cgroup/cpuset/" + kubelet.CgroupName}})
	if res == nil {
		t.Fatal(err)
	}
	o, journal, own := guestRun(t, res, err, "install.log", "dpkg-remove.log", "check-kubelet.txt", "nodekeeper-status.txt", "state.json")

	// The guest runs the v1/hybrid hierarchy.
	o.Want(t, "nproc", "4", "root_controllers", "absent", "cpuset_dir", "present", "root_cpuset_cpus", "0-3",
		"kubelet_active", "active", "before_proc", "0-3", "before_in_cgroup", "0")
	if !slices.ContainsFunc(o.Values("cgroup_mount"), func(m string) bool {
		f := strings.Fields(m)
		return len(f) == 3 && f[0] == "/sys/fs/cgroup/cpuset" && f[1] == "cgroup" && slices.Contains(strings.Split(f[2], ","), "cpuset")
	}) {
		t.Errorf("no v1 cpuset mount at /sys/fs/cgroup/cpuset: %q", o.Values("cgroup_mount"))
	}

	// Install, start, the pin.
	o.Want(t, "install_exit", "0", "active_after_start", "active", "pinned_ok", "1",
		"pinned_proc", v1KubeletCPUs, "pinned_allowed", v1KubeletCPUs, "pinned_in_cgroup", "1",
		"cg_cpus", v1KubeletCPUs, "cg_mems", o.One(t, "root_cpuset_mems"), "check_kubelet_exit", "0")
	for _, k := range []string{"pinned_cpuset_line", "restarted_cpuset_line"} {
		if l := o.One(t, k); !strings.HasSuffix(l, ":cpuset:/nodekeeper-kubelet") {
			t.Errorf("%s = %q: kubelet's /proc/PID/cgroup does not put it in the v1 cpuset nodekeeper-kubelet", k, l)
		}
	}
	if !slices.Contains(strings.Fields(o.One(t, "cg_procs")), o.One(t, "pinned_pid")) {
		t.Errorf("cgroup.procs of nodekeeper-kubelet = %q, want kubelet's pid %s", o.One(t, "cg_procs"), o.One(t, "pinned_pid"))
	}
	if o.One(t, "at_ready_proc") != v1KubeletCPUs {
		t.Logf("note: when systemctl start returned, kubelet ran on %q (in cgroup %s)", o.One(t, "at_ready_proc"), o.One(t, "at_ready_in_cgroup"))
	}

	// Only here, on cgroup v1, the generator grants CAP_DAC_OVERRIDE (bit 1)
	// and CAP_SYS_NICE (bit 23), beside the unit's CAP_NET_ADMIN (bit 12),
	// and the exposure stays within bounds.
	o.Want(t, "nk_capeff", "000000c000801002", "generated_dropins", "50-cgroup-v1.conf 50-node-compact.conf ")
	if x := o.Float(t, "security_exposure"); x <= 0 || x > 2.6 { // 2.5 before the latency measurement's CAP_BPF and bpf(2)
		t.Errorf("systemd-analyze security nodekeeper.service in the v1 guest: %v, want at most 2.5\n%s", x, res.Files["security.txt"])
	}

	// The restart of kubelet is followed.
	o.Want(t, "newpid_ok", "1", "repinned_ok", "1", "restarted_proc", v1KubeletCPUs, "restarted_in_cgroup", "1",
		"nk_active_end", "active", "nk_restarts", "0")
	if o.One(t, "restarted_pid") == o.One(t, "pinned_pid") {
		t.Errorf("kubelet's MainPID %s did not change with the restart", o.One(t, "restarted_pid"))
	}
	if !slices.Contains(strings.Fields(o.One(t, "cg_procs_restarted")), o.One(t, "restarted_pid")) {
		t.Errorf("after the restart cgroup.procs = %q, want the new pid %s", o.One(t, "cg_procs_restarted"), o.One(t, "restarted_pid"))
	}
	if o.One(t, "nk_pid_end") != o.One(t, "nk_pid") {
		t.Errorf("nodekeeper's MainPID went from %s to %s: the daemon was restarted", o.One(t, "nk_pid"), o.One(t, "nk_pid_end"))
	}

	// Removal.
	o.Want(t, "remove_exit", "0", "after_remove_status", "config-files", "after_remove_active", "inactive",
		"after_remove_proc", "0-3", "after_remove_allowed", "", "after_remove_in_cgroup", "0", "after_remove_cgroup", "absent")

	// The journal: pinned, re-pinned, nothing refused.
	var pinned, repinned int
	for _, e := range own {
		switch {
		case e["MESSAGE_ID"] == logging.MsgKubeletPinned:
			pinned++
		case e["MESSAGE_ID"] == logging.MsgKubeletPinFailed:
			t.Errorf("the journal has a kubelet pin failure: %s", e["MESSAGE"])
		case strings.HasPrefix(e["MESSAGE"], "kubelet restarted: pin re-applied"):
			repinned++
		}
		if p, _ := strconv.Atoi(e["PRIORITY"]); p <= 3 {
			t.Errorf("the daemon logged an error: %s", e["MESSAGE"])
		}
	}
	if pinned == 0 {
		t.Errorf("the journal has no kubelet pinned entry (MESSAGE_ID=%s)", logging.MsgKubeletPinned)
	}
	if repinned == 0 {
		t.Errorf("the journal does not say the restarted kubelet was re-pinned")
	}
	for _, e := range journal {
		m := strings.ToLower(e["MESSAGE"] + " " + e["ERR"])
		for _, bad := range []string{"permission denied", "operation not permitted", "read-only file system"} {
			if strings.Contains(m, bad) {
				t.Errorf("the journal shows %q (the unit's hardening?): %s", bad, e["MESSAGE"])
			}
		}
	}

	t.Logf("numbers (TCG guest): VM boot %.1f s (guest uptime %.1f s at the payload); systemd %s, kernel %s; "+
		"exposure %s with the v1 drop-in; install.sh %.1f s; systemctl start → READY=1 %.2f s (kubelet then on %s); READY=1 → pin seen by the poll %.2f s; "+
		"kubelet restart → new process re-pinned %.2f s (pid %s → %s); dpkg --remove %.2f s; %d journal entries of the daemon; VM gone after %.1f s",
		res.BootSeconds, res.GuestUptime, o.One(t, "systemd_version"), o.One(t, "kernel"), o.One(t, "security_exposure"),
		o.Float(t, "install_seconds"), o.Float(t, "start_seconds"), o.One(t, "at_ready_proc"), o.Float(t, "pinned_seconds"),
		o.Float(t, "restart_to_repinned_seconds"), o.One(t, "pinned_pid"), o.One(t, "restarted_pid"),
		o.Float(t, "remove_seconds"), len(own), res.Duration.Seconds())
}
