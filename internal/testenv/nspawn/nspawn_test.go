package nspawn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
)

func mainPID(ctx context.Context, t *testing.T, conn *sddbus.Conn, unit string) uint32 {
	t.Helper()
	p, err := conn.GetServicePropertyContext(ctx, unit, "MainPID")
	if err != nil {
		t.Fatalf("MainPID of %s: %v", unit, err)
	}
	pid, ok := p.Value.Value().(uint32)
	if !ok {
		t.Fatalf("MainPID of %s is %s, not a uint32", unit, p.Value)
	}
	return pid
}

func activeState(ctx context.Context, t *testing.T, conn *sddbus.Conn, unit string) string {
	t.Helper()
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		t.Fatalf("ActiveState of %s: %v", unit, err)
	}
	s, _ := p.Value.Value().(string)
	return s
}

// someIRQ returns the number of an IRQ with an smp_affinity file and its mask.
func someIRQ(t *testing.T) (int, string) {
	t.Helper()
	m, err := irqsnap.Snapshot()
	if err != nil || len(m.IRQs()) == 0 {
		t.Fatalf("no host IRQ to try: %v", err)
	}
	irq := m.IRQs()[0]
	mask, _ := m.Mask(irq)
	return irq, mask
}

// cgroupLeftovers lists nspawn's payload/ and supervisor/ cgroups at the roots
// of the hierarchies nspawn uses.
func cgroupLeftovers(t *testing.T) []string {
	t.Helper()
	roots, err := cgroupRoots()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, root := range roots {
		for _, name := range []string{"payload", "supervisor"} {
			if _, err := os.Stat(filepath.Join(root, name)); err == nil {
				found = append(found, filepath.Join(root, name))
			}
		}
	}
	return found
}

