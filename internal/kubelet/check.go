package kubelet

import (
	"context"
	"fmt"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

// Name is this check's name.
const Name check.Name = "kubelet"

// The changes nodekeeper makes to kubelet's CPUs.
const (
	ActionPin   policy.Action = "kubelet_pin"
	ActionUnpin policy.Action = "kubelet_unpin"
)

// NetRxCounts reads the NET_RX row of /proc/softirqs (one read), indexed by
// CPU number. The symptoms package owns the parser of that file (one parser
// in the binary); a CPU the header does not list counts 0.
func NetRxCounts(h *hostfs.FS) ([]uint64, error) {
	b, err := hostfs.ReadFile(h.Proc("softirqs"), nil)
	if err != nil {
		return nil, fmt.Errorf("read softirqs: %w", err)
	}
	rows, err := symptoms.ParseSoftirqs(b, "NET_RX", nil)
	if err != nil {
		return nil, fmt.Errorf("read softirqs: %w", err)
	}
	out := make([]uint64, rows[len(rows)-1].CPU+1)
	for _, r := range rows {
		out[r.CPU] = r.Count
	}
	return out, nil
}

// Rates turns two NET_RX samples taken d apart into per-second rates.
func Rates(before, after []uint64, d time.Duration) []float64 {
	if d <= 0 {
		return nil
	}
	out := make([]float64, min(len(before), len(after)))
	for i := range out {
		if after[i] >= before[i] {
			out[i] = float64(after[i]-before[i]) / d.Seconds()
		}
	}
	return out
}

// SampleNetRx measures NET_RX rates over window (two reads).
func SampleNetRx(ctx context.Context, h *hostfs.FS, clk clock.Clock, window time.Duration) ([]float64, error) {
	a, err := NetRxCounts(h)
	if err != nil {
		return nil, err
	}
	start := clk.Now()
	if err := clock.Sleep(ctx, clk, window); err != nil {
		return nil, err
	}
	b, err := NetRxCounts(h)
	if err != nil {
		return nil, err
	}
	return Rates(a, b, clk.Now().Sub(start)), nil
}

// Report is `nodekeeper check kubelet`'s result.
type Report struct {
	check.Verdict
	Pinning     string     `json:"pinning"`
	Mode        Mode       `json:"mode"`
	KubeletCPUs cpuset.Set `json:"kubelet_cpus"`
	NetRxCPUs   cpuset.Set `json:"netrx_cpus"`
	ChosenCPUs  cpuset.Set `json:"chosen_cpus"`
	Disjoint    bool       `json:"disjoint"`
	Overlap     cpuset.Set `json:"overlap_cpus"`
}

// Judge compares where kubelet can run with the choice: ok when it avoids
// the net_rx CPUs where a disjoint choice exists, or sits on CPUs no busier
// with NET_RX work than the chosen ones where none does; a problem otherwise.
func Judge(pinning string, pin Pin, in Inputs, c Choice, mode Mode) Report {
	r := Report{Verdict: check.Verdict{Check: Name, Status: check.OK}, Pinning: pinning, Mode: mode,
		NetRxCPUs: c.NetRx, ChosenCPUs: c.CPUs, Disjoint: c.Disjoint}
	switch {
	case pinning == "off":
		r.Message = "kubelet pinning is off (kubelet.pinning)"
		return r
	case !pin.Unit.Exists():
		r.Message = "no " + pin.Unit.Name + " on this node: nothing to pin"
		return r
	case !c.Pin:
		r.Message = check.Short(c.Reason)
		return r
	}
	running := pin.Running()
	if running.IsEmpty() {
		running = in.Online // unpinned and not running: it would start anywhere
	}
	r.KubeletCPUs = running
	r.Overlap = running.Intersect(c.NetRx)
	if c.Disjoint {
		if r.Overlap.IsEmpty() {
			r.Message = fmt.Sprintf("kubelet on %s, off the net_rx CPUs %s", running, c.NetRx)
		} else {
			r.Status = check.Problem
			r.Message = fmt.Sprintf("kubelet may run on net_rx CPUs %s (kubelet %s)", r.Overlap, running)
		}
		r.Message = check.Short(r.Message)
		return r
	}
	// No disjoint set exists: kubelet should be on the least-loaded CPUs.
	busiest := func(s cpuset.Set) float64 {
		var m float64
		for _, cpu := range s.CPUs() {
			if cpu < len(in.NetRx) && in.NetRx[cpu] > m {
				m = in.NetRx[cpu]
			}
		}
		return m
	}
	if running.Len() > in.MinCPUs && running.Len() > c.CPUs.Len() || busiest(running) > 1.5*busiest(c.CPUs)+minBusyRate {
		r.Status = check.Problem
		r.Message = check.Short(fmt.Sprintf("kubelet on %s, not on the least NET_RX-loaded CPUs %s", running, c.CPUs))
		return r
	}
	r.Message = check.Short(fmt.Sprintf("kubelet on %s: queues cover every CPU, these carry the least NET_RX", running))
	return r
}
