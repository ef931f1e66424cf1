package irq

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

func liveHost(t *testing.T) *hostfs.FS {
	t.Helper()
	if _, err := os.Stat("/proc/irq"); err != nil {
		layer.Unavailable(t, "root", "no /proc/irq on this machine")
	}
	h, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The real check on this machine: it must judge (not unknown) and find the
// NIC's queue IRQs through netlink + sysfs.
func TestHostCheck(t *testing.T) {
	h := liveHost(t)
	start := time.Now()
	rep := NewChecker(h, Links(h), defaultOpts, time.Now).Run(context.Background())
	t.Logf("host check in %v: %s %q, %d NIC IRQs", time.Since(start), rep.Status, rep.Message, len(rep.NICIRQs))
	if rep.Status == check.Unknown {
		t.Fatalf("the check could not judge this host: %s", rep.Message)
	}
	for _, q := range rep.NICIRQs {
		if q.CPU < 0 || !rep.Online.Contains(q.CPU) {
			t.Errorf("IRQ %d (%s) assigned to CPU %d, not online", q.IRQ, q.Name, q.CPU)
		}
	}
}

// Skew the NIC queue IRQs of this machine onto one CPU through the real
// /proc/irq, see the check call it a problem (ratio 1), spread them with the
// plan, and see it fixed. Every mask is restored afterwards.
func TestHostSkewAndSpread(t *testing.T) {
	layer.Root(t)
	h := liveHost(t)
	irqsnap.Guard(t) // host-wide lock + restore of every mask, even if this binary dies
	strict := defaultOpts
	strict.MinSpreadRatio = 1
	c := NewChecker(h, Links(h), strict, time.Now)
	rep := c.Run(context.Background())
	if len(rep.NICIRQs) == 0 {
		layer.Unavailable(t, "root", "this machine has no NIC queue IRQs to skew")
	}
	if rep.Online.Len() < 2 {
		layer.Unavailable(t, "root", "one online CPU: nothing to skew")
	}
	r := h.NewIRQReader()
	for _, q := range rep.NICIRQs {
		a, err := r.Affinity(q.IRQ)
		if err != nil {
			t.Fatal(err)
		}
		irq, mask := q.IRQ, a.Requested
		t.Cleanup(func() {
			if err := h.WriteAffinity(irq, mask); err != nil {
				t.Errorf("restore IRQ %d to %s: %v", irq, mask.List(), err)
			}
		})
	}
	target := rep.Online.First()
	for _, q := range rep.NICIRQs {
		if err := h.WriteAffinity(q.IRQ, cpuset.New(target)); err != nil {
			t.Fatalf("skew IRQ %d: %v", q.IRQ, err)
		}
	}
	skewedRep := c.Run(context.Background())
	if skewedRep.Status != check.Problem || skewedRep.CPUsUsed.List() != cpuset.New(target).List() {
		t.Fatalf("after skewing onto CPU %d: %s %q (used %s)", target, skewedRep.Status, skewedRep.Message, skewedRep.CPUsUsed)
	}
	t.Logf("skewed: %s", skewedRep.Message)
	start := time.Now()
	res, err := Apply(context.Background(), h, skewedRep.Plan, skewedRep.Online)
	if err != nil {
		t.Fatalf("spread: %v", err)
	}
	fixed := c.Run(context.Background())
	t.Logf("spread %d written, %d unchanged, %d managed in %v: %s", len(res.Written), len(res.Unchanged), len(res.Managed), time.Since(start), fixed.Message)
	if fixed.Status != check.OK {
		t.Fatalf("after the spread plan: %s %q", fixed.Status, fixed.Message)
	}
}

// A kernel-managed IRQ (virtio-blk queues) refuses writes: EIO before 6.12,
// EPERM since. Apply must call it managed, not a failure.
func TestHostManagedIRQ(t *testing.T) {
	layer.Root(t)
	h := liveHost(t)
	irqsnap.Guard(t)
	names, err := h.InterruptNames(nil)
	if err != nil {
		t.Fatal(err)
	}
	managed := -1
	for irq, name := range names {
		if strings.HasPrefix(name, "virtio") && strings.Contains(name, "-req.") {
			managed = irq
			break
		}
	}
	if managed < 0 {
		t.Skip("no virtio-blk queue IRQ on this machine to try a managed write on")
	}
	a, err := h.NewIRQReader().Affinity(managed)
	if err != nil {
		t.Fatal(err)
	}
	online, _ := h.OnlineCPUs()
	other := online.Difference(a.Requested).First()
	if other < 0 {
		other = online.First()
	}
	err = h.WriteAffinity(managed, cpuset.New(other))
	if err == nil {
		h.WriteAffinity(managed, a.Requested)
		t.Skipf("IRQ %d (%s) accepted a write: not managed on this kernel", managed, names[managed])
	}
	if !errors.Is(err, hostfs.ErrManaged) {
		t.Fatalf("write to managed IRQ %d: %v, want ErrManaged", managed, err)
	}
	t.Logf("IRQ %d (%s): %v", managed, names[managed], err)
}
