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
// booted through this package, in this process or another, to shut down.
//
// With Options.APIVFSWritable the container's /proc/sys, /proc/irq and /sys are
// the host's and writable: irqbalance in the container then moves the host's
// IRQs. Boot takes the host-wide IRQ lock of package irqsnap, snapshots the
// host's IRQ masks and restores them after shutdown.
//
// Only tests use this package.
package nspawn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/testenv/hostlock"
	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// EnvRootfs names the environment variable holding the container root
// filesystem's path (the last line scripts/build-rootfs.sh prints).
const EnvRootfs = "NODEKEEPER_ROOTFS"

// DefaultName is the machine name of a container booted without Options.Name.
const DefaultName = "nodekeeper-test"

const (
	layerName          = "nspawn"
	defaultBootTimeout = 30 * time.Second
	stopTimeout        = 10 * time.Second
	lockTimeout        = 2 * time.Minute
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

// Require returns the container root filesystem's path, or ends the test
// through layer.Unavailable (layer "nspawn": skipped, or failed when
// NODEKEEPER_REQUIRE_LAYERS names it) when this host cannot boot a container:
// not root, systemd-nspawn or nsenter missing, or no root filesystem.
func Require(t testing.TB) string {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		layer.Unavailable(t, layerName, "booting a container needs root (running as uid %d)", uid)
	}
	for _, bin := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			layer.Unavailable(t, layerName, "%s not found: run scripts/test-deps.sh", bin)
		}
	}
	rootfs := os.Getenv(EnvRootfs)
	if rootfs == "" {
		layer.Unavailable(t, layerName,
			"%s is not set: set it to the path that scripts/build-rootfs.sh prints", EnvRootfs)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr/lib/systemd/systemd")); err != nil {
		layer.Unavailable(t, layerName,
			"%s=%s is not a container root filesystem (%v): run scripts/build-rootfs.sh", EnvRootfs, rootfs, err)
	}
	return rootfs
}

// cgroupSeq numbers this process's container cgroups; one container runs at a
// time (lockBox), so Boot is its only writer.
var cgroupSeq int

// Boot boots a container (see Require for when it skips instead) and returns
// once its systemd reports running or degraded and its system bus socket
// exists. The test's cleanup shuts it down.
func Boot(t testing.TB, opts Options) *Container {
	t.Helper()
	rootfs := Require(t)
	name := opts.Name
	if name == "" {
		name = DefaultName
	}
	bootTimeout := opts.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = defaultBootTimeout
	}
	c := &Container{t: t, name: name, rootfs: rootfs, done: make(chan struct{}), console: &tailBuffer{limit: consoleLimit}}

	// The IRQ lock comes before the container lock, always: a test that holds
	// it already (irqsnap.Guard) can boot a container without a lock cycle.
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	if opts.APIVFSWritable {
		unlock, err := irqsnap.Lock(ctx)
		if err != nil {
			t.Fatalf("nspawn: %v", err)
		}
		c.unlockIRQ = unlock
	} else {
		// Only to restore the masks of a test binary that died holding the
		// lock (see irqsnap.Lock); not worth waiting for.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		if unlock, err := irqsnap.Lock(short); err == nil {
			unlock()
		}
		cancel()
	}
	unlockBox, err := lockBox(ctx)
	if err != nil {
		if c.unlockIRQ != nil {
			c.unlockIRQ()
		}
		t.Fatalf("nspawn: %v", err)
	}
	c.unlockBox = unlockBox
	t.Cleanup(func() {
		d, err := c.Shutdown()
		if err != nil {
			t.Errorf("nspawn: shutdown of %s: %v", c.name, err)
		} else if c.stopDur > 0 {
			t.Logf("nspawn: %s shut down in %v", c.name, d.Round(time.Millisecond))
		}
	})
	if opts.APIVFSWritable {
		m, err := irqsnap.Snapshot()
		if err != nil {
			t.Fatalf("nspawn: snapshot host IRQ masks: %v", err)
		}
		c.irqMasks = m
	}

	if err := c.makeCgroups(); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	args, err := nspawnArgs(rootfs, name, opts)
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	// The shell moves itself into our cgroups, then becomes systemd-nspawn.
	script := `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; shift; n=$((n-1)); done; exec "$@"`
	shArgs := []string{"-c", script, "sh", strconv.Itoa(len(c.cgroups))}
	for _, dir := range c.cgroups {
		shArgs = append(shArgs, filepath.Join(dir, "cgroup.procs"))
	}
	shArgs = append(shArgs, "systemd-nspawn")
	shArgs = append(shArgs, args...)
	c.cmd = exec.Command("/bin/sh", shArgs...)
	c.cmd.Env = nspawnEnv(opts.APIVFSWritable)
	c.cmd.Stdout = c.console
	c.cmd.Stderr = c.console
	c.cmd.WaitDelay = 2 * time.Second
	// Own process group: a ^C at the terminal reaches the test, not nspawn.
	// If the test process dies, nspawn gets SIGTERM and halts the container.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	start := time.Now()
	runtime.LockOSThread() // Pdeathsig follows the thread that forks
	err = c.cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("nspawn: start: %v", err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()

	if err := c.waitReady(start.Add(bootTimeout)); err != nil {
		t.Fatalf("nspawn: boot %s: %v\nconsole:\n%s", name, err, c.console.String())
	}
	c.bootDur = time.Since(start)
	t.Logf("nspawn: %s booted in %v (nspawn pid %d, leader pid %d)",
		name, c.bootDur.Round(time.Millisecond), c.cmd.Process.Pid, c.leader)
	return c
}

