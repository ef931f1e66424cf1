package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// TestEarlySIGHUPDoesNotKill: a reload sent while the daemon is still
// starting (config management right after `systemctl start`) used to end it
// with exit 129 — Go's default for SIGHUP until a handler is installed.
func TestEarlySIGHUPDoesNotKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "nodekeeper")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	paths := hostfixture.Host{CPUs: 2, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "virtio_net", Queues: 1, NUMANode: -1}}}.MustBuild(t)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("metrics: {listen: \"\"}\nimds: {enabled: \"false\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, delay := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond} {
		cmd := exec.Command(bin, "run", "--config", cfg, "--path.procfs", paths.Proc, "--path.sysfs", paths.Sys,
			"--path.cgroupfs", paths.Cgroup, "--path.rootfs", paths.Root, "--dbus-address", "unix:path="+filepath.Join(dir, "no-bus"))
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Before the Go runtime has installed its handlers no program can
		// catch the signal; from then on, nodekeeper must.
		waitRuntimeHandlers(t, cmd.Process.Pid)
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGHUP) // the daemon is still starting
		time.Sleep(300 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGHUP) // and once it runs
		time.Sleep(100 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				t.Fatalf("run %d: the daemon died: %v (exit %d)", i, err, ee.ExitCode())
			} else if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: no exit 10 s after SIGTERM", i)
		}
	}
}

// waitRuntimeHandlers waits until the process catches SIGHUP (bit 0 of
// SigCgt in /proc/PID/status), i.e. the Go runtime has started.
func waitRuntimeHandlers(t *testing.T, pid int) {
	t.Helper()
	for range 2000 {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&1 != 0 {
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the process never caught SIGHUP")
}
