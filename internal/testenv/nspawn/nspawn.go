// Package nspawn boots a throwaway systemd container with systemd-nspawn, for
// tests that need a real systemd, D-Bus, journald and irqbalance.
//
// The container boots from a root filesystem built by scripts/build-rootfs.sh,
// whose path is taken from the environment variable NODEKEEPER_ROOTFS. The tree
// itself is never modified: the container's root is an overlay on a tmpfs
// (systemd-nspawn --volatile=overlay), thrown away at shutdown.
//
// The host need not run systemd: the container is started with --register=no
// --keep-unit, and systemd-nspawn is run in cgroups of its own (a directory at
// the root of the cgroup2 and name=systemd hierarchies, whichever exist), which
// are removed at shutdown together with the payload/ and supervisor/ cgroups
// nspawn makes below them.
//
// One container runs at a time on a host: Boot waits for any other container
// booted through this package, in this process or another, to shut down, and
// then for any other systemd-nspawn of the host to end.
//
// With Options.APIVFSWritable the container's /proc/sys, /proc/irq and /sys are
// the host's and writable: irqbalance in the container then moves the host's
// IRQs. Boot takes the host-wide IRQ lock of package irqsnap, snapshots the
// host's IRQ masks and restores them after shutdown.
//
// Only tests use this package.
package nspawn

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
)

// DefaultName is the machine name of a container booted without Options.Name.
const DefaultName = "nodekeeper-test"

const (
	layerName          = "nspawn"
	defaultBootTimeout = 30 * time.Second
	stopTimeout        = 10 * time.Second
	lockTimeout        = 2 * time.Minute
	othersTimeout      = 3 * time.Minute
	cgroupPrefix       = "nodekeeper-test-"
	consoleLimit       = 64 << 10
)

// Bind is a host path made visible in the container.
type Bind struct {
	Source   string // absolute host path
	Target   string // path in the container; Source when empty
	ReadOnly bool
}

// Options tune Boot. The zero value boots DefaultName with no extra binds.
type Options struct {
	// Name is the machine name (and hostname) of the container.
	Name string
	// Binds are bind mounts into the container, for example the freshly built
	// daemon binary, read-only.
	Binds []Bind
	// APIVFSWritable sets SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 for systemd-nspawn:
	// the container's /proc/sys, /proc/irq and /sys are the host's, writable.
	// The host's IRQ masks are snapshotted at boot and restored after shutdown.
	APIVFSWritable bool
	// PrivateNetwork gives the container a network namespace of its own with
	// only a loopback interface (systemd-nspawn --private-network).
	PrivateNetwork bool
	// BootTimeout bounds the wait for the container's systemd to report
	// running or degraded; 30 s when zero.
	BootTimeout time.Duration
	// Args are extra systemd-nspawn arguments.
	Args []string
}

// Container is a booted systemd container. Its methods may be called from
// several goroutines; Shutdown runs at the latest in the test's cleanup.
type Container struct {
	t        testing.TB
	name     string
	rootfs   string
	cmd      *exec.Cmd
	done     chan struct{} // closed when systemd-nspawn exited
	waitErr  error         // set before done is closed
	console  *tailBuffer
	cgroups  []string // our cgroup directories, one per hierarchy
	leader   int
	leaderST string // the leader's start time, against PID reuse
	bootDur  time.Duration

	irqMasks  *irqsnap.Masks
	unlockIRQ func()
	unlockBox func()

	mu    sync.Mutex
	conns []*sddbus.Conn

	stopOnce sync.Once
	stopDur  time.Duration
	stopErr  error
}

// Name returns the machine name.
func (c *Container) Name() string { return c.name }

// PID returns the PID of systemd-nspawn.
func (c *Container) PID() int { return c.cmd.Process.Pid }

// Leader returns the host PID of the container's init (systemd).
func (c *Container) Leader() int { return c.leader }

// BootDuration returns the time from starting systemd-nspawn to readiness.
func (c *Container) BootDuration() time.Duration { return c.bootDur }

// CgroupDirs returns the cgroup directories systemd-nspawn runs in; Shutdown
// removes them.
func (c *Container) CgroupDirs() []string { return slices.Clone(c.cgroups) }

// Console returns the tail of the container's console and nspawn's messages.
func (c *Container) Console() string { return c.console.String() }

// HostIRQs returns the snapshot of the host's IRQ masks taken at boot, nil
// unless Options.APIVFSWritable was set. Shutdown restores it.
func (c *Container) HostIRQs() *irqsnap.Masks { return c.irqMasks }

// Root returns the host path of the container's root directory.
func (c *Container) Root() string { return fmt.Sprintf("/proc/%d/root", c.leader) }

func (c *Container) hostPath(name string) string { return filepath.Join(c.Root(), name) }

// BusAddress returns the D-Bus address of the container's system bus as seen
// from the host.
func (c *Container) BusAddress() string {
	return fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", c.leader)
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
