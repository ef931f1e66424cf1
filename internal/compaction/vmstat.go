package compaction

import (
	"bytes"
	"strconv"
)

// ParseVMStatCompact returns the compact_* counters of /proc/vmstat
// (compact_migrate_scanned, compact_free_scanned, compact_isolated,
// compact_stall, …; whichever the kernel has). Lines that are not "name value"
// are ignored. An empty map means a kernel without compaction counters.
func ParseVMStatCompact(b []byte) map[string]uint64 {
	out := make(map[string]uint64, 12)
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if !bytes.HasPrefix(line, []byte("compact_")) {
			continue
		}
		name, val, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			continue
		}
		out[string(name)] = n
	}
	return out
}

// vmstatDelta is after − before for every counter in both (0 when a counter
// went backwards).
func vmstatDelta(before, after map[string]uint64) map[string]uint64 {
	if before == nil || after == nil {
		return nil
	}
	d := make(map[string]uint64, len(after))
	for k, a := range after {
		b, ok := before[k]
		if !ok {
			continue
		}
		if a >= b {
			d[k] = a - b
		} else {
			d[k] = 0
		}
	}
	return d
}
