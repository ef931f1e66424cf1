package kubelet

import (
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

func TestDecide(t *testing.T) {
	in := Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.New(4, 5), Saturated: cpuset.New(2)}
	k := config.Default().Kubelet
	k.MinCPUs = 3
	for _, tc := range []struct {
		name          string
		pinning, cpus string
		pin           bool
		want, netrx   string
		err           bool
	}{
		// A saturated CPU is a net_rx CPU: kubelet leaves it with the IRQ CPUs.
		{"auto", config.PinningAuto, "", true, "0-1,3,6-7", "2,4-5", false},
		{"static", config.PinningStatic, "1-2", true, "1-2", "2,4-5", false},
		{"static offline", config.PinningStatic, "8-9", false, "", "2,4-5", true},
		{"off", config.PinningOff, "", false, "", "2,4-5", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k.Pinning, k.CPUs = tc.pinning, tc.cpus
			d, err := Decide(k, in)
			if (err != nil) != tc.err || d.Pin != tc.pin || d.CPUs.List() != tc.want || d.NetRx.List() != tc.netrx {
				t.Errorf("Decide = %+v, %v; want pin %v on %q, net_rx %q, error %v", d.Choice, err, tc.pin, tc.want, tc.netrx, tc.err)
			}
			if d.Inputs.MinCPUs != 3 || d.Pinning != tc.pinning {
				t.Errorf("the decision must carry kubelet.minCPUs and kubelet.pinning: %+v", d)
			}
		})
	}
}
