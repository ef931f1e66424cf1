package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
)

// A pin that fails after AllowedCPUs= was stored (here systemd stores it but
// does not enforce it; in a container, the v1 cpuset is read-only) leaves a
// setting of nodekeeper's on kubelet.service: turning pinning off with a
// reload takes it away at the next check.
func TestKubeletFailedPinRemovedWhenPinningOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startFailedStaticPin(t)
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
		if n := r.remediations(kubelet.ActionUnpin, policy.Success); n != 1 {
			t.Errorf("kubelet_unpin success %v, want 1", n)
		}
		// Once removed, it is not removed again at every check.
		calls := len(r.units.CallsTo("SetAllowedCPUs"))
		r.clk.Advance(config.Default().IRQ.CheckInterval)
		synctest.Wait() // everything the clock set off has run
		if n := len(r.units.CallsTo("SetAllowedCPUs")); n != calls {
			t.Errorf("%d more SetAllowedCPUs calls after the unpin", n-calls)
		}
	})
}

// v1 marks a cgroup v1 cpuset hierarchy whose v1 step fails: the root
// cpuset has no cpuset.mems to give nodekeeper's cgroup (as a read-only
// cpuset hierarchy in a container fails it), after systemd stored AllowedCPUs=.
func v1Failing(r *rig) {
	os.MkdirAll(filepath.Join(r.paths.Cgroup, "cpuset"), 0o755)
	os.WriteFile(filepath.Join(r.paths.Cgroup, "cpuset", "cpuset.cpus"), []byte("0-7\n"), 0o644)
}

// A pin whose v1 cpuset step failed after systemd stored AllowedCPUs= is
// nodekeeper's across a restart: the state file records what was stored, on
// which unit, apart from what was enforced, and a new daemon started from it
// with pinning off resets it.
func TestKubeletV1FailedPinRemovedAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, kubeletHost(), nil, func(f *systemd.Fake) { f.AddService("kubelet.service") })
		v1Failing(r)
		r.d = New(r.d.d)
		r.start()
		if st := r.units.State("kubelet.service"); !st.AllowedCPUs.Equal(cpuset.New(0, 1, 2, 3, 6, 7)) ||
			!strings.Contains(r.logs.String(), "v1 cpuset cgroup") {
			t.Fatalf("want a failed v1 step with AllowedCPUs=0-3,6-7 stored, got %q:\n%s", st.AllowedCPUs, r.logs.String())
		}
		r.stop()
		st, err := state.Read(r.d.d.StatePath)
		if err != nil || st == nil || st.Kubelet.Pinned || st.Kubelet.Stored == nil ||
			*st.Kubelet.Stored != (state.StoredPin{Unit: "kubelet.service", AllowedCPUs: "0-3,6-7"}) {
			t.Fatalf("the state file must record the stored pin apart from the enforced one: %+v %v", st, err)
		}

		deps := r.d.d
		deps.Config.Kubelet.Pinning = config.PinningOff
		r.d = New(deps)
		r.start()
		r.until("the unpin", func() bool { return strings.Contains(r.logs.String(), "message_id="+logging.MsgKubeletUnpinned) })
		if st := r.units.State("kubelet.service"); !st.AllowedCPUs.IsEmpty() {
			t.Errorf("AllowedCPUs still %s after a restart with pinning off", st.AllowedCPUs)
		}
		r.until("the record cleared", func() bool {
			st, _ := state.Read(r.d.d.StatePath)
			return st != nil && !st.Kubelet.Ours()
		})
	})
}

// What someone else set on the unit after nodekeeper stored its pin is not
// nodekeeper's: pinning off leaves it, says so, and forgets its own record.
func TestKubeletPinningOffLeavesAForeignPin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, kubeletHost(), func(c *config.Config) { c.Kubelet.Pinning = config.PinningOff },
			func(f *systemd.Fake) { f.AddService("kubelet.service") })
		os.MkdirAll(filepath.Dir(r.d.d.StatePath), 0o755)
		state.Write(r.d.d.StatePath, &state.State{Kubelet: state.Kubelet{Stored: &state.StoredPin{Unit: "kubelet.service", AllowedCPUs: "6-7"}}})
		r.units.SetAllowedCPUs(context.Background(), "kubelet.service", cpuset.New(0, 1), true) // an administrator's, since
		r.d = New(r.d.d)
		r.start()
		r.until("the verdict", func() bool { return strings.Contains(r.logs.String(), "AllowedCPUs=0-1 left in place") })
		if st := r.units.State("kubelet.service"); st.AllowedCPUs.List() != "0-1" {
			t.Errorf("AllowedCPUs %q, want the administrator's 0-1 left", st.AllowedCPUs)
		}
		if st, _ := state.Read(r.d.d.StatePath); st == nil || st.Kubelet.Ours() {
			t.Errorf("the record of a pin that is no longer nodekeeper's must go: %+v", st)
		}
	})
}

// kubelet.unit changed (reload, or a restart with a new value): what
// nodekeeper stored on the old unit is removed, the new unit gets the pin.
func TestKubeletUnitChangedUnpinsTheOldUnit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, kubeletHost(), func(c *config.Config) { c.Kubelet.Unit = "kubelet-new.service" }, func(f *systemd.Fake) {
			f.SetEnforced(true)
			f.AddService("kubelet.service")
			f.AddService("kubelet-new.service")
		})
		v2(r)
		os.MkdirAll(filepath.Dir(r.d.d.StatePath), 0o755)
		state.Write(r.d.d.StatePath, &state.State{Kubelet: state.Kubelet{Pinned: true, Unit: "kubelet.service", CPUs: "6-7",
			Stored: &state.StoredPin{Unit: "kubelet.service", AllowedCPUs: "6-7"}}})
		r.units.SetAllowedCPUs(context.Background(), "kubelet.service", cpuset.New(6, 7), true)
		r.d = New(r.d.d)
		r.start()
		if st := r.units.State("kubelet.service"); !st.AllowedCPUs.IsEmpty() {
			t.Errorf("the old unit keeps AllowedCPUs=%s", st.AllowedCPUs)
		}
		if st := r.units.State("kubelet-new.service"); st.AllowedCPUs.List() != "0-3,6-7" {
			t.Errorf("the new unit has AllowedCPUs=%q, want 0-3,6-7", st.AllowedCPUs)
		}
		st, _ := state.Read(r.d.d.StatePath)
		if sp, ok := st.Kubelet.StoredPin(); !ok || sp.Unit != "kubelet-new.service" {
			t.Errorf("the record must name the new unit: %+v", st.Kubelet)
		}
	})
}

// startFailedStaticPin starts a daemon that pins kubelet statically to 6-7
// on a host where systemd stores AllowedCPUs= but does not enforce it: the
// pin fails after the setting was stored.
func startFailedStaticPin(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, kubeletHost(), func(c *config.Config) {
		c.Kubelet.Pinning, c.Kubelet.CPUs = config.PinningStatic, "6-7"
	}, func(f *systemd.Fake) { f.AddService("kubelet.service") })
	v2(r)
	r.d = New(r.d.d)
	r.start()
	return r
}
