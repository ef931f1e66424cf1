package daemon

import (
	"strings"
	"testing"
	"testing/synctest"

	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/logging"
)

// TestStoredPinRemovedAfterRestartWithPinningOff: a pin that failed after
// systemd stored AllowedCPUs= is nodekeeper's, across a restart of the
// daemon: a new process started with pinning off takes it away (the state
// file used to say only "not pinned", and the setting stayed for good).
func TestStoredPinRemovedAfterRestartWithPinningOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startFailedStaticPin(t)
		if st := r.units.State("kubelet.service"); !st.AllowedCPUs.Equal(cpuset.Range(6, 7)) ||
			!strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletPinFailed) {
			t.Fatalf("want a failed pin with AllowedCPUs=6-7 stored, got %q:\n%s", st.AllowedCPUs, r.logs.String())
		}
		r.stop()

		deps := r.d.d
		deps.Config.Kubelet.Pinning = config.PinningOff
		r.d = New(deps)
		r.start()
		r.until("the unpin", func() bool { return strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletUnpinned) })
		if st := r.units.State("kubelet.service"); !st.AllowedCPUs.IsEmpty() {
			t.Errorf("AllowedCPUs still %s after a restart with pinning off", st.AllowedCPUs)
		}
	})
}
