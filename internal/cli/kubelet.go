package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/config"
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

// freshReport returns the daemon's last report of a check when it is fresh.
func freshReport(h *hostfs.FS, name string) (json.RawMessage, check.Verdict, bool) {
	st, err := state.Read(h.Root(state.RelPath))
	if err != nil || st == nil {
		return nil, check.Verdict{}, false
	}
	c, ok := st.Checks[name]
	if !ok || !c.Fresh(time.Now()) || len(c.Report) == 0 {
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
// else a live judgement (one IRQ check, NET_RX over the window, systemd).
func checkKubelet(ctx context.Context, h *hostfs.FS, cfg config.Config, window time.Duration) reporter {
	if raw, v, ok := freshReport(h, kubelet.Name); ok {
		return rawReport{raw, v}
	}
	unknown := func(msg string) reporter {
		return plainVerdict{Check: kubelet.Name, Status: check.Unknown, Message: check.Short(msg)}
	}
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
	rep := checkIRQ(ctx, h, cfg, window).(irqReport)
	if rep.Status == check.Unknown {
		return unknown("IRQ placement unknown: " + rep.Message)
	}
	rates, err := kubelet.SampleNetRx(ctx, h, clock.Real{}, window)
	if err != nil {
		return unknown(err.Error())
	}
	iso, _ := h.IsolatedCPUs()
	reserved, _, _ := kubelet.Reserved(h)
	in := kubelet.Inputs{Online: rep.Online, Isolated: iso, IRQCPUs: rep.CPUsUsed, NetRx: rates, Reserved: reserved,
		MinCPUs: cfg.Kubelet.MinCPUs}
	c := kubelet.Choose(in)
	if cfg.Kubelet.Pinning == config.PinningStatic {
		if c, err = kubelet.Static(cfg.Kubelet.CPUs, rep.Online); err != nil {
			return unknown(err.Error())
		}
		c.NetRx = kubelet.NetRxCPUs(in)
	}
	return kubeletReport{kubelet.Judge(cfg.Kubelet.Pinning, pin, in, c, p.Mode)}
}

// runUndo removes everything nodekeeper applied: kubelet's runtime
// AllowedCPUs= and its v1 cpuset cgroup. IRQ masks are left as they are.
func runUndo(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("undo", env)
	var g globals
	g.register(fs)
	force := fs.Bool("force", false, "also reset AllowedCPUs= that nodekeeper's state file does not record as its own")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return 2
	}
	cfg, err := loadConfig(g.configFile)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper: config:", err)
		return 1
	}
	h, err := hostfs.New(g.paths)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper:", err)
		return 1
	}
	// What nodekeeper stored, and on which unit, is in its state file.
	path := h.Root(state.RelPath)
	st, err := state.Read(path)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper: cannot read the state file:", err)
		return 1
	}
	unit := cfg.Kubelet.Unit
	ours := st != nil && st.Kubelet.Ours()
	if ours && st.Kubelet.Unit != "" {
		unit = st.Kubelet.Unit
	}
	mode := kubelet.DetectMode(h)
	if !ours && !*force {
		// The v1 cpuset cgroup is nodekeeper's by its name alone.
		if mode != kubelet.ModeCgroupV1 {
			fmt.Fprintf(env.Stdout, "nothing of nodekeeper's to remove: its state file records no pin on %s "+
				"(--force resets %s's AllowedCPUs= anyway)\n", unit, unit)
			return 0
		}
	}
	units, err := dialSystemd(ctx)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper: cannot reach systemd over D-Bus:", err)
		return 1
	}
	p := &kubelet.Pinner{FS: h, Units: units, Unit: unit, Mode: mode}
	if err := p.Undo(ctx); err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper:", err)
		return 1
	}
	if ours {
		st.Kubelet = state.Kubelet{}
		if err := state.Write(path, st); err != nil {
			fmt.Fprintln(env.Stderr, "nodekeeper: the pin is removed, but the state file could not be updated:", err)
		}
	}
	fmt.Fprintf(env.Stdout, "removed kubelet's pin: %s AllowedCPUs reset (runtime)", unit)
	if p.Mode == kubelet.ModeCgroupV1 {
		fmt.Fprintf(env.Stdout, "; cpuset cgroup %s removed", kubelet.CgroupName)
	}
	fmt.Fprintln(env.Stdout)
	return 0
}

type softirqReport struct{ symptoms.Report }

func (r softirqReport) verdict() check.Verdict       { return r.Verdict }
func (r softirqReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

type compactionReport struct{ compaction.Report }

func (r compactionReport) verdict() check.Verdict       { return r.Verdict }
func (r compactionReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// checkSoftirq: the daemon's result when fresh, else two samples --window apart.
func checkSoftirq(ctx context.Context, h *hostfs.FS, cfg config.Config, window time.Duration) reporter {
	if raw, v, ok := freshReport(h, symptoms.CheckName); ok {
		return rawReport{raw, v}
	}
	scfg := symptoms.Config{SoftirqBusyThreshold: cfg.Symptoms.SoftirqBusyThreshold, Window: window,
		SqueezePerSecond: cfg.Symptoms.SqueezePerSecond, CgroupWarn: uint64(cfg.Symptoms.CgroupWarn),
		KubeletSystemCPUWarn: cfg.Symptoms.KubeletSystemCPUWarn}
	snap, err := symptoms.Sample(ctx, h, scfg, window, symptoms.SampleOptions{})
	if err != nil {
		return plainVerdict{Check: symptoms.CheckName, Status: check.Unknown, Message: check.Short("cannot sample softirq load: " + err.Error())}
	}
	return softirqReport{snap.Report()}
}

// checkCompaction: the daemon's result when fresh, else one buddyinfo read.
func checkCompaction(_ context.Context, h *hostfs.FS, cfg config.Config, _ time.Duration) reporter {
	if raw, v, ok := freshReport(h, compaction.CheckName); ok {
		return rawReport{raw, v}
	}
	rep, err := compaction.CheckOnce(h, compaction.Config{Mode: compaction.Mode(cfg.Compaction.Mode),
		CheckInterval: cfg.Compaction.CheckInterval, Order: cfg.Compaction.Order,
		UnusableIndexThreshold: cfg.Compaction.UnusableIndexThreshold, SafetyInterval: cfg.Compaction.SafetyInterval,
		MinInterval: cfg.Compaction.MinInterval})
	if err != nil {
		return plainVerdict{Check: compaction.CheckName, Status: check.Unknown, Message: check.Short("cannot judge fragmentation: " + err.Error())}
	}
	return compactionReport{rep}
}
