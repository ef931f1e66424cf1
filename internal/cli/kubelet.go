package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
)

func init() { extraCommands["undo"] = runUndo }

type kubeletReport struct{ kubelet.Report }

func (r kubeletReport) verdict() check.Verdict       { return r.Verdict }
func (r kubeletReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// freshReport returns the daemon's last report of a check when it is fresh
// and the daemon has not stopped. A state file that cannot be read is no
// fresh result: the check is made live instead.
func freshReport(e checkEnv, name check.Name) (json.RawMessage, check.Verdict, bool) {
	st, err := state.Read(e.h.Root(state.RelPath))
	if err != nil {
		return nil, check.Verdict{}, false
	}
	c, ok := st.FreshCheck(name, e.clk.Now())
	if !ok {
		return nil, check.Verdict{}, false
	}
	return c.Report, check.Verdict{Check: name, Status: check.Status(c.Status), Message: c.Message}, true
}

type rawReport struct {
	raw json.RawMessage
	v   check.Verdict
}

func (r rawReport) verdict() check.Verdict       { return r.v }
func (r rawReport) MarshalJSON() ([]byte, error) { return r.raw, nil }

// dialSystemd is replaced in tests.
var dialSystemd = func(ctx context.Context) (systemd.Units, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return systemd.Dial(ctx, "", logging.New(io.Discard, "text", slog.LevelError), clock.Real{})
}

// checkKubelet judges kubelet's placement: the daemon's result when fresh,
// else a live judgement (one IRQ check, the symptom watchers over the window
// for NET_RX rates and saturated CPUs, systemd), decided by kubelet.Decide
// from the same configuration as the daemon's.
func checkKubelet(ctx context.Context, e checkEnv) reporter {
	if raw, v, ok := freshReport(e, kubelet.Name); ok {
		return rawReport{raw, v}
	}
	unknown := func(msg string) reporter {
		return plainVerdict{Check: kubelet.Name, Status: check.Unknown, Message: check.Short(msg)}
	}
	cfg, h := e.cfg, e.h
	if cfg.Kubelet.Pinning == config.PinningOff {
		return plainVerdict{Check: kubelet.Name, Status: check.OK, Message: "kubelet pinning is off (kubelet.pinning)"}
	}
	units, err := dialSystemd(ctx)
	if err != nil {
		return unknown("cannot ask systemd about kubelet: " + err.Error())
	}
	p := &kubelet.Pinner{FS: h, Units: units, Unit: cfg.Kubelet.Unit, Mode: kubelet.DetectMode(h)}
	pin, err := p.Read(ctx)
	if err != nil {
		return unknown("cannot read " + cfg.Kubelet.Unit + ": " + err.Error())
	}
	rep := checkIRQ(ctx, e).(irqReport)
	if rep.Status == check.Unknown {
		return unknown("IRQ placement unknown: " + rep.Message)
	}
	iso, err := h.IsolatedCPUs()
	if err != nil {
		return unknown("cannot read the isolated CPUs: " + err.Error())
	}
	reserved, _, err := kubelet.Reserved(h)
	if err != nil {
		return unknown("cannot read kubelet's reservedSystemCPUs: " + err.Error())
	}
	snap, err := symptoms.Sample(ctx, h, symptoms.ConfigFrom(cfg), e.window, symptoms.SampleOptions{
		Options: symptoms.Options{KubeletPID: int(pin.Unit.MainPID)}, Clock: e.clk})
	if err != nil {
		return unknown("cannot sample NET_RX work: " + err.Error())
	}
	dec, err := kubelet.Decide(cfg.Kubelet, kubelet.Inputs{Online: rep.Online, Isolated: iso, IRQCPUs: rep.CPUsUsed,
		Saturated: snap.Saturated, NetRx: kubelet.NetRxRates(snap), Reserved: reserved})
	if err != nil {
		return unknown(err.Error())
	}
	return kubeletReport{dec.Judge(pin, p.Mode)}
}

// runUndo removes what nodekeeper stored, as its state file records it:
// kubelet's runtime AllowedCPUs= on the unit it names (while the unit still
// holds what nodekeeper stored) and the v1 cpuset cgroup. IRQ masks are left
// as they are. A pin nodekeeper did not store is left unless --force.
func runUndo(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("undo", env)
	var g globals
	g.register(fs)
	force := fs.Bool("force", false, "also reset an AllowedCPUs= that nodekeeper's state file does not record as its own")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		fmt.Fprintln(env.Stderr, "usage: nodekeeper undo [--force]")
		return 2
	}
	fail := func(a ...any) int {
		fmt.Fprintln(env.Stderr, append(append([]any{"nodekeeper:"}, a...), "(nothing was changed)")...)
		return 1
	}
	cfg, err := loadConfig(g.configFile)
	if err != nil {
		return fail("config:", err)
	}
	h, err := hostfs.New(g.paths)
	if err != nil {
		return fail(err)
	}
	// What nodekeeper stored, and on which unit, is in its state file.
	path := h.Root(state.RelPath)
	st, err := state.Read(path)
	if err != nil {
		return fail("cannot read the state file:", err)
	}
	unit, stored, ours := cfg.Kubelet.Unit, cpuset.Set{}, false
	if st != nil {
		var sp state.StoredPin
		if sp, ours = st.Kubelet.StoredPin(); ours {
			unit = sp.Unit
			if stored, err = cpuset.ParseList(sp.AllowedCPUs); err != nil {
				return fail(fmt.Sprintf("the state file %s records a stored AllowedCPUs= %q: %v", path, sp.AllowedCPUs, err))
			}
		}
	}
	_, cgErr := os.Stat(h.Cgroup("cpuset", kubelet.CgroupName)) // nodekeeper's by its name alone
	if !ours && !*force && cgErr != nil {
		fmt.Fprintf(env.Stdout, "nothing of nodekeeper's to remove: its state file records no pin "+
			"(--force resets %s's AllowedCPUs= anyway)\n", unit)
		return 0
	}
	p := &kubelet.Pinner{FS: h, Unit: unit, Mode: kubelet.DetectMode(h)}
	if ours || *force {
		if p.Units, err = dialSystemd(ctx); err != nil {
			return fail("cannot reach systemd over D-Bus:", err)
		}
	}
	removed, err := p.Undo(ctx, stored, *force)
	if !removed.Nothing() {
		fmt.Fprintln(env.Stdout, "removed nodekeeper's kubelet pin:", removed)
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper:", err)
		return 1
	}
	switch {
	case !removed.Left.IsEmpty():
		fmt.Fprintf(env.Stdout, "left %s AllowedCPUs=%s in place: nodekeeper stored %s, someone changed it since "+
			"(--force resets it)\n", unit, removed.Left, stored)
	case removed.Nothing():
		fmt.Fprintf(env.Stdout, "nothing of nodekeeper's left to remove: %s holds no AllowedCPUs= of its own\n", unit)
	}
	if ours {
		st.Kubelet = state.Kubelet{}
		if err := state.Write(path, st); err != nil {
			fmt.Fprintln(env.Stderr, "nodekeeper: the state file still records the pin (it could not be updated):", err)
		}
	}
	return 0
}

