package hostfs

import (
	"bytes"
	"fmt"
	"strconv"
	"syscall"
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
