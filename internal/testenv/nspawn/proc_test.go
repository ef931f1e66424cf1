package nspawn

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestProcFields reads this process and a child it stops: the parsers of
// /proc/<pid>/stat and status that Shutdown and HostPID rely on.
func TestProcFields(t *testing.T) {
	self := os.Getpid()
	if ids := nsPIDs(self); len(ids) == 0 || ids[len(ids)-1] != strconv.Itoa(self) {
		t.Errorf("nsPIDs(self) = %v, want ending in %d", ids, self)
	}
	if st := startTime(self); st == "" {
		t.Error("startTime(self) is empty")
	}

	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep to start: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	before := startTime(pid)
	if before == "" {
		t.Fatalf("startTime(%d) = %q", pid, before)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ProcState(pid) != "T" {
		if time.Now().After(deadline) {
			t.Fatalf("ProcState of a stopped process = %q, want T", ProcState(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if st, start := ProcState(pid), startTime(pid); st != "" || start != "" {
		t.Errorf("after the process is gone: state %q, start time %q; want both empty", st, start)
	}
}