type softirqReport struct{ symptoms.Report }

func (r softirqReport) verdict() check.Verdict       { return r.Verdict }
func (r softirqReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

type compactionReport struct{ compaction.Report }

func (r compactionReport) verdict() check.Verdict       { return r.Verdict }
func (r compactionReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// checkSoftirq: the daemon's result when fresh, else two samples --window
// apart, judged by the configured thresholds.
func checkSoftirq(ctx context.Context, e checkEnv) reporter {
	if raw, v, ok := freshReport(e, symptoms.CheckName); ok {
		return rawReport{raw, v}
	}
	snap, err := symptoms.Sample(ctx, e.h, symptoms.ConfigFrom(e.cfg), e.window, symptoms.SampleOptions{Clock: e.clk})
	if err != nil {
		return plainVerdict{Check: symptoms.CheckName, Status: check.Unknown, Message: check.Short("cannot sample softirq load: " + err.Error())}
	}
	return softirqReport{snap.Report()}
}

// checkCompaction: the daemon's result when fresh, else one buddyinfo read.
func checkCompaction(_ context.Context, e checkEnv) reporter {
	if raw, v, ok := freshReport(e, compaction.CheckName); ok {
		return rawReport{raw, v}
	}
	rep, err := compaction.CheckOnce(e.h, compaction.ConfigFrom(e.cfg, false))
	if err != nil {
		return plainVerdict{Check: compaction.CheckName, Status: check.Unknown, Message: check.Short("cannot judge fragmentation: " + err.Error())}
	}
	return compactionReport{rep}
}
