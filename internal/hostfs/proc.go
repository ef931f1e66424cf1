package hostfs

import (
	"bytes"
	"fmt"
	"strconv"
	"syscall"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// CatchesSignal reports whether process pid has a handler installed for sig
// (the SigCgt mask of /proc/<pid>/status). A process that has just been
// started has not installed its handlers yet: SIGHUP would kill it.
func (f *FS) CatchesSignal(pid int, sig syscall.Signal) (bool, error) {
	if pid <= 0 {
		return false, fmt.Errorf("no process %d", pid)
	}
	b, err := ReadFile(f.Proc(strconv.Itoa(pid), "status"), make([]byte, 0, 2048))
	if err != nil {
		return false, err
	}
	return ParseSigCgt(b, sig)
}

// ParseSigCgt reads the SigCgt line of a /proc/<pid>/status file.
func ParseSigCgt(status []byte, sig syscall.Signal) (bool, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		v, ok := bytes.CutPrefix(line, []byte("SigCgt:"))
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
		if err != nil {
			return false, fmt.Errorf("SigCgt %q: %w", bytes.TrimSpace(v), err)
		}
		if sig < 1 || sig > 64 {
			return false, fmt.Errorf("signal %d out of range", sig)
		}
		return mask&(1<<(uint(sig)-1)) != 0, nil
	}
	return false, fmt.Errorf("no SigCgt line")
}

// ProcessCPUs is the Cpus_allowed_list of /proc/<pid>/status: where the
// kernel lets the process run now.
func (f *FS) ProcessCPUs(pid int) (cpuset.Set, error) {
	if pid <= 0 {
		return cpuset.Set{}, fmt.Errorf("no process %d", pid)
	}
	b, err := ReadFile(f.Proc(strconv.Itoa(pid), "status"), make([]byte, 0, 2048))
	if err != nil {
		return cpuset.Set{}, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Cpus_allowed_list:")); ok {
			return cpuset.ParseListBytes(v)
		}
	}
	return cpuset.Set{}, fmt.Errorf("pid %d: no Cpus_allowed_list", pid)
}
