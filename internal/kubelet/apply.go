package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
)

// Mode is how a pin is enforced on this host.
type Mode string

const (
	// ModeSystemd: cgroup v2 with the cpuset controller: systemd enforces
	// AllowedCPUs= itself.
	ModeSystemd Mode = "systemd"
	// ModeCgroupV1: v1 or hybrid cgroups: systemd stores AllowedCPUs= but does
	// not enforce it; kubelet is moved into a dedicated v1 cpuset cgroup.
	ModeCgroupV1 Mode = "cgroup-v1"
	// ModeNone: no cpuset controller anywhere.
	ModeNone Mode = "none"
)

// CgroupName is nodekeeper's v1 cpuset cgroup, directly under the cpuset root.
const CgroupName = "nodekeeper-kubelet"

// DetectMode tells how a pin can be enforced, from the cgroup mount.
func DetectMode(h *hostfs.FS) Mode {
	if b, err := hostfs.ReadFile(h.Cgroup("cgroup.controllers"), nil); err == nil {
		if slices.Contains(strings.Fields(string(b)), "cpuset") {
			return ModeSystemd
		}
	}
	if _, err := os.Stat(h.Cgroup("cpuset", "cpuset.cpus")); err == nil {
		return ModeCgroupV1
	}
	return ModeNone
}

// Units is what a Pinner asks of systemd.
type Units interface {
	systemd.UnitReader
	systemd.CPUPinner
}

// Pinner applies, reads and removes kubelet's pin.
type Pinner struct {
	FS    *hostfs.FS
	Units Units
	Unit  string // kubelet.unit
	Mode  Mode
}

// Pin is kubelet's CPU placement as it is now.
type Pin struct {
	Unit      systemd.UnitState
	Allowed   cpuset.Set // AllowedCPUs= as systemd stores it (empty: not set)
	Effective cpuset.Set // EffectiveCPUs (cgroup v2 only)
	Process   cpuset.Set // the main process's Cpus_allowed_list (empty: not running)
}

// Running reports where kubelet can run now: its process's CPUs when it runs,
// else the stored AllowedCPUs (it will start there), else nothing known.
func (p Pin) Running() cpuset.Set {
	if !p.Process.IsEmpty() {
		return p.Process
	}
	if !p.Effective.IsEmpty() {
		return p.Effective
	}
	return p.Allowed
}

// Read returns the current pin.
func (p *Pinner) Read(ctx context.Context) (Pin, error) {
	st, err := p.Units.Unit(ctx, p.Unit)
	if err != nil {
		return Pin{}, err
	}
	pin := Pin{Unit: st, Allowed: st.AllowedCPUs, Effective: st.EffectiveCPUs}
	if st.MainPID != 0 {
		if cpus, err := p.FS.ProcessCPUs(int(st.MainPID)); err == nil {
			pin.Process = cpus
		}
	}
	return pin, nil
}

// Apply stores AllowedCPUs= for the unit (runtime: gone at reboot, survives
// restarts and daemon-reload) and, on v1 hosts, moves kubelet's main process
// (all its threads) into nodekeeper's cpuset cgroup. It never writes a
// systemd-managed cgroup file. An inactive unit is fine: the property is
// stored and applies when kubelet starts.
func (p *Pinner) Apply(ctx context.Context, cpus cpuset.Set) (Pin, error) {
	if cpus.IsEmpty() {
		return Pin{}, errors.New("refusing to pin kubelet to no CPU")
	}
	if err := p.Units.SetAllowedCPUs(ctx, p.Unit, cpus, true); err != nil {
		return Pin{}, fmt.Errorf("set AllowedCPUs=%s on %s: %w", cpus, p.Unit, err)
	}
	if p.Mode == ModeCgroupV1 {
		if err := p.applyV1(ctx, cpus); err != nil {
			return Pin{}, err
		}
	}
	return p.Verify(ctx, cpus)
}

// Verify reads the pin back: the stored AllowedCPUs, the enforced
// EffectiveCPUs (v2) and the main process's CPUs must all be cpus.
func (p *Pinner) Verify(ctx context.Context, cpus cpuset.Set) (Pin, error) {
	pin, err := p.Read(ctx)
	if err != nil {
		return pin, err
	}
	switch {
	case !pin.Allowed.Equal(cpus):
		return pin, fmt.Errorf("%s AllowedCPUs reads %q, want %q", p.Unit, pin.Allowed, cpus)
	case p.Mode == ModeSystemd && pin.Unit.Active() && !pin.Effective.Equal(cpus):
		return pin, fmt.Errorf("%s EffectiveCPUs reads %q, want %q: is the cpuset controller enabled for system.slice?", p.Unit, pin.Effective, cpus)
	case pin.Unit.MainPID != 0 && !pin.Process.IsEmpty() && !pin.Process.IsSubsetOf(cpus):
		return pin, fmt.Errorf("%s main process %d may run on %q, want %q", p.Unit, pin.Unit.MainPID, pin.Process, cpus)
	}
	return pin, nil
}

