// Package hostfs owns every path into the host: the /proc, /sys, cgroup and root
// file system mount points (rooted, so tests and `--path.*` flags point them at
// fixture trees), cheap reads of small kernel files without trusting stat sizes,
// and the few kernel files nodekeeper writes (IRQ affinity, compaction).
//
// No other package names /proc, /sys, /sys/fs/cgroup or /etc literally.
package hostfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"unsafe"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Paths are the mount points nodekeeper reads the host through.
type Paths struct {
	Proc   string // default /proc
	Sys    string // default /sys
	Cgroup string // default /sys/fs/cgroup
	Root   string // default /: where /etc, /var and /run files are read
}

// DefaultPaths are the live host's mount points.
func DefaultPaths() Paths {
	return Paths{Proc: "/proc", Sys: "/sys", Cgroup: "/sys/fs/cgroup", Root: "/"}
}

// FS reads (and for a few files writes) the host under Paths.
type FS struct {
	p    Paths
	proc procfs.FS
}

// New checks that the proc root looks like a procfs and returns an FS.
func New(p Paths) (*FS, error) {
	d := DefaultPaths()
	if p.Proc == "" {
		p.Proc = d.Proc
	}
	if p.Sys == "" {
		p.Sys = d.Sys
	}
	if p.Cgroup == "" {
		p.Cgroup = d.Cgroup
	}
	if p.Root == "" {
		p.Root = d.Root
	}
	pfs, err := procfs.NewFS(p.Proc)
	if err != nil {
		return nil, fmt.Errorf("open procfs at %s: %w", p.Proc, err)
	}
	return &FS{p: p, proc: pfs}, nil
}

// Paths returns the mount points in use.
func (f *FS) Paths() Paths { return f.p }

// Live reports whether the sysfs root is the running kernel's /sys, so that
// netlink answers about the same host the files describe.
func (f *FS) Live() bool { return filepath.Clean(f.p.Sys) == "/sys" }

// Procfs is the prometheus/procfs view of the proc root, for the parsers it has.
func (f *FS) Procfs() procfs.FS { return f.proc }

// Proc joins elem under the proc root.
func (f *FS) Proc(elem ...string) string { return join(f.p.Proc, elem) }

// Sys joins elem under the sysfs root.
func (f *FS) Sys(elem ...string) string { return join(f.p.Sys, elem) }

// Cgroup joins elem under the cgroup root.
func (f *FS) Cgroup(elem ...string) string { return join(f.p.Cgroup, elem) }

// Root joins elem under the root file system (for /etc, /var, /run files).
func (f *FS) Root(elem ...string) string { return join(f.p.Root, elem) }

func join(root string, elem []string) string {
	return filepath.Join(append([]string{root}, elem...)...)
}

// MaxRead caps a single small-file read: kernel attribute files are a page at
// most; anything larger under these roots is not what nodekeeper expects.
const MaxRead = 1 << 20

// ErrTooLarge is returned when a file exceeds MaxRead.
var ErrTooLarge = errors.New("file larger than expected")

// ReadFile reads a whole (small) file into buf[:0], growing it as needed, and
// returns the filled slice. It never trusts stat sizes (proc and sysfs report
// 0 or 4096) and makes no allocation beyond the path conversion when buf is
// large enough: checks call it hundreds of times per run.
func ReadFile(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return buf[:0], &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return readFD(fd, path, buf)
}

// readFileZ is ReadFile for a NUL-terminated path held in a reused buffer,
// so that hot loops build paths without allocating.
func readFileZ(pathz []byte, buf []byte) ([]byte, error) {
	r, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&pathz[0])),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return buf[:0], &fs.PathError{Op: "open", Path: string(pathz[:len(pathz)-1]), Err: errno}
	}
	return readFD(int(r), "", buf)
}

func readFD(fd int, path string, buf []byte) ([]byte, error) {
	defer unix.Close(fd)
	buf = buf[:0]
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512)
	}
	for {
		if len(buf) > MaxRead {
			return buf, &fs.PathError{Op: "read", Path: path, Err: ErrTooLarge}
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// WriteFile writes data to an existing kernel attribute file in one write(2),
// as sysfs and procfs expect, and returns the kernel's error untouched
// (wrapped in *fs.PathError) so callers can tell EIO from EINVAL.
func WriteFile(path string, data []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_TRUNC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	n, err := unix.Write(fd, data)
	cerr := unix.Close(fd)
	if err == nil && n != len(data) {
		err = unix.EIO
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// atFDCWD is AT_FDCWD (-100) as the raw system call argument.
var atFDCWD = func() uintptr { v := unix.AT_FDCWD; return uintptr(v) }()
