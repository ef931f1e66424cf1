package irqsnap

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default_smp_affinity"), "3\n", 0o600)
	writeFile(t, filepath.Join(dir, "0", "smp_affinity"), "1\n", 0o400) // read-only: left out
	writeFile(t, filepath.Join(dir, "10", "smp_affinity"), "3\n", 0o600)
	writeFile(t, filepath.Join(dir, "11", "smp_affinity"), "3\n", 0o600)
	writeFile(t, filepath.Join(dir, "12", "smp_affinity"), "ffffffff,ffffffff\n", 0o600)
	writeFile(t, filepath.Join(dir, "13", "smp_affinity"), "2\n", 0o600)
	if err := os.Mkdir(filepath.Join(dir, "14"), 0o755); err != nil { // no smp_affinity
		t.Fatal(err)
	}

	m, err := SnapshotDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.IRQs(), []int{10, 11, 12, 13}; !slices.Equal(got, want) {
		t.Fatalf("IRQs() = %v, want %v", got, want)
	}
	if mask, ok := m.Mask(12); !ok || mask != "ffffffff,ffffffff" {
		t.Fatalf("Mask(12) = %q, %v", mask, ok)
	}

	writeFile(t, filepath.Join(dir, "10", "smp_affinity"), "1\n", 0o600)
	writeFile(t, filepath.Join(dir, "12", "smp_affinity"), "00000000,00000001\n", 0o600)
	if err := os.RemoveAll(filepath.Join(dir, "13")); err != nil { // vanished
		t.Fatal(err)
	}
	if got, want := m.Changed(), []int{10, 12}; !slices.Equal(got, want) {
		t.Fatalf("Changed() = %v, want %v", got, want)
	}
	restored, err := m.Restore()
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if want := []int{10, 12}; !slices.Equal(restored, want) {
		t.Fatalf("Restore() restored %v, want %v", restored, want)
	}
	for irq, want := range map[int]string{10: "3", 11: "3", 12: "ffffffff,ffffffff"} {
		b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(irq), "smp_affinity"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("irq %d: mask %q after Restore, want %q", irq, got, want)
		}
	}
	if changed := m.Changed(); len(changed) != 0 {
		t.Errorf("Changed() after Restore = %v", changed)
	}
}

func TestIgnorable(t *testing.T) {
	for _, err := range []error{syscall.EIO, syscall.EPERM, syscall.EINVAL, os.ErrNotExist} {
		if !ignorable(&os.PathError{Op: "write", Path: "x", Err: err}) {
			t.Errorf("%v not ignorable", err)
		}
	}
	for _, err := range []error{syscall.EOVERFLOW, syscall.ENOSPC, errors.New("other")} {
		if ignorable(&os.PathError{Op: "write", Path: "x", Err: err}) {
			t.Errorf("%v ignorable", err)
		}
	}
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,8").
func onlineCPUs(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			t.Fatalf("parse online CPUs %q: %v", b, err)
		}
		z := a
		if found {
			if z, err = strconv.Atoi(hi); err != nil {
				t.Fatalf("parse online CPUs %q: %v", b, err)
			}
		}
		for c := a; c <= z; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// cpuMask formats the affinity mask of one CPU: 32-bit hex groups, most
// significant first (the kernel accepts leading groups left out).
func cpuMask(cpu int) string {
	return strconv.FormatUint(1<<(cpu%32), 16) + strings.Repeat(",00000000", cpu/32)
}

// quietIRQs orders IRQs so that those named "*-config" (rarely firing control
// interrupts) come first.
func quietIRQs(irqs []int) []int {
	quiet := func(irq int) bool {
		entries, _ := os.ReadDir(filepath.Join(DefaultDir, strconv.Itoa(irq)))
		for _, e := range entries {
			if e.IsDir() && strings.HasSuffix(e.Name(), "-config") {
				return true
			}
		}
		return false
	}
	out := slices.Clone(irqs)
	sort.SliceStable(out, func(i, j int) bool { return quiet(out[i]) && !quiet(out[j]) })
	return out
}

func TestRestoreHost(t *testing.T) {
	Guard(t) // root, lock, and a safety restore in cleanup
	cpus := onlineCPUs(t)
	if len(cpus) < 2 {
		layer.Unavailable(t, "root", "needs 2 online CPUs to change an IRQ mask, have %v", cpus)
	}
	m, err := Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.IRQs()) == 0 {
		t.Fatalf("no writable IRQ under %s", DefaultDir)
	}

	changed := -1
	var was, now string
	for _, irq := range quietIRQs(m.IRQs()) {
		was, _ = m.Mask(irq)
		for _, cpu := range cpus {
			err := writeMask(m.path(irq), cpuMask(cpu))
			if err != nil {
				if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EPERM) {
					t.Logf("irq %d is managed (%v): next", irq, err)
					break
				}
				t.Fatalf("irq %d: write %s: %v", irq, cpuMask(cpu), err)
			}
			if now, _ = readMask(m.path(irq)); now != was {
				changed = irq
				break
			}
		}
		if changed >= 0 {
			break
		}
	}
	if changed < 0 {
		t.Fatalf("could not change the mask of any of IRQs %v", m.IRQs())
	}
	t.Logf("irq %d: mask %s -> %s", changed, was, now)
	if got := m.Changed(); !slices.Contains(got, changed) {
		t.Fatalf("Changed() = %v, want it to hold %d", got, changed)
	}

	restored, err := m.Restore()
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !slices.Contains(restored, changed) {
		t.Errorf("Restore() restored %v, want it to hold %d", restored, changed)
	}
	if got, _ := readMask(m.path(changed)); got != was {
		t.Errorf("irq %d: mask %s after Restore, want %s", changed, got, was)
	}
}

func TestLockRecoversDeadHolder(t *testing.T) {
	dir := t.TempDir()
	old := LockPath
	LockPath = filepath.Join(dir, "irq.lock")
	t.Cleanup(func() { LockPath = old })

	// A state file as left by a holder that died: it names a fake IRQ directory.
	irqDir := filepath.Join(dir, "irq")
	writeFile(t, filepath.Join(irqDir, "7", "smp_affinity"), "1\n", 0o600)
	writeFile(t, LockPath+".state", `{"pid":1,"dir":"`+irqDir+`","masks":{"7":"3"}}`, 0o600)

	unlock, err := Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readMask(filepath.Join(irqDir, "7", "smp_affinity")); got != "3" {
		t.Errorf("mask of the dead holder's IRQ = %q, want it restored to 3", got)
	}
	if _, err := os.Stat(LockPath + ".state"); err != nil {
		t.Errorf("no state saved while holding the lock: %v", err)
	}
	unlock2, err := Lock(t.Context()) // nests
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
	if _, err := os.Stat(LockPath + ".state"); err != nil {
		t.Errorf("state removed while the lock is still held: %v", err)
	}
	unlock()
	unlock() // idempotent
	if _, err := os.Stat(LockPath + ".state"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state left after the last unlock: %v", err)
	}
}
