package nspawn

// Booting a container: the locks that keep one container per host, the
// systemd-nspawn command line and its environment, and the wait for systemd.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/hostlock"
	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
)

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
	// From here on, whatever Boot took is given back by Shutdown, whether the
	// boot fails half-way or the test ends.
	t.Cleanup(func() {
		d, err := c.Shutdown()
		if err != nil {
			t.Errorf("nspawn: shutdown of %s: %v", c.name, err)
		} else if c.stopDur > 0 {
			t.Logf("nspawn: %s shut down in %v", c.name, d.Round(time.Millisecond))
		}
	})

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
		t.Fatalf("nspawn: %v", err)
	}
	c.unlockBox = unlockBox
	if err := waitOthers(t, othersTimeout); err != nil {
		t.Fatalf("nspawn: %v", err)
	}
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

// waitOthers waits until no systemd-nspawn runs on this host: one container at
// a time, also when another started it without this package (the lock of
// lockBox only orders the users of this package).
func waitOthers(t testing.TB, timeout time.Duration) error {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	logged := false
	for {
		pids := nspawnPIDs()
		if len(pids) == 0 {
			if logged {
				t.Logf("nspawn: waited %v for other containers to stop", time.Since(start).Round(time.Second))
			}
			return nil
		}
		if !logged {
			t.Logf("nspawn: systemd-nspawn is running (pids %v): waiting for it to stop", pids)
			logged = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("systemd-nspawn still running after %v (pids %v)", time.Since(start).Round(time.Second), pids)
		}
		time.Sleep(500 * time.Millisecond)
	}
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
