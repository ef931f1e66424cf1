package hostfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// CPUList reads a sysfs CPU list file (e.g. devices/system/cpu/online) relative
// to the sysfs root. A missing file gives ok=false and no error.
func (f *FS) CPUList(rel ...string) (s cpuset.Set, ok bool, err error) {
	path := f.Sys(rel...)
	var buf [256]byte
	b, err := ReadFile(path, buf[:0])
	if errors.Is(err, fs.ErrNotExist) {
		return cpuset.Set{}, false, nil
	}
	if err != nil {
		return cpuset.Set{}, false, err
	}
	if string(bytes.TrimSpace(b)) == "(null)" {
		// A mask the kernel never allocated: nohz_full on kernels built
		// with NO_HZ_FULL and booted without nohz_full= (6.1 among them).
		return cpuset.Set{}, true, nil
	}
	s, err = cpuset.ParseList(string(b))
	if err != nil {
		return cpuset.Set{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return s, true, nil
}

// OnlineCPUs is devices/system/cpu/online. It is required: without it nothing
// can be judged or written safely.
func (f *FS) OnlineCPUs() (cpuset.Set, error) {
	s, ok, err := f.CPUList("devices", "system", "cpu", "online")
	if err != nil {
		return s, err
	}
	if !ok || s.IsEmpty() {
		return s, fmt.Errorf("no online CPUs listed in %s", f.Sys("devices", "system", "cpu", "online"))
	}
	return s, nil
}

// IsolatedCPUs is isolated ∪ nohz_full (both optional files).
func (f *FS) IsolatedCPUs() (cpuset.Set, error) {
	iso, _, err := f.CPUList("devices", "system", "cpu", "isolated")
	if err != nil {
		return iso, err
	}
	nohz, _, err := f.CPUList("devices", "system", "cpu", "nohz_full")
	if err != nil {
		return iso, err
	}
	return iso.Union(nohz), nil
}

// NodeCPUs is the CPU list of NUMA node n (ok=false when the node directory or
// its cpulist does not exist).
func (f *FS) NodeCPUs(node int) (cpuset.Set, bool, error) {
	return f.CPUList("devices", "system", "node", "node"+strconv.Itoa(node), "cpulist")
}
