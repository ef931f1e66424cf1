// Package irqsnap snapshots the host's IRQ affinity masks
// (/proc/irq/<n>/smp_affinity) and writes back the ones that changed, so that a
// test which moves host IRQs, by itself or through an irqbalance it runs, leaves
// them as it found them.
//
// Tests that change host IRQ masks should take the host-wide IRQ lock (Guard does
// it for them): it serializes such tests across test binaries, which `go test`
// runs in parallel, and it restores the masks a test binary left behind when it
// was killed before its cleanup ran.
//
// Only tests use this package.
package irqsnap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// DefaultDir is where the kernel exposes IRQs.
const DefaultDir = "/proc/irq"

// Masks is a snapshot of IRQ affinity masks.
type Masks struct {
	dir   string
	masks map[int]string
}

// Snapshot reads the mask of every IRQ under DefaultDir whose smp_affinity
// exists and looks writable.
func Snapshot() (*Masks, error) { return SnapshotDir(DefaultDir) }

// SnapshotDir is Snapshot for an IRQ directory laid out like /proc/irq.
func SnapshotDir(dir string) (*Masks, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := &Masks{dir: dir, masks: make(map[int]string)}
	for _, e := range entries {
		irq, err := strconv.Atoi(e.Name())
		if err != nil || irq < 0 {
			continue
		}
		path := m.path(irq)
		fi, err := os.Stat(path)
		if err != nil || fi.Mode()&0o222 == 0 || unix.Access(path, unix.W_OK) != nil {
			continue
		}
		mask, err := readMask(path)
		if err != nil {
			continue // vanished or unreadable: nothing to restore
		}
		m.masks[irq] = mask
	}
	return m, nil
}

func (m *Masks) path(irq int) string {
	return filepath.Join(m.dir, strconv.Itoa(irq), "smp_affinity")
}

func readMask(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// IRQs returns the snapshotted IRQ numbers in ascending order.
func (m *Masks) IRQs() []int {
	irqs := make([]int, 0, len(m.masks))
	for irq := range m.masks {
		irqs = append(irqs, irq)
	}
	sort.Ints(irqs)
	return irqs
}

// Mask returns the snapshotted mask of irq as the kernel printed it.
func (m *Masks) Mask(irq int) (string, bool) {
	mask, ok := m.masks[irq]
	return mask, ok
}

// Changed returns the snapshotted IRQs whose current mask differs from the
// snapshot, in ascending order. IRQs that vanished are left out.
func (m *Masks) Changed() []int {
	var changed []int
	for _, irq := range m.IRQs() {
		cur, err := readMask(m.path(irq))
		if err == nil && cur != m.masks[irq] {
			changed = append(changed, irq)
		}
	}
	return changed
}

// Restore writes the snapshotted mask back to every IRQ whose mask changed and
// returns the IRQs it wrote. Writes refused because the IRQ is managed (EIO,
// EPERM), its CPUs went away (EINVAL) or it vanished are ignored; other errors
// are returned, joined, after all IRQs were tried.
func (m *Masks) Restore() ([]int, error) {
	var restored []int
	var errs []error
	for _, irq := range m.Changed() {
		err := writeMask(m.path(irq), m.masks[irq])
		switch {
		case err == nil:
			restored = append(restored, irq)
		case ignorable(err):
		default:
			errs = append(errs, fmt.Errorf("irq %d: restore mask %s: %w", irq, m.masks[irq], err))
		}
	}
	return restored, errors.Join(errs...)
}

func ignorable(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EPERM) ||
		errors.Is(err, syscall.EINVAL) || errors.Is(err, os.ErrNotExist)
}

func writeMask(path, mask string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(mask + "\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// LockPath is the host-wide lock file of tests that change host IRQ masks.
// LockPath + ".state" holds the snapshot of the lock's holder while it is held.
var LockPath = defaultLockPath()

func defaultLockPath() string {
	dir := "/run/lock"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "nodekeeper-test-irq.lock")
}

// The lock is held once per process and counted, so that a test holding it can
// boot a container that takes it too.
var lock struct {
	sync.Mutex
	refs int
	f    *os.File
}

type state struct {
	PID   int            `json:"pid"`
	Dir   string         `json:"dir"`
	Masks map[int]string `json:"masks"`
}

// Lock takes the host-wide IRQ lock, waiting until ctx is done. Taking it first
// restores the masks saved by a previous holder that died holding it, then
// saves a snapshot of the current masks until the last unlock of this process.
// Locks taken in one process nest.
func Lock(ctx context.Context) (unlock func(), err error) {
	lock.Lock()
	defer lock.Unlock()
	if lock.refs == 0 {
		f, err := os.OpenFile(LockPath, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", LockPath, err)
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", LockPath, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err := recoverState(); err != nil {
			f.Close()
			return nil, err
		}
		if err := saveState(); err != nil {
			f.Close()
			return nil, err
		}
		lock.f = f
	}
	lock.refs++
	var once sync.Once
	return func() { once.Do(release) }, nil
}

func release() {
	lock.Lock()
	defer lock.Unlock()
	lock.refs--
	if lock.refs > 0 {
		return
	}
	_ = os.Remove(LockPath + ".state")
	_ = lock.f.Close() // releases the flock
	lock.f = nil
}

// recoverState restores the masks saved by a holder that died holding the lock.
func recoverState() error {
	b, err := os.ReadFile(LockPath + ".state")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil || s.Dir == "" {
		return os.Remove(LockPath + ".state") // unusable: drop it
	}
	m := &Masks{dir: s.Dir, masks: s.Masks}
	if _, err := m.Restore(); err != nil {
		return fmt.Errorf("restore IRQ masks left by pid %d: %w", s.PID, err)
	}
	return os.Remove(LockPath + ".state")
}

func saveState() error {
	m, err := Snapshot()
	if err != nil {
		return err
	}
	b, err := json.Marshal(state{PID: os.Getpid(), Dir: m.dir, Masks: m.masks})
	if err != nil {
		return err
	}
	tmp := LockPath + ".state.tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, LockPath+".state")
}

// Guard prepares a test that changes host IRQ masks: it requires root (layer
// "root", see package layer), takes the IRQ lock, snapshots the masks and, in
// t.Cleanup, restores the ones that changed and releases the lock.
func Guard(t testing.TB) *Masks {
	t.Helper()
	layer.Root(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	unlock, err := Lock(ctx)
	if err != nil {
		t.Fatalf("irqsnap: %v", err)
	}
	m, err := Snapshot()
	if err != nil {
		unlock()
		t.Fatalf("irqsnap: %v", err)
	}
	t.Cleanup(func() {
		defer unlock()
		restored, err := m.Restore()
		if len(restored) > 0 {
			t.Logf("irqsnap: restored the masks of IRQs %v", restored)
		}
		if err != nil {
			t.Errorf("irqsnap: %v", err)
		}
	})
	return m
}