func lockBox(ctx context.Context) (func(), error) {
	return hostlock.Acquire(ctx, "nspawn", 50*time.Millisecond)
}

func nspawnArgs(rootfs, name string, opts Options) ([]string, error) {
	args := []string{
		"--directory=" + rootfs, "--boot", "--register=no", "--keep-unit",
		"--console=pipe", "--machine=" + name, "--volatile=overlay",
	}
	if opts.PrivateNetwork {
		args = append(args, "--private-network")
	}
	for _, b := range opts.Binds {
		if !filepath.IsAbs(b.Source) {
			return nil, fmt.Errorf("bind source %q is not absolute", b.Source)
		}
		if _, err := os.Stat(b.Source); err != nil {
			return nil, fmt.Errorf("bind source: %w", err)
		}
		target := b.Target
		if target == "" {
			target = b.Source
		}
		if !filepath.IsAbs(target) || strings.Contains(b.Source+target, ":") {
			return nil, fmt.Errorf("bind %q -> %q: paths must be absolute and free of ':'", b.Source, target)
		}
		flag := "--bind="
		if b.ReadOnly {
			flag = "--bind-ro="
		}
		args = append(args, flag+b.Source+":"+target)
	}
	return append(args, opts.Args...), nil
}

// nspawnEnv is this process's environment less what would change how
// systemd-nspawn behaves, plus SYSTEMD_NSPAWN_API_VFS_WRITABLE when asked.
func nspawnEnv(apiVFSWritable bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SYSTEMD_NSPAWN_") || k == "NOTIFY_SOCKET" ||
			strings.HasPrefix(k, "LISTEN_") || k == "SYSTEMD_SECCOMP" {
			continue
		}
		env = append(env, kv)
	}
	if apiVFSWritable {
		env = append(env, "SYSTEMD_NSPAWN_API_VFS_WRITABLE=1")
	}
	return env
}

// cgroupRoots returns the mount points of the cgroup2 hierarchy and of the
// name=systemd v1 hierarchy, whichever are mounted.
func cgroupRoots() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 || fields[3] != "/" {
			continue
		}
		switch {
		case tail[0] == "cgroup2":
		case tail[0] == "cgroup" && slices.Contains(strings.Split(tail[2], ","), "name=systemd"):
		default:
			continue
		}
		mnt := unescapeMountinfo(fields[4])
		if !slices.Contains(roots, mnt) {
			roots = append(roots, mnt)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, errors.New("neither a cgroup2 nor a name=systemd cgroup hierarchy is mounted")
	}
	return roots, nil
}

var mountinfoEscape = regexp.MustCompile(`\\[0-7]{3}`)

func unescapeMountinfo(s string) string {
	return mountinfoEscape.ReplaceAllStringFunc(s, func(o string) string {
		n, _ := strconv.ParseUint(o[1:], 8, 8)
		return string(rune(n))
	})
}

var cgroupName = regexp.MustCompile(`^` + cgroupPrefix + `([0-9]+)-[0-9]+$`)

// makeCgroups removes the cgroups left by dead processes, then makes ours.
func (c *Container) makeCgroups() error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	cgroupSeq++ // one Boot at a time: lockBox is held
	name := fmt.Sprintf("%s%d-%d", cgroupPrefix, os.Getpid(), cgroupSeq)
	for _, root := range roots {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			m := cgroupName.FindStringSubmatch(e.Name())
			if m == nil || !e.IsDir() {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); pid != os.Getpid() && !alive(pid) {
				_ = removeCgroup(filepath.Join(root, e.Name()), 0)
			}
		}
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("make cgroup: %w", err)
		}
		c.cgroups = append(c.cgroups, dir)
	}
	return nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeCgroup removes dir and the cgroups below it, deepest first, retrying
