package nspawn

// Cleaning up after a container, in one place: the processes, the cgroups,
// the host's IRQ masks and the locks (Shutdown), and what dead test processes
// left behind.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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

// removeStaleCgroups removes the cgroups of this package that a test process
// which is gone left under roots (it died before its Shutdown).
func removeStaleCgroups(roots []string) {
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
	}
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
