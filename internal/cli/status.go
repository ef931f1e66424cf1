package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irqbalance"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/status"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

func init() { extraCommands["status"] = runStatus }

// runStatus is `nodekeeper status`: the per-CPU picture.
func runStatus(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("status", env)
	var g globals
	g.register(fs)
	output := fs.String("output", "text", "text or json")
	window := fs.Duration("window", time.Second, "how long rates are measured over")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 || (*output != "text" && *output != "json") || *window <= 0 {
		fmt.Fprintln(env.Stderr, "usage: nodekeeper status [--output text|json] [--window 1s]")
		return 2
	}
	cfg, err := loadConfig(g.configFile)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper: config:", err, "(showing with the defaults)")
		cfg = config.Default()
	}
	h, err := hostfs.New(g.paths)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper:", err)
		return 1
	}
	warn := func(msg string) { fmt.Fprintln(env.Stderr, "nodekeeper:", msg) }
	v, err := gatherStatus(ctx, checkEnv{h: h, cfg: cfg, window: *window, clk: env.clock()}, warn)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper:", err)
		return 1
	}
	if *output == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return 1
		}
		return 0
	}
	color := env.IsTerminal && (env.Getenv == nil || env.Getenv("NO_COLOR") == "")
	if err := status.Render(env.Stdout, v, status.Style{Color: color}); err != nil {
		return 1
	}
	return 0
}

// gatherStatus builds the picture: the daemon's symptom snapshot when it is
// fresh (taken over the configured symptoms.window), else one sampled over
// the window, judged by the configured thresholds. Sources that cannot be
// read are told to warn and left out.
func gatherStatus(ctx context.Context, e checkEnv, warn func(string)) (status.View, error) {
	h, cfg := e.h, e.cfg
	now := e.clk.Now()
	rep := checkIRQ(ctx, e).(irqReport).Report
	if rep.Online.IsEmpty() {
		return status.View{}, fmt.Errorf("cannot read the host: %s", rep.Message)
	}
	st, err := state.Read(h.Root(state.RelPath))
	if err != nil {
		warn("the daemon's state file cannot be read (shown without it): " + err.Error())
		st = nil
	}
	window := e.window
	snap, ok := daemonSnapshot(st, now)
	if ok {
		window = snap.Span
	} else if snap, err = symptoms.Sample(ctx, h, symptoms.ConfigFrom(cfg), e.window, symptoms.SampleOptions{Clock: e.clk}); err != nil {
		snap = symptoms.Snapshot{Errors: []string{err.Error()}}
	}
	iso, err := h.IsolatedCPUs()
	if err != nil {
		warn("cannot read the isolated CPUs (none are shown as isolated): " + err.Error())
	}
	in := status.Inputs{Now: now, IRQ: rep, Snapshot: snap, Isolated: iso, State: st, Window: window}
	if st != nil {
		in.Fresh = st.Stopped.IsZero() && now.Sub(st.Updated) < 2*cfg.IRQ.CheckInterval+10*time.Second
	} else {
		st = &state.State{}
	}
	// Live facts from systemd and dpkg, when they can be had, win over the state file.
	if inst, err := irqbalance.InstalledVersion(h); err == nil && inst.Version != "" {
		st.Irqbalance.Version = inst.Version
		st.Irqbalance.KnownBuggy, st.Irqbalance.Why = irqbalance.KnownBuggy(inst.Version)
	}
	kub := status.Kubelet{Note: "systemd not reachable: kubelet's CPUs unknown"}
	if units, err := dialSystemd(ctx); err == nil {
		if u, err := units.Unit(ctx, irqbalance.Unit); err == nil {
			st.Irqbalance.ActiveState, st.Irqbalance.MainPID = u.ActiveState, u.MainPID
			if !u.Exists() {
				st.Irqbalance.ActiveState = "not installed"
			}
		}
		p := &kubelet.Pinner{FS: h, Units: units, Unit: cfg.Kubelet.Unit, Mode: kubelet.DetectMode(h)}
		switch pin, err := p.Read(ctx); {
		case err != nil:
			kub = status.Kubelet{Note: "cannot read " + cfg.Kubelet.Unit + ": " + err.Error()}
		case !pin.Unit.Exists():
			kub = status.Kubelet{Note: "no " + cfg.Kubelet.Unit + " on this node"}
		default:
			kub = status.Kubelet{Known: true, CPUs: pin.Running(), Pinned: st.Kubelet.Pinned, Mode: string(p.Mode)}
			if pin.Allowed.IsEmpty() {
				kub.CPUs = pin.Allowed
			}
		}
	} else if st.Kubelet.Pinned {
		kub = status.Kubelet{Note: "pinned by nodekeeper to " + st.Kubelet.CPUs + " (from its state file)"}
	}
	in.Kubelet = kub
	if in.State != nil {
		in.State = st
	} else if st.Irqbalance.Version != "" || st.Irqbalance.ActiveState != "" {
		in.State = st // live facts only; Fresh stays false
	}
	return status.Build(in), nil
}

// daemonSnapshot is the symptom watchers' snapshot from the daemon's state
// file while it is fresh: taken over the configured window by the daemon.
func daemonSnapshot(st *state.State, now time.Time) (symptoms.Snapshot, bool) {
	c, ok := st.FreshCheck(symptoms.CheckName, now)
	if !ok {
		return symptoms.Snapshot{}, false
	}
	var r struct {
		Snapshot *symptoms.Snapshot `json:"snapshot"`
	}
	if err := json.Unmarshal(c.Report, &r); err != nil || r.Snapshot == nil || !r.Snapshot.Ready {
		return symptoms.Snapshot{}, false
	}
	return *r.Snapshot, true
}
