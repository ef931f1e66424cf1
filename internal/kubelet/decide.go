package kubelet

import (
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

// Decision is kubelet's placement under the kubelet.* settings: what the
// daemon applies and what `check kubelet` judges by.
type Decision struct {
	Pinning string // kubelet.pinning
	Inputs  Inputs // what it was decided from, MinCPUs from kubelet.minCPUs
	Choice
}

// Decide maps the kubelet.* keys of k onto the choice: static takes
// kubelet.cpus, auto chooses from in (the saturated CPUs count as net_rx
// CPUs either way), off pins nothing. The daemon and `nodekeeper check
// kubelet` both decide here, so they cannot differ on the same host. An
// error (kubelet.cpus not online) comes with the Decision filled but Pin
// false.
func Decide(k config.Kubelet, in Inputs) (Decision, error) {
	in.MinCPUs = k.MinCPUs
	d := Decision{Pinning: k.Pinning, Inputs: in}
	switch k.Pinning {
	case config.PinningOff:
		d.Choice = Choice{NetRx: NetRxCPUs(in), Reason: "kubelet.pinning is off"}
	case config.PinningStatic:
		c, err := Static(k.CPUs, in.Online)
		c.NetRx = NetRxCPUs(in)
		d.Choice = c
		if err != nil {
			d.Reason = err.Error()
			return d, err
		}
	default:
		d.Choice = Choose(in)
	}
	return d, nil
}

// Judge judges pin against the decision (see Judge).
func (d Decision) Judge(pin Pin, mode Mode) Report {
	return Judge(d.Pinning, pin, d.Inputs, d.Choice, mode)
}

// NetRxRates are the symptom watcher's NET_RX rates per CPU, indexed by CPU
// (Inputs.NetRx); nil when snap has no rates yet.
func NetRxRates(snap symptoms.Snapshot) []float64 {
	if !snap.Ready || len(snap.CPUs) == 0 {
		return nil
	}
	rates := make([]float64, snap.CPUs[len(snap.CPUs)-1].CPU+1)
	for _, c := range snap.CPUs {
		if c.CPU >= 0 && c.CPU < len(rates) {
			rates[c.CPU] = c.NetRxPerSecond
		}
	}
	return rates
}