func (p *Pinner) cgroup(cpus cpuset.Set) (cgroup1.Cgroup, error) {
	root := p.FS.Cgroup()
	hier := func() ([]cgroup1.Subsystem, error) { return []cgroup1.Subsystem{cgroup1.NewCpuset(root)}, nil }
	mems, err := hostfs.ReadFile(p.FS.Cgroup("cpuset", "cpuset.mems"), nil)
	if err != nil {
		return nil, fmt.Errorf("read the root cpuset's memory nodes: %w", err)
	}
	// Both cpus and mems must be set, or attaching a task fails with ENOSPC.
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: cpus.List(), Mems: strings.TrimSpace(string(mems))}}
	return cgroup1.New(cgroup1.StaticPath("/"+CgroupName), res, cgroup1.WithHierarchy(hier))
}

func (p *Pinner) applyV1(ctx context.Context, cpus cpuset.Set) error {
	st, err := p.Units.Unit(ctx, p.Unit)
	if err != nil {
		return err
	}
	cg, err := p.cgroup(cpus)
	if err != nil {
		return fmt.Errorf("create the v1 cpuset cgroup %s: %w", CgroupName, err)
	}
	if err := cg.Update(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: cpus.List()}}); err != nil {
		return fmt.Errorf("set cpuset.cpus of %s: %w", CgroupName, err)
	}
	if st.MainPID == 0 {
		return nil // not running: the next start's MainPID change re-applies
	}
	if err := cg.Add(cgroup1.Process{Pid: int(st.MainPID)}); err != nil {
		return fmt.Errorf("move kubelet (pid %d) into the %s cpuset: %w", st.MainPID, CgroupName, err)
	}
	return nil
}

// Removed is what Undo took away, and what it left because it was not
// nodekeeper's.
type Removed struct {
	Unit        string
	AllowedCPUs cpuset.Set // the AllowedCPUs= reset (empty: none)
	Cgroup      bool       // nodekeeper's v1 cpuset cgroup was removed
	// Left is an AllowedCPUs= left in place: not the one nodekeeper stored.
	Left cpuset.Set
}

// Nothing reports whether Undo removed nothing.
func (r Removed) Nothing() bool { return r.AllowedCPUs.IsEmpty() && !r.Cgroup }

// String says what was removed, in a person's words.
func (r Removed) String() string {
	var parts []string
	if !r.AllowedCPUs.IsEmpty() {
		parts = append(parts, fmt.Sprintf("%s AllowedCPUs=%s reset (runtime)", r.Unit, r.AllowedCPUs))
	}
	if r.Cgroup {
		parts = append(parts, "cpuset cgroup "+CgroupName+" removed")
	}
	return strings.Join(parts, "; ")
}

// Undo takes away what nodekeeper stored: the unit's runtime AllowedCPUs=
// while it still reads stored (with force: whatever it reads; with stored
// empty and no force it is left alone), and, on v1 hosts, nodekeeper's
// cpuset cgroup (its own by its name: every task moves back to the root
// cpuset, then the cgroup goes). An AllowedCPUs= that differs from stored
// was set by someone else since: it is left, and reported in Left.
func (p *Pinner) Undo(ctx context.Context, stored cpuset.Set, force bool) (Removed, error) {
	r := Removed{Unit: p.Unit}
	var errs []error
	if force || !stored.IsEmpty() {
		st, err := p.Units.Unit(ctx, p.Unit)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s's AllowedCPUs: %w", p.Unit, err))
		case !st.Exists() || st.AllowedCPUs.IsEmpty():
			// Nothing stored (any more): nothing to reset.
		case !force && !st.AllowedCPUs.Equal(stored):
			r.Left = st.AllowedCPUs
		default:
			// Widen to every online CPU first: while the cpuset controller
			// stays enabled above the unit (another unit of the slice uses
			// AllowedCPUs= or delegates cgroups: seen once podman was
			// installed), systemd writes nothing for an empty AllowedCPUs=
			// and the cgroup kept the pinned CPUs. A failure here is not
			// fatal: the reset below is what the property needs.
			if online, err := p.FS.OnlineCPUs(); err == nil && !online.IsEmpty() {
				_ = p.Units.SetAllowedCPUs(ctx, p.Unit, online, true)
			}
			if err := p.Units.SetAllowedCPUs(ctx, p.Unit, cpuset.Set{}, true); err != nil {
				errs = append(errs, fmt.Errorf("reset AllowedCPUs on %s: %w", p.Unit, err))
			} else {
				r.AllowedCPUs = st.AllowedCPUs
			}
		}
	}
	dir := p.FS.Cgroup("cpuset", CgroupName)
	if _, err := os.Stat(dir); err == nil {
		if err := moveAll(p.FS.Cgroup("cpuset", CgroupName, "cgroup.procs"), p.FS.Cgroup("cpuset", "cgroup.procs")); err != nil {
			errs = append(errs, err)
		} else if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		} else {
			r.Cgroup = true
		}
	}
	return r, errors.Join(errs...)
}

// moveAll writes every PID listed in from into to (one write each, as the
// kernel wants); processes that exited meanwhile are skipped.
func moveAll(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	for _, pid := range strings.Fields(string(b)) {
		if err := hostfs.WriteFile(to, []byte(pid)); err != nil && !errors.Is(err, os.ErrNotExist) &&
			!strings.Contains(err.Error(), "no such process") {
			return fmt.Errorf("move pid %s back to the root cpuset: %w", pid, err)
		}
	}
	return nil
}
