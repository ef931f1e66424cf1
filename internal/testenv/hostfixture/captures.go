package hostfixture

import (
	"path/filepath"
	"runtime"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Captures of real hosts, kept under captures/ (symlinks as on the host):
//   - CIVM: a 2-vCPU KVM guest, kernel 6.18, single-queue virtio-net, hybrid
//     cgroups; /proc and the /sys files nodekeeper reads.
//   - H100: a 16-vCPU KVM guest, kernel 6.18, virtio NIC and 8 GPU vectors;
//     /proc only (interrupts, softirqs, softnet_stat, buddyinfo, vmstat, irq).
const (
	CIVM = "ci-vm-2cpu-6.18"
	H100 = "h100-vm-16cpu-6.18"
)

// Capture returns the roots of a captured host. The tree is read-only by
// convention: tests that write copy it first.
func Capture(name string) hostfs.Paths {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "captures", name)
	return hostfs.Paths{
		Proc:   filepath.Join(dir, "proc"),
		Sys:    filepath.Join(dir, "sys"),
		Cgroup: filepath.Join(dir, "sys", "fs", "cgroup"),
		Root:   filepath.Join(dir, "root"),
	}
}
