package kubelet

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

func fixture(t *testing.T, controllers string) *hostfs.FS {
	t.Helper()
	p := hostfixture.Host{CPUs: 8}.MustBuild(t)
	os.MkdirAll(p.Cgroup, 0o755)
	if controllers != "" {
		os.WriteFile(filepath.Join(p.Cgroup, "cgroup.controllers"), []byte(controllers+"\n"), 0o644)
	}
	h, err := hostfs.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDetectMode(t *testing.T) {
	if m := DetectMode(fixture(t, "cpuset cpu io memory pids")); m != ModeSystemd {
		t.Errorf("v2 with cpuset: %s", m)
	}
	if m := DetectMode(fixture(t, "cpu io memory")); m != ModeNone {
		t.Errorf("v2 without cpuset: %s", m)
	}
	h := fixture(t, "")
	os.MkdirAll(h.Cgroup("cpuset"), 0o755)
	os.WriteFile(h.Cgroup("cpuset", "cpuset.cpus"), []byte("0-7\n"), 0o644)
	if m := DetectMode(h); m != ModeCgroupV1 {
		t.Errorf("v1 cpuset: %s", m)
	}
}

func TestApplyVerifyUndoSystemd(t *testing.T) {
	h := fixture(t, "cpuset cpu")
	f := systemd.NewFake(nil)
	f.SetEnforced(true)
	f.AddService("kubelet.service")
	p := &Pinner{FS: h, Units: f, Unit: "kubelet.service", Mode: ModeSystemd}
	pin, err := p.Apply(context.Background(), cpuset.New(2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if pin.Allowed.String() != "2-3" || pin.Effective.String() != "2-3" {
		t.Errorf("pin %+v", pin)
	}
	calls := f.CallsTo("SetAllowedCPUs")
	if len(calls) != 1 || !calls[0].Runtime || calls[0].CPUs.String() != "2-3" {
		t.Errorf("calls %+v", calls)
	}
	if _, err := p.Apply(context.Background(), cpuset.Set{}); err == nil {
		t.Error("an empty pin must be refused")
	}
	r, err := p.Undo(context.Background(), cpuset.New(2, 3), false)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.State("kubelet.service"); !st.AllowedCPUs.IsEmpty() {
		t.Errorf("undo left AllowedCPUs %s", st.AllowedCPUs)
	}
	if r.String() != "kubelet.service AllowedCPUs=2-3 reset (runtime)" || r.Cgroup {
		t.Errorf("undo says %q (%+v)", r, r)
	}
}

// Undo resets only the AllowedCPUs= nodekeeper stored, unless forced.
func TestUndoOnlyWhatWasStored(t *testing.T) {
	ctx := context.Background()
	h := fixture(t, "cpuset cpu")
	f := systemd.NewFake(nil)
	f.AddService("kubelet.service")
	p := &Pinner{FS: h, Units: f, Unit: "kubelet.service", Mode: ModeSystemd}
	f.SetAllowedCPUs(ctx, "kubelet.service", cpuset.New(0, 1), true) // someone else's
	for _, tc := range []struct {
		name   string
		stored cpuset.Set
		force  bool
		reset  bool
	}{
		{"nothing recorded", cpuset.Set{}, false, false},
		{"another value recorded", cpuset.New(2, 3), false, false},
		{"forced", cpuset.Set{}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.SetAllowedCPUs(ctx, "kubelet.service", cpuset.New(0, 1), true)
			n := len(f.CallsTo("SetAllowedCPUs"))
			r, err := p.Undo(ctx, tc.stored, tc.force)
			if err != nil {
				t.Fatal(err)
			}
			reset := len(f.CallsTo("SetAllowedCPUs")) > n
			if reset != tc.reset || reset != f.State("kubelet.service").AllowedCPUs.IsEmpty() || reset == r.Nothing() {
				t.Errorf("reset %v, want %v: %+v, AllowedCPUs now %s", reset, tc.reset, r, f.State("kubelet.service").AllowedCPUs)
			}
			if !tc.stored.IsEmpty() && r.Left.List() != "0-1" {
				t.Errorf("a foreign AllowedCPUs must be reported as left: %+v", r)
			}
		})
	}
	// A unit with nothing stored, or no unit at all: nothing to do, no error.
	r, err := p.Undo(ctx, cpuset.New(0, 1), false)
	if err != nil || !r.Nothing() {
		t.Errorf("nothing stored: %+v %v", r, err)
	}
	p.Unit = "nosuch.service"
	if r, err := p.Undo(ctx, cpuset.New(0, 1), true); err != nil || !r.Nothing() {
		t.Errorf("no unit: %+v %v", r, err)
	}
}

func TestVerifyNotEnforced(t *testing.T) {
	h := fixture(t, "cpuset")
	f := systemd.NewFake(nil) // stores AllowedCPUs but EffectiveCPUs stays empty
	f.AddService("kubelet.service")
	p := &Pinner{FS: h, Units: f, Unit: "kubelet.service", Mode: ModeSystemd}
	if _, err := p.Apply(context.Background(), cpuset.New(2, 3)); err == nil {
		t.Error("an AllowedCPUs that is not enforced must fail verification on a v2 host")
	}
}

func TestJudge(t *testing.T) {
	unit := systemd.UnitState{Name: "kubelet.service", LoadState: "loaded", ActiveState: "active", MainPID: 42}
	in := Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.New(4, 5), MinCPUs: 2}
	c := Choose(in)
	for _, tc := range []struct {
		name    string
		pinning string
		pin     Pin
		in      Inputs
		want    check.Status
	}{
		{"pinned off the net_rx CPUs", "auto", Pin{Unit: unit, Process: cpuset.New(0, 1, 2, 3, 6, 7)}, in, check.OK},
		{"unpinned on every CPU", "auto", Pin{Unit: unit, Process: cpuset.Range(0, 7)}, in, check.Problem},
		{"pinning off", "off", Pin{Unit: unit, Process: cpuset.Range(0, 7)}, in, check.OK},
		{"no kubelet", "auto", Pin{Unit: systemd.UnitState{Name: "kubelet.service", LoadState: "not-found"}}, in, check.OK},
	} {
		r := Judge(tc.pinning, tc.pin, tc.in, c, ModeSystemd)
		if r.Status != tc.want || len(r.Message) > check.MaxMessage || r.Message == "" {
			t.Errorf("%s: %s %q", tc.name, r.Status, r.Message)
		}
	}
	// Queues on every CPU: kubelet on the least-loaded CPUs is fine, on the busiest not.
	all := Inputs{Online: cpuset.Range(0, 7), IRQCPUs: cpuset.Range(0, 7), MinCPUs: 2,
		NetRx: []float64{9000, 9000, 9000, 9000, 9000, 9000, 100, 100}}
	ca := Choose(all)
	if r := Judge("auto", Pin{Unit: unit, Process: cpuset.New(6, 7)}, all, ca, ModeSystemd); r.Status != check.OK {
		t.Errorf("least loaded: %s %q", r.Status, r.Message)
	}
	if r := Judge("auto", Pin{Unit: unit, Process: cpuset.New(0, 1)}, all, ca, ModeSystemd); r.Status != check.Problem {
		t.Errorf("busiest: %s %q", r.Status, r.Message)
	}
}

func TestRates(t *testing.T) {
	got := Rates([]uint64{100, 200, 50}, []uint64{300, 200, 40}, 2*time.Second)
	if got[0] != 100 || got[1] != 0 || got[2] != 0 {
		t.Errorf("rates %v (a counter going back gives 0)", got)
	}
}

func TestReserved(t *testing.T) {
	h := fixture(t, "")
	if s, path, err := Reserved(h); err != nil || path != "" || !s.IsEmpty() {
		t.Errorf("no kubelet config: %v %q %v", s, path, err)
	}
	p := h.Root("etc", "default", "kubeletconfig.json")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(`{"kind":"KubeletConfiguration","reservedSystemCPUs":"0-1"}`), 0o644)
	if s, path, err := Reserved(h); err != nil || path != p || s.String() != "0-1" {
		t.Errorf("AKS JSON: %v %q %v", s, path, err)
	}
	y := h.Root("var", "lib", "kubelet", "config.yaml")
	os.MkdirAll(filepath.Dir(y), 0o755)
	os.WriteFile(y, []byte("kind: KubeletConfiguration\nreservedSystemCPUs: \"6,7\"\n"), 0o644)
	if s, _, err := Reserved(h); err != nil || s.String() != "6-7" {
		t.Errorf("kubeadm YAML wins (first in order): %v %v", s, err)
	}
	os.WriteFile(y, []byte("reservedSystemCPUs: lots\n"), 0o644)
	if _, _, err := Reserved(h); err == nil {
		t.Error("a bad value must be an error")
	}
}

func FuzzParseReserved(f *testing.F) {
	f.Add([]byte("reservedSystemCPUs: \"0-3\"\n"))
	f.Add([]byte(`{"reservedSystemCPUs":"1,2"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseReserved(b)
		if err == nil && s.Max() > cpuset.MaxCPU {
			t.Fatal("CPU out of range")
		}
	})
}
