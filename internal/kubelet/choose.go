// Package kubelet owns keeping kubelet.service off the CPUs that serve the
// network receive path: choosing its CPUs from where the NIC queue IRQs and
// NET_RX softirq work land, applying the choice (AllowedCPUs= over D-Bus on
// cgroup v2, a dedicated v1 cpuset cgroup on v1/hybrid hosts), verifying it,
// judging it (`check kubelet`), and taking it away again (`undo`).
//
// Only kubelet.service is touched: never kubepods, never kubelet's root
// cgroup (setting a cpuset there breaks container creation).
package kubelet

import (
	"fmt"
	"sort"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// Inputs are what the choice is made from.
type Inputs struct {
	Online   cpuset.Set
	Isolated cpuset.Set // isolated ∪ nohz_full: never given to kubelet
	// IRQCPUs are the CPUs the NIC queue IRQs are assigned to.
	IRQCPUs cpuset.Set
	// Saturated are the CPUs drowning in softirq work (the symptom
	// watcher's verdict): they count as net_rx CPUs, IRQ or not.
	Saturated cpuset.Set
	// NetRx is each CPU's NET_RX softirq rate (per second) over the check
	// window, indexed by CPU; nil when it was not measured.
	NetRx []float64
	// Reserved is kubelet's reservedSystemCPUs, when its config sets it.
	Reserved cpuset.Set
	MinCPUs  int
}

// Choice is where kubelet should run, and why.
type Choice struct {
	Pin      bool       // false: leave kubelet unpinned (Reason says why)
	CPUs     cpuset.Set // the CPUs kubelet may use
	NetRx    cpuset.Set // the CPUs judged to serve net_rx
	Disjoint bool       // CPUs avoids every net_rx CPU
	Reason   string
}

// minBusyRate is the NET_RX rate (softirqs/s, node-wide) below which the
// per-CPU shares are noise and only the IRQ placement counts.
const minBusyRate = 200

// NetRxCPUs are the IRQ CPUs, the saturated CPUs, and the CPUs doing an
// above-average share of NET_RX work (vmbus channels and RPS have no IRQ of
// their own).
func NetRxCPUs(in Inputs) cpuset.Set {
	out := in.IRQCPUs.Union(in.Saturated)
	var total float64
	on := in.Online.CPUs()
	for _, c := range on {
		if c < len(in.NetRx) {
			total += in.NetRx[c]
		}
	}
	if total < minBusyRate || len(on) == 0 {
		return out.Intersect(in.Online)
	}
	avg := total / float64(len(on))
	var busy []int
	for _, c := range on {
		if c < len(in.NetRx) && in.NetRx[c] > avg {
			busy = append(busy, c)
		}
	}
	return out.Union(cpuset.New(busy...)).Intersect(in.Online)
}

// Choose picks kubelet's CPUs: every online CPU that is neither a net_rx CPU
// nor isolated, when that leaves at least MinCPUs (inside reservedSystemCPUs
// when kubelet's config sets it and enough of them qualify); else, where the
// NIC queues cover (almost) every CPU, the MinCPUs CPUs with the least
// NET_RX work. With too few CPUs for pinning to help, no pin.
func Choose(in Inputs) Choice {
	usable := in.Online.Difference(in.Isolated)
	netrx := NetRxCPUs(in)
	c := Choice{NetRx: netrx}
	if usable.Len() <= in.MinCPUs {
		c.Reason = fmt.Sprintf("only %d usable CPUs for kubelet.minCPUs %d: pinning kubelet would not help", usable.Len(), in.MinCPUs)
		return c
	}
	free := usable.Difference(netrx)
	if !in.Reserved.IsEmpty() {
		if inRes := free.Intersect(in.Reserved); inRes.Len() >= in.MinCPUs {
			c.Pin, c.CPUs, c.Disjoint = true, inRes, true
			c.Reason = fmt.Sprintf("kubelet on reservedSystemCPUs %s, off the net_rx CPUs %s", inRes, netrx)
			return c
		}
	}
	if free.Len() >= in.MinCPUs {
		c.Pin, c.CPUs, c.Disjoint = true, free, true
		c.Reason = fmt.Sprintf("kubelet on %s, off the net_rx CPUs %s", free, netrx)
		if !in.Reserved.IsEmpty() && !free.IsSubsetOf(in.Reserved) {
			c.Reason += fmt.Sprintf(" (reservedSystemCPUs %s has too few CPUs free of net_rx work)", in.Reserved)
		}
		return c
	}
	// No disjoint set: the least NET_RX work, IRQ-free CPUs first, higher
	// CPU numbers first on ties (CPU 0 carries the most housekeeping).
	cpus := usable.CPUs()
	var total float64
	for _, r := range in.NetRx {
		total += r
	}
	rate := func(cpu int) float64 {
		if cpu < len(in.NetRx) && total >= minBusyRate {
			return in.NetRx[cpu]
		}
		return 0 // below the floor the rates are noise: they must not move the pin
	}
	irqs := in.IRQCPUs.Union(in.Saturated)
	sort.SliceStable(cpus, func(i, j int) bool {
		a, b := cpus[i], cpus[j]
		if ra, rb := rate(a), rate(b); ra != rb {
			return ra < rb
		}
		if ia, ib := irqs.Contains(a), irqs.Contains(b); ia != ib {
			return !ia
		}
		return a > b
	})
	c.Pin, c.CPUs = true, cpuset.New(cpus[:in.MinCPUs]...)
	c.Reason = fmt.Sprintf("NIC queues cover %d of %d CPUs: kubelet on the %d with the least NET_RX work (%s)",
		netrx.Len(), usable.Len(), in.MinCPUs, c.CPUs)
	return c
}

// Static validates kubelet.cpus for pinning: static.
func Static(list string, online cpuset.Set) (Choice, error) {
	s, err := cpuset.ParseList(list)
	if err != nil {
		return Choice{}, fmt.Errorf("kubelet.cpus: %w", err)
	}
	if s.IsEmpty() || !s.IsSubsetOf(online) {
		return Choice{}, fmt.Errorf("kubelet.cpus %q: not a non-empty set of online CPUs (%s)", list, online)
	}
	return Choice{Pin: true, CPUs: s, Reason: "kubelet.pinning static: " + s.String()}, nil
}