// for up to wait while they still hold (exiting) processes.
func removeCgroup(dir string, wait time.Duration) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := syscall.Rmdir(dirs[i])
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				return fmt.Errorf("remove cgroup %s: %w (processes: %q)", dirs[i], err, strings.Fields(string(procs)))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// waitReady finds the leader and waits until its systemd reports running or
// degraded and the system bus socket exists.
func (c *Container) waitReady(deadline time.Time) error {
	var state string
	for {
		select {
		case <-c.done:
			return fmt.Errorf("systemd-nspawn exited: %v", c.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready in time (leader pid %d, is-system-running %q)", c.leader, state)
		}
		if c.leader == 0 {
			if pid := findLeader(c.cmd.Process.Pid); pid > 0 {
				c.leader, c.leaderST = pid, startTime(pid)
			}
		}
		if c.leader != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			out, _ := c.Exec(ctx, "systemctl", "is-system-running")
			cancel()
			state = strings.TrimSpace(out)
			switch state {
			case "running", "degraded":
				if _, err := os.Stat(c.hostPath("/run/dbus/system_bus_socket")); err != nil {
					break
				}
				if state == "degraded" {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					failed, _ := c.Exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
					cancel()
					c.t.Logf("nspawn: %s is degraded; failed units:\n%s", c.name, failed)
				}
				return nil
			case "maintenance", "stopping":
				return fmt.Errorf("is-system-running: %s", state)
			}
			// "offline" and errors: systemd is not up yet.
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// findLeader returns the child of nspawn that is PID 1 of a new PID namespace.
func findLeader(nspawn int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawn))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				continue
			}
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, line := range strings.Split(string(status), "\n") {
				if ns, ok := strings.CutPrefix(line, "NSpid:"); ok {
					ids := strings.Fields(ns)
					if len(ids) >= 2 && ids[len(ids)-1] == "1" {
						return pid
					}
				}
			}
		}
	}
	return 0
}

// startTime returns field 22 of /proc/<pid>/stat, "" when pid is gone.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
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

