//go:build unix

package pause

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// SystemClocks reads the kernel's CLOCK_MONOTONIC and CLOCK_REALTIME.
type SystemClocks struct{}

var _ Clocks = SystemClocks{}

// Read reads both clocks, monotonic first.
func (SystemClocks) Read() (Sample, error) {
	var mono, wall unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return Sample{}, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &wall); err != nil {
		return Sample{}, fmt.Errorf("clock_gettime(CLOCK_REALTIME): %w", err)
	}
	return Sample{Mono: time.Duration(mono.Nano()), Real: time.Unix(wall.Unix())}, nil
}
