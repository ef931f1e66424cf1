// Package opens tells tests whether a file was opened or read, through
// inotify: the guard for files nodekeeper must never touch (reading
// /proc/pagetypeinfo walks every free list with the zone lock held and
// interrupts off). Used only by tests.
package opens

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// Watch starts watching path and returns a function that reports whether the
// file was opened or read since the previous call. It skips the test when
// the kernel offers no inotify.
func Watch(t testing.TB, path string) (opened func() bool) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
		t.Fatal(err)
	}
	return func() bool {
		buf := make([]byte, 4096)
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
}