func TestSmoke(t *testing.T) {
	leftBefore := cgroupLeftovers(t)
	c := Boot(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	state, err := c.Exec(ctx, "systemctl", "is-system-running")
	if s := strings.TrimSpace(state); s != "running" && s != "degraded" {
		t.Fatalf("is-system-running = %q, %v", s, err)
	}
	if key, err := c.Exec(ctx, "cat", "/etc/nodekeeper-test-rootfs"); err != nil || strings.TrimSpace(key) == "" {
		t.Fatalf("Exec does not run in the container's root: %q, %v", key, err)
	}
	if host, err := c.Exec(ctx, "hostname"); err != nil || strings.TrimSpace(host) != c.Name() {
		t.Errorf("hostname in the container = %q, %v; want %s", host, err, c.Name())
	}

	// The container's PID 1 is the leader, and a process started inside is
	// found on the host.
	if hp, err := c.HostPID(1); err != nil || hp != c.Leader() {
		t.Errorf("HostPID(1) = %d, %v; want the leader %d", hp, err, c.Leader())
	}
	if st := ProcState(c.Leader()); st != "S" && st != "R" {
		t.Errorf("ProcState of the leader = %q, want S or R", st)
	}
	if _, err := c.HostPID(1 << 22); err == nil {
		t.Error("HostPID of a PID no process of the container has: no error")
	}

	// The host's /proc/irq stays read-only inside without APIVFSWritable.
	irq, mask := someIRQ(t)
	if _, err := c.Exec(ctx, "sh", "-c", "echo "+mask+" >/proc/irq/"+strconv.Itoa(irq)+"/smp_affinity"); err == nil {
		t.Errorf("writing /proc/irq/%d/smp_affinity in the container worked; want it read-only", irq)
	}

	conn, err := c.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// irqbalance restarted over D-Bus from the host gets a new MainPID.
	before := mainPID(ctx, t, conn, "irqbalance.service")
	if before == 0 {
		t.Fatalf("irqbalance.service has no MainPID (state %s)", activeState(ctx, t, conn, "irqbalance.service"))
	}
	ch := make(chan string, 1)
	start := time.Now()
	if _, err := conn.RestartUnitContext(ctx, "irqbalance.service", "replace", ch); err != nil {
		t.Fatalf("RestartUnit irqbalance.service: %v", err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			t.Fatalf("restart job of irqbalance.service: %q, want done", res)
		}
	case <-ctx.Done():
		t.Fatal("restart job of irqbalance.service did not finish")
	}
	t.Logf("RestartUnit(irqbalance.service) done in %v", time.Since(start).Round(time.Millisecond))
	after := mainPID(ctx, t, conn, "irqbalance.service")
	if after == 0 || after == before {
		t.Fatalf("irqbalance MainPID %d after restart, was %d", after, before)
	}
	t.Logf("irqbalance MainPID %d -> %d", before, after)

	// The kubelet stand-in runs, and AllowedCPUs lands in a runtime drop-in.
	if s := activeState(ctx, t, conn, "kubelet.service"); s != "active" {
		t.Fatalf("kubelet.service ActiveState = %q", s)
	}
	err = conn.SetUnitPropertiesContext(ctx, "kubelet.service", true,
		sddbus.Property{Name: "AllowedCPUs", Value: dbus.MakeVariant([]byte{0x01})})
	if err != nil {
		t.Fatalf("SetUnitProperties(kubelet.service, AllowedCPUs): %v", err)
	}
	const dropinDir = "/run/systemd/system.control/kubelet.service.d"
	entries, err := os.ReadDir(filepath.Join(c.Root(), dropinDir))
	if err != nil || len(entries) == 0 {
		t.Fatalf("no drop-in in %s: %v", dropinDir, err)
	}
	var dropin string
	for _, e := range entries {
		b, err := c.ReadFile(filepath.Join(dropinDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "AllowedCPUs=0") {
			dropin = e.Name()
		}
	}
	if dropin == "" {
		t.Fatalf("no drop-in in %s says AllowedCPUs=0 (%d files)", dropinDir, len(entries))
	}
	t.Logf("drop-in %s/%s", dropinDir, dropin)
	if p, err := conn.GetServicePropertyContext(ctx, "kubelet.service", "EffectiveCPUs"); err == nil {
		t.Logf("kubelet.service EffectiveCPUs = %v (not enforced on a hybrid-cgroup host)", p.Value)
	}

	// The journal of the container is readable.
	journal, err := c.Journal(ctx, "irqbalance.service")
	if err != nil {
		t.Fatal(err)
	}
	if len(journal) == 0 || journal[0]["MESSAGE"] == "" {
		t.Fatalf("journal of irqbalance.service: %d entries, first %v", len(journal), journal)
	}
	t.Logf("journal of irqbalance.service: %d entries, last: %s", len(journal), journal[len(journal)-1]["MESSAGE"])

	// Files written from the host appear inside, with their mode.
	if err := c.WriteFile("/var/tmp/nk/sub/hello.txt", []byte("hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Exec(ctx, "stat", "-c", "%a %s", "/var/tmp/nk/sub/hello.txt"); err != nil || strings.TrimSpace(out) != "640 6" {
		t.Fatalf("stat of the written file: %q, %v", out, err)
	}

	// Restarting D-Bus breaks the connection; a new one works again.
	if _, err := c.Exec(ctx, "systemctl", "restart", "dbus.service"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for conn.Connected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("old connection after restarting dbus.service: connected=%v", conn.Connected())
	start = time.Now()
	conn2, err := c.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new connection after restarting dbus.service in %v", time.Since(start).Round(time.Millisecond))
	if s := activeState(ctx, t, conn2, "kubelet.service"); s != "active" {
		t.Fatalf("kubelet.service ActiveState over the new connection = %q", s)
	}

	// Shutdown is quick and leaves nothing behind.
	nspawnPID, leader := c.PID(), c.Leader()
	d, err := c.Shutdown()
	if err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("boot %v, shutdown %v", c.BootDuration().Round(time.Millisecond), d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	for _, dir := range c.CgroupDirs() {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind (%v)", dir, err)
		}
	}
	if left := cgroupLeftovers(t); !slices.Equal(left, leftBefore) {
		t.Errorf("cgroups at the hierarchy roots: %v, before boot: %v", left, leftBefore)
	}
	for _, pid := range []int{nspawnPID, leader} {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("process %d still exists after Shutdown", pid)
		}
	}
}

func TestAPIVFSWritableRestoresHostIRQs(t *testing.T) {
	c := Boot(t, Options{APIVFSWritable: true})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	snap := c.HostIRQs()
	if snap == nil || len(snap.IRQs()) == 0 {
		t.Fatal("no host IRQ snapshot at boot")
	}

	// Inside, /proc/irq is the host's and writable: change one mask from there.
	changed := -1
	for _, irq := range snap.IRQs() {
		mask, _ := snap.Mask(irq)
		other := "1"
		if mask == "1" {
			other = "2"
		}
		path := "/proc/irq/" + strconv.Itoa(irq) + "/smp_affinity"
		if _, err := c.Exec(ctx, "sh", "-c", "echo "+other+" >"+path); err != nil {
			t.Logf("irq %d: %v", irq, err)
			continue
		}
		if slices.Contains(snap.Changed(), irq) {
			changed = irq
			t.Logf("irq %d: mask %s -> %s from inside the container", irq, mask, other)
			break
		}
	}
	if changed < 0 {
		t.Fatal("could not change any host IRQ mask from inside the container")
	}
	// irqbalance inside moves host IRQs too, about a second after a restart.
	if _, err := c.Exec(ctx, "systemctl", "restart", "irqbalance.service"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	t.Logf("host IRQs changed while the container ran: %v", snap.Changed())

	if _, err := c.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if left := snap.Changed(); len(left) != 0 {
		t.Errorf("host IRQ masks not restored after shutdown: %v", left)
	}
}

// fakeTB stands in for the test in a Boot that is meant to fail: it records
// the failure and the cleanups instead of failing the real test.
type fakeTB struct {
	testing.TB
	failure  string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A boot that fails half-way (after the locks, the IRQ snapshot and the
// cgroups, before systemd-nspawn starts) gives everything back through the
// test's cleanup, as a finished container does.
func TestFailedBootCleansUp(t *testing.T) {
	Require(t)
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Boot(f, Options{APIVFSWritable: true, Binds: []Bind{{Source: "relative/path"}}})
	}()
	<-done
	if !strings.Contains(f.failure, "not absolute") {
		t.Fatalf("Boot with a relative bind source failed with %q, want a complaint about the path", f.failure)
	}
	roots, err := cgroupRoots()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, root := range roots {
		dirs, _ := filepath.Glob(filepath.Join(root, fmt.Sprintf("%s%d-*", cgroupPrefix, os.Getpid())))
		ours = append(ours, dirs...)
	}
	if len(ours) == 0 {
		t.Fatal("the failed boot made no cgroup: it failed before what this test is about")
	}
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	for _, dir := range ours {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind (%v)", dir, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	unlockIRQ, err := irqsnap.Lock(ctx)
	if err != nil {
		t.Fatalf("the IRQ lock is still held after the cleanup: %v", err)
	}
	defer unlockIRQ()
	unlockBox, err := lockBox(ctx)
	if err != nil {
		t.Fatalf("the container lock is still held after the cleanup: %v", err)
	}
	unlockBox()
}
