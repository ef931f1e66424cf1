package kubelet

import (
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

func rates(n int, f func(cpu int) float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       Inputs
		pin      bool
		cpus     string
		disjoint bool
		netrx    string
	}{
		{
			name: "8 vCPU, queues on 4-5 (the incident): kubelet everywhere else",
			in:   Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.New(4, 5), MinCPUs: 2},
			pin:  true, cpus: "0-3,6-7", disjoint: true, netrx: "4-5",
		},
		{
			name: "16 vCPU, 8 queues on 0-7, NET_RX concentrated there",
			in: Inputs{Online: cpuset.Range(0, 15), IRQCPUs: cpuset.Range(0, 7), MinCPUs: 2,
				NetRx: rates(16, func(c int) float64 { return map[bool]float64{true: 5000, false: 10}[c < 8] })},
			pin: true, cpus: "8-15", disjoint: true, netrx: "0-7",
		},
		{
			name: "16 vCPU, vmbus channels do NET_RX on 8-9 without IRQs",
			in: Inputs{Online: cpuset.Range(0, 15), IRQCPUs: cpuset.Range(0, 3), MinCPUs: 2,
				NetRx: rates(16, func(c int) float64 {
					if c < 4 || c == 8 || c == 9 {
						return 3000
					}
					return 5
				})},
			pin: true, cpus: "4-7,10-15", disjoint: true, netrx: "0-3,8-9",
		},
		{
			name: "64 vCPU, one queue per vCPU, NET_RX spread: the 2 least loaded",
			in: Inputs{Online: cpuset.Range(0, 63), IRQCPUs: cpuset.Range(0, 63), MinCPUs: 2,
				NetRx: rates(64, func(c int) float64 { return float64(1000 + (c*37)%64) })},
			pin: true, cpus: "0,45", disjoint: false, netrx: "0-63",
		},
		{
			name: "8 vCPU, queues on every CPU, no rates: the highest-numbered CPUs",
			in:   Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.Range(0, 7), MinCPUs: 2},
			pin:  true, cpus: "6-7", disjoint: false,
		},
		{
			name: "isolated CPUs are never kubelet's",
			in:   Inputs{Online: cpuset.Range(0, 7), Isolated: cpuset.New(6, 7), IRQCPUs: cpuset.New(0, 1), MinCPUs: 2},
			pin:  true, cpus: "2-5", disjoint: true,
		},
		{
			name: "reservedSystemCPUs is preferred",
			in:   Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.New(4, 5), Reserved: cpuset.New(0, 1), MinCPUs: 2},
			pin:  true, cpus: "0-1", disjoint: true,
		},
		{
			name: "reservedSystemCPUs overlapping net_rx CPUs is not used",
			in:   Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.New(0, 1), Reserved: cpuset.New(0, 1), MinCPUs: 2},
			pin:  true, cpus: "2-7", disjoint: true,
		},
		{
			name: "2 CPUs: too few for pinning to help",
			in:   Inputs{Online: cpuset.Range(0, 1), IRQCPUs: cpuset.New(0), MinCPUs: 2},
			pin:  false,
		},
		{
			name: "offline CPUs are not candidates",
			in:   Inputs{Online: cpuset.New(0, 1, 2, 3, 6), IRQCPUs: cpuset.New(0, 1), MinCPUs: 2},
			pin:  true, cpus: "2-3,6", disjoint: true,
		},
		{
			name: "a quiet node: NET_RX noise below the floor does not count",
			in: Inputs{Online: cpuset.Range(0, 3), IRQCPUs: cpuset.New(0), MinCPUs: 2,
				NetRx: rates(4, func(c int) float64 { return float64(c) * 10 })},
			pin: true, cpus: "1-3", disjoint: true, netrx: "0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Choose(tc.in)
			if c.Pin != tc.pin || (tc.pin && (c.CPUs.String() != tc.cpus || c.Disjoint != tc.disjoint)) {
				t.Errorf("got pin=%v cpus=%q disjoint=%v (%s), want pin=%v cpus=%q disjoint=%v",
					c.Pin, c.CPUs, c.Disjoint, c.Reason, tc.pin, tc.cpus, tc.disjoint)
			}
			if tc.netrx != "" && c.NetRx.String() != tc.netrx {
				t.Errorf("net_rx CPUs %q, want %q", c.NetRx, tc.netrx)
			}
			if c.Pin && (c.CPUs.Len() < tc.in.MinCPUs || !c.CPUs.IsSubsetOf(tc.in.Online) || !c.CPUs.Intersect(tc.in.Isolated).IsEmpty()) {
				t.Errorf("unsafe choice %q", c.CPUs)
			}
			if c.Reason == "" {
				t.Error("every choice says why")
			}
		})
	}
}

func TestStatic(t *testing.T) {
	if c, err := Static("2-3", cpuset.Range(0, 7)); err != nil || c.CPUs.String() != "2-3" {
		t.Errorf("%v %v", c, err)
	}
	for _, bad := range []string{"", "9", "x", "1-0"} {
		if _, err := Static(bad, cpuset.Range(0, 7)); err == nil {
			t.Errorf("Static(%q) accepted", bad)
		}
	}
}

// Below the NET_RX floor the rates are noise: they must not decide (or move) the pin.
func TestChooseIgnoresNoise(t *testing.T) {
	a := Choose(Inputs{Online: cpuset.Range(0, 3), IRQCPUs: cpuset.Range(0, 3), MinCPUs: 2, NetRx: []float64{1, 0, 3, 2}})
	b := Choose(Inputs{Online: cpuset.Range(0, 3), IRQCPUs: cpuset.Range(0, 3), MinCPUs: 2, NetRx: []float64{0, 4, 1, 0}})
	if !a.CPUs.Equal(b.CPUs) || a.CPUs.String() != "2-3" {
		t.Errorf("noise moved the choice: %s vs %s", a.CPUs, b.CPUs)
	}
}
