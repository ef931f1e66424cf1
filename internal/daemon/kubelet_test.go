package daemon

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
)

// A pin that fails after AllowedCPUs= was stored (here systemd stores it but
// does not enforce it; in a container, the v1 cpuset is read-only) leaves a
// setting of nodekeeper's on kubelet.service: turning pinning off with a
// reload takes it away at the next check.
func TestKubeletFailedPinRemovedWhenPinningOff(t *testing.T) {
	r := newRig(t, kubeletHost(), func(c *config.Config) {
		c.Kubelet.Pinning, c.Kubelet.CPUs = config.PinningStatic, "6-7"
	}, func(f *systemd.Fake) { f.AddService("kubelet.service") })
	v2(r)
	r.d = New(r.d.d)
	r.start()
	if st := r.units.State("kubelet.service"); !st.AllowedCPUs.Equal(cpuset.Range(6, 7)) {
		t.Fatalf("AllowedCPUs=%q, want the failed pin's 6-7 stored", st.AllowedCPUs)
	}
	if !strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletPinFailed) {
		t.Fatalf("the pin must fail (not enforced):\n%s", r.logs.String())
	}

	os.WriteFile(r.cfgFile, []byte("metrics:\n  listen: \"\"\nkubelet:\n  pinning: \"off\"\n"), 0o644)
	r.reload <- struct{}{}
	r.until("the reload", func() bool { return strings.Contains(r.logs.String(), "configuration reloaded") })
	r.clk.Advance(config.Default().IRQ.CheckInterval)
	r.until("the unpin", func() bool { return strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletUnpinned) })
	if st := r.units.State("kubelet.service"); !st.AllowedCPUs.IsEmpty() {
		t.Errorf("AllowedCPUs still %s after pinning off", st.AllowedCPUs)
	}
	if n := r.remediations(metrics.ActionKubeletUnpin, metrics.ResultSuccess); n != 1 {
		t.Errorf("kubelet_unpin success %v, want 1", n)
	}
	// Once removed, it is not removed again at every check.
	calls := len(r.units.CallsTo("SetAllowedCPUs"))
	r.clk.Advance(config.Default().IRQ.CheckInterval)
	time.Sleep(20 * time.Millisecond)
	if n := len(r.units.CallsTo("SetAllowedCPUs")); n != calls {
		t.Errorf("%d more SetAllowedCPUs calls after the unpin", n-calls)
	}
}
