package kubelet

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// startStandIn starts a process standing in for kubelet (killed at cleanup,
// by its PID) and returns its PID.
func startStandIn(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// A real v1 cpuset on this (hybrid) host: the stand-in kubelet is moved into
// nodekeeper's cpuset, its Cpus_allowed_list follows, the move is redone for a
// restarted kubelet (new PID), and undo moves it back and removes the cgroup.
func TestV1CpusetOnHost(t *testing.T) {
	layer.Root(t)
	h, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		t.Fatal(err)
	}
	if DetectMode(h) != ModeCgroupV1 {
		layer.Unavailable(t, "root", "this host has no v1 cpuset hierarchy (mode %s)", DetectMode(h))
	}
	online, _ := h.OnlineCPUs()
	if online.Len() < 2 {
		t.Skip("one CPU: nothing to pin to")
	}
	target := cpuset.New(online.Max())
	t.Cleanup(func() { os.Remove(h.Cgroup("cpuset", CgroupName)) })

	f := systemd.NewFake(nil)
	st := f.AddService("kubelet.service")
	st.MainPID = uint32(startStandIn(t))
	f.SetUnit(st)
	p := &Pinner{FS: h, Units: f, Unit: "kubelet.service", Mode: ModeCgroupV1}
	pin, err := p.Apply(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if !pin.Process.Equal(target) {
		t.Fatalf("stand-in kubelet may run on %s, want %s", pin.Process, target)
	}
	t.Logf("pid %d in cpuset %s: Cpus_allowed_list %s", st.MainPID, CgroupName, pin.Process)

	// kubelet restarts: a new MainPID is not in the cpuset until re-applied.
	st.MainPID = uint32(startStandIn(t))
	f.SetUnit(st)
	if cpus, _ := h.ProcessCPUs(int(st.MainPID)); cpus.Equal(target) {
		t.Fatalf("a fresh process should start unpinned here")
	}
	if pin, err = p.Apply(context.Background(), target); err != nil || !pin.Process.Equal(target) {
		t.Fatalf("re-apply after restart: %v %s", err, pin.Process)
	}

	if _, err := p.Undo(context.Background(), target, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.Cgroup("cpuset", CgroupName)); !os.IsNotExist(err) {
		t.Errorf("undo left the cgroup: %v", err)
	}
	if cpus, _ := h.ProcessCPUs(int(st.MainPID)); !cpus.Equal(online) {
		t.Errorf("after undo the stand-in may run on %s, want every online CPU %s", cpus, online)
	}
}
