package irq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Applied is what Apply did.
type Applied struct {
	Written   []Move // masks changed
	Unchanged []Move // already where the plan wants them
	Managed   []Move // refused by the kernel as managed IRQs (EIO/EPERM): skipped
}

// Apply writes a spread plan to /proc/irq. Every target must be a non-empty
// set of online CPUs, or nothing is written. Each IRQ's current mask is read
// first; if a write fails for a reason other than a managed IRQ, the masks
// already written are put back and the error says whether that worked.
func Apply(ctx context.Context, h *hostfs.FS, plan Plan, online cpuset.Set) (Applied, error) {
	return apply(ctx, hostAffinity{h, h.NewIRQReader()}, plan, online)
}

// affinityRW is the host's IRQ affinity files, as Apply uses them.
type affinityRW interface {
	Affinity(irq int) (hostfs.Affinity, error)
	WriteAffinity(irq int, s cpuset.Set) error
}

type hostAffinity struct {
	*hostfs.FS
	r *hostfs.IRQReader
}

func (h hostAffinity) Affinity(irq int) (hostfs.Affinity, error) { return h.r.Affinity(irq) }

func apply(ctx context.Context, h affinityRW, plan Plan, online cpuset.Set) (Applied, error) {
	var res Applied
	for _, m := range plan.Moves {
		if m.To.IsEmpty() || !m.To.IsSubsetOf(online) {
			return res, fmt.Errorf("irq %d: refusing target CPUs %q: not a non-empty set of online CPUs (%s)", m.IRQ, m.To.List(), online.List())
		}
	}
	snapshot := make(map[int]cpuset.Set, len(plan.Moves))
	for _, m := range plan.Moves {
		a, err := h.Affinity(m.IRQ)
		if err != nil {
			return res, fmt.Errorf("snapshot before spreading: %w", err)
		}
		snapshot[m.IRQ] = a.Requested
	}
	for _, m := range plan.Moves {
		if err := ctx.Err(); err != nil {
			return res, errors.Join(err, rollback(h, res.Written, snapshot))
		}
		if snapshot[m.IRQ].Equal(m.To) {
			res.Unchanged = append(res.Unchanged, m)
			continue
		}
		err := h.WriteAffinity(m.IRQ, m.To)
		switch {
		case err == nil:
			m.From = snapshot[m.IRQ]
			res.Written = append(res.Written, m)
		case errors.Is(err, hostfs.ErrManaged):
			res.Managed = append(res.Managed, m)
		default:
			return res, errors.Join(fmt.Errorf("spread IRQs: %w", err), rollback(h, res.Written, snapshot))
		}
	}
	return res, nil
}

// rollback writes the snapshot back for the IRQs already written.
func rollback(h affinityRW, written []Move, snapshot map[int]cpuset.Set) error {
	var errs []error
	for i := len(written) - 1; i >= 0; i-- {
		m := written[i]
		if err := h.WriteAffinity(m.IRQ, snapshot[m.IRQ]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rollback incomplete: %w", errors.Join(errs...))
	}
	if len(written) > 0 {
		return fmt.Errorf("rolled back %d IRQ masks already written", len(written))
	}
	return nil
}