// Exec runs a command inside the container (all of the leader's namespaces,
// its root and its working directory, via nsenter) and returns its stdout. The
// error of a failed command carries its exit status and stderr.
func (c *Container) Exec(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("nspawn: Exec: no command")
	}
	nsArgs := append([]string{"--target", strconv.Itoa(c.leader), "--all", "--root", "--wd", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsArgs...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_PAGER=", "PAGER=cat", "SYSTEMD_COLORS=0",
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nspawn: %s in %s: %w: %s",
			strings.Join(args, " "), c.name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Systemd returns a go-systemd connection to the container's system bus (see
// BusAddress), once systemd answers on it. ctx bounds the wait, which retries
// while the bus or systemd's place on it is not there, as after a restart of
// D-Bus. The connection stays open after ctx ends; Close it, or Shutdown does.
func (c *Container) Systemd(ctx context.Context) (*sddbus.Conn, error) {
	var lastErr error
	for {
		conn, err := c.dialSystemd(ctx)
		if err == nil {
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			return conn, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nspawn: connect to systemd at %s: %w (last error: %v)", c.BusAddress(), ctx.Err(), lastErr)
		case <-c.done:
			return nil, fmt.Errorf("nspawn: connect to systemd: container %s is gone", c.name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Container) dialSystemd(ctx context.Context) (*sddbus.Conn, error) {
	type result struct {
		conn *sddbus.Conn
		err  error
	}
	ch := make(chan result, 1)
	addr := c.BusAddress()
	go func() {
		conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return dialBus(addr) })
		if err == nil {
			// systemd answers: it is on the bus.
			if _, err = conn.GetUnitPropertyContext(ctx, "init.scope", "ActiveState"); err != nil {
				conn.Close()
				conn = nil
			}
		}
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// dialBus opens an authenticated connection (EXTERNAL, this process's uid) to
// the bus at addr and says Hello.
func dialBus(addr string) (*dbus.Conn, error) {
	conn, err := dbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// openRoot opens the container's root directory for openat2 with
// RESOLVE_IN_ROOT: symlinks in the container resolve inside the container.
func (c *Container) openRoot() (int, error) {
	return unix.Open(c.Root(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

func inRoot(root int, name string, flags uint64, mode uint32) (int, error) {
	return unix.Openat2(root, name, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

func relPath(name string) (string, error) {
	if !filepath.IsAbs(name) {
		return "", fmt.Errorf("nspawn: %q is not an absolute path", name)
	}
	rel := strings.TrimPrefix(filepath.Clean(name), "/")
	if rel == "" {
		return ".", nil
	}
	return rel, nil
}

// WriteFile writes data to the absolute path name inside the container,
// creating missing parent directories (mode 0755) and the file with mode perm.
// Writes land in the container's overlay, never in the root filesystem tree.
func (c *Container) WriteFile(name string, data []byte, perm os.FileMode) error {
	rel, err := relPath(name)
	if err != nil {
		return err
	}
	root, err := c.openRoot()
	if err != nil {
		return fmt.Errorf("nspawn: %w", err)
	}
	defer unix.Close(root)
	if err := mkdirAllIn(root, filepath.Dir(rel)); err != nil {
		return fmt.Errorf("nspawn: mkdir for %s: %w", name, err)
	}
	fd, err := inRoot(root, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, uint32(perm.Perm()))
	if err != nil {
		return fmt.Errorf("nspawn: open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), c.hostPath(name))
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm.Perm()) // not reduced by the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("nspawn: write %s: %w", name, err)
	}
	return nil
}

func mkdirAllIn(root int, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := inRoot(root, p, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		parent := "."
		if i > 0 {
			parent = strings.Join(parts[:i], "/")
		}
		pfd, err := inRoot(root, parent, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(pfd, parts[i], 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	return nil
}

// ReadFile reads the absolute path name inside the container.
func (c *Container) ReadFile(name string) ([]byte, error) {
	rel, err := relPath(name)
	if err != nil {
		return nil, err
	}
	root, err := c.openRoot()
	if err != nil {
		return nil, fmt.Errorf("nspawn: %w", err)
	}
	defer unix.Close(root)
	fd, err := inRoot(root, rel, unix.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("nspawn: open %s: %w", name, &os.PathError{Op: "open", Path: name, Err: err})
	}
	f := os.NewFile(uintptr(fd), c.hostPath(name))
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("nspawn: read %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Journal returns the journal entries of unit inside the container
// (`journalctl -u unit -o json`), one map of fields per entry. A binary field
// (a JSON array of bytes) becomes its bytes as a string; a field with several
// values becomes the values joined by newlines.
func (c *Container) Journal(ctx context.Context, unit string) ([]map[string]string, error) {
	out, err := c.Exec(ctx, "journalctl", "--no-pager", "--quiet", "--output=json", "--unit="+unit)
	if err != nil {
		return nil, err
	}
	var entries []map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("nspawn: journal of %s: %w", unit, err)
		}
		e := make(map[string]string, len(raw))
		for k, v := range raw {
			e[k] = journalValue(v)
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

func journalValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var nums []int
	if json.Unmarshal(v, &nums) == nil {
		b := make([]byte, len(nums))
		for i, n := range nums {
			b[i] = byte(n)
		}
		return string(b)
	}
	var multi []json.RawMessage
	if json.Unmarshal(v, &multi) == nil {
		vals := make([]string, len(multi))
		for i, m := range multi {
			vals[i] = journalValue(m)
		}
		return strings.Join(vals, "\n")
	}
	if string(v) == "null" {
		return ""
	}
	return string(v)
}

// Shutdown halts the container: SIGTERM to systemd-nspawn (which shuts the
// container's systemd down), SIGKILL to it and to the leader after 10 s. It then
// removes the cgroups, restores the host's IRQ masks when they were
// snapshotted, and releases the locks. It returns how long the container took
// to stop. Later calls return the first call's result.
func (c *Container) Shutdown() (time.Duration, error) {
	c.stopOnce.Do(func() { c.stopDur, c.stopErr = c.shutdown() })
	return c.stopDur, c.stopErr
}

func (c *Container) shutdown() (time.Duration, error) {
	var errs []error
	var dur time.Duration
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
	c.mu.Unlock()

	if c.cmd != nil && c.cmd.Process != nil {
		start := time.Now()
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(stopTimeout):
				// A second SIGTERM makes nspawn kill the container at once.
				errs = append(errs, fmt.Errorf("still running %v after SIGTERM", stopTimeout))
				_ = c.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-c.done:
			case <-time.After(2 * time.Second):
				errs = append(errs, errors.New("still running after a second SIGTERM: killed"))
				_ = c.cmd.Process.Kill()
				// The leader outlives a killed nspawn: killing PID 1 of the
				// container's PID namespace ends every process in it.
				if c.leader > 0 && c.leaderST != "" && startTime(c.leader) == c.leaderST {
					_ = syscall.Kill(c.leader, syscall.SIGKILL)
				}
				select {
				case <-c.done:
				case <-time.After(5 * time.Second):
					errs = append(errs, errors.New("systemd-nspawn did not exit after SIGKILL"))
				}
			}
		}
		dur = time.Since(start)
	}
	for _, dir := range c.cgroups {
		if err := removeCgroup(dir, 3*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if c.irqMasks != nil {
		restored, err := c.irqMasks.Restore()
		if len(restored) > 0 {
			c.t.Logf("nspawn: restored the host masks of IRQs %v", restored)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.unlockBox != nil {
		c.unlockBox()
	}
	if c.unlockIRQ != nil {
		c.unlockIRQ()
	}
	return dur, errors.Join(errs...)
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
