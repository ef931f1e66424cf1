package irq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

func readMask(t *testing.T, p hostfs.Paths, irq int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Proc, "irq", strconv.Itoa(irq), "smp_affinity"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestApplyOnTempTree(t *testing.T) {
	p := azure(8, 8, skewed(4, 5), "mlx5_core").MustBuild(t)
	h, _ := hostfs.New(p)
	c := NewChecker(h, SysfsLinks{FS: h}, defaultOpts, time.Now)
	rep := c.Run(context.Background())
	if rep.Status != check.Problem {
		t.Fatalf("precondition: %s", rep.Message)
	}
	res, err := Apply(context.Background(), h, rep.Plan, rep.Online)
	if err != nil {
		t.Fatal(err)
	}
	// comp4 (on CPU 4) and comp5 (on CPU 5) are already where the plan puts them.
	if len(res.Written) != 6 || len(res.Unchanged) != 2 || len(res.Managed) != 0 {
		t.Fatalf("applied %+v", res)
	}
	// The fixture's files are plain files: the check now reads the new masks.
	if rep := c.Run(context.Background()); rep.Status != check.OK || rep.CPUsUsed.List() != "0-7" {
		t.Fatalf("after spreading: %s %s", rep.Status, rep.Message)
	}
	if got := readMask(t, p, rep.Plan.Moves[1].IRQ); got != rep.Plan.Moves[1].To.Mask() {
		t.Errorf("mask file = %q", got)
	}
}

// scriptedRW wraps the host files and fails chosen writes.
type scriptedRW struct {
	hostAffinity
	fail map[int]error
}

func (s scriptedRW) WriteAffinity(irq int, set cpuset.Set) error {
	if err, ok := s.fail[irq]; ok {
		return err
	}
	return s.hostAffinity.WriteAffinity(irq, set)
}

func TestApplyManagedAndRollback(t *testing.T) {
	p := hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 4, NUMANode: -1, Affinity: skewed(3)}}}.MustBuild(t)
	h, _ := hostfs.New(p)
	rep := NewChecker(h, SysfsLinks{FS: h}, defaultOpts, time.Now).Run(context.Background())
	moves := rep.Plan.Moves
	before := map[int]string{}
	for _, m := range moves {
		before[m.IRQ] = readMask(t, p, m.IRQ)
	}
	rw := hostAffinity{h, h.NewIRQReader()}

	// A managed IRQ (EPERM on 6.12+, EIO on 6.1) is skipped; the rest is written.
	managed := fmt.Errorf("irq %d: %w (%w)", moves[0].IRQ, hostfs.ErrManaged, syscall.EPERM)
	res, err := apply(context.Background(), scriptedRW{rw, map[int]error{moves[0].IRQ: managed}}, rep.Plan, rep.Online)
	if err != nil || len(res.Managed) != 1 || res.Managed[0].IRQ != moves[0].IRQ || len(res.Written)+len(res.Unchanged) != 3 {
		t.Fatalf("managed: %+v %v", res, err)
	}
	if got := readMask(t, p, moves[0].IRQ); got != before[moves[0].IRQ] {
		t.Errorf("managed IRQ mask changed to %q", got)
	}

	// Restore, then make the third write fail with EINVAL: the first two are rolled back.
	for irq, m := range before {
		os.WriteFile(filepath.Join(p.Proc, "irq", strconv.Itoa(irq), "smp_affinity"), []byte(m), 0o644)
	}
	res, err = apply(context.Background(), scriptedRW{rw, map[int]error{moves[2].IRQ: syscall.EINVAL}}, rep.Plan, rep.Online)
	if err == nil || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "rolled back 2 IRQ masks") {
		t.Fatalf("want EINVAL with rollback, got %v", err)
	}
	for irq, m := range before {
		if got := readMask(t, p, irq); got != m {
			t.Errorf("IRQ %d not rolled back: %q, want %q", irq, got, m)
		}
	}
}

func TestApplyRefusesUnsafeTargets(t *testing.T) {
	p := hostfixture.Host{CPUs: 4, Offline: cpuset.New(3), NICs: []hostfixture.NIC{{Name: "eth0", Driver: "mlx5_core", Queues: 2, NUMANode: -1}}}.MustBuild(t)
	h, _ := hostfs.New(p)
	rep := NewChecker(h, SysfsLinks{FS: h}, defaultOpts, time.Now).Run(context.Background())
	before := readMask(t, p, rep.Plan.Moves[0].IRQ)
	for _, bad := range []cpuset.Set{{}, cpuset.New(3), cpuset.New(9)} {
		plan := Plan{Moves: []Move{{IRQ: rep.Plan.Moves[0].IRQ, To: cpuset.New(0)}, {IRQ: rep.Plan.Moves[1].IRQ, To: bad}}}
		if _, err := Apply(context.Background(), h, plan, rep.Online); err == nil {
			t.Errorf("target %q accepted", bad.List())
		}
		if got := readMask(t, p, rep.Plan.Moves[0].IRQ); got != before {
			t.Errorf("a refused plan wrote IRQ %d: %q", rep.Plan.Moves[0].IRQ, got)
		}
	}
}
