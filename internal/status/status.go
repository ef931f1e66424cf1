// Package status owns `nodekeeper status`: one screen that shows, per CPU,
// which NIC queue IRQs land there, its NET_RX and softirq load, softnet drops
// and squeezes, whether kubelet may run there and whether it is isolated or
// banned — with irqbalance, the kubelet pin, the last pause and the last
// repairs above it. It reads the live host and the daemon's state file, and
// works without the daemon (it says so).
package status

import (
	"cmp"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/latency"
	"github.com/nodekeeper/nodekeeper/internal/snat"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/printable"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

// View is everything status shows; it is also the JSON output. Build makes
// every string in it that came from outside nodekeeper (NIC and queue names,
// IMDS event ids and descriptions, versions and states read from the host or
// the state file) printable UTF-8 with package printable, clipped to a length
// a person can read, so that neither output can carry terminal escapes,
// newlines or bytes that are not UTF-8.
type View struct {
	Time       time.Time           `json:"time"`
	Online     cpuset.Set          `json:"online_cpus"`
	Daemon     Daemon              `json:"daemon"`
	Irqbalance state.Irqbalance    `json:"irqbalance"`
	Kubelet    Kubelet             `json:"kubelet"`
	IRQ        check.Verdict       `json:"irq"`
	Softirq    check.Verdict       `json:"softirq"`
	CPUs       []CPU               `json:"cpus"`
	LastPause  *state.Pause        `json:"last_pause,omitempty"`
	Freeze     []state.FreezeEvent `json:"freeze_events,omitempty"`
	Repairs    []state.Action      `json:"recent_actions"`
	Compaction string              `json:"compaction,omitempty"`
	SNAT       *SNAT               `json:"snat,omitempty"`
	DNS        *check.Verdict      `json:"dns,omitempty"`
	Conntrack  *check.Verdict      `json:"conntrack,omitempty"`
	Latency    *Latency            `json:"latency,omitempty"`
	Window     time.Duration       `json:"window_ns"`
	Notes      []string            `json:"notes,omitempty"`
}

// SNAT is the daemon's last SNAT scan: its verdict and who spends the ports.
type SNAT struct {
	check.Verdict
	Utilization float64  `json:"utilization"`
	Top         []string `json:"top_sources"` // "namespace/pod 812", most flows first
}

// snatTop is how many sources the status line names.
const snatTop = 3

// Daemon is what is known of the running daemon.
type Daemon struct {
	Running bool      `json:"running"`
	PID     int       `json:"pid,omitempty"`
	Version string    `json:"version,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
	DryRun  bool      `json:"dry_run,omitempty"`
}

// Kubelet is where kubelet may run.
type Kubelet struct {
	Known  bool       `json:"known"`
	CPUs   cpuset.Set `json:"cpus"`
	Pinned bool       `json:"pinned_by_nodekeeper"`
	Mode   string     `json:"mode,omitempty"`
	Note   string     `json:"note,omitempty"`
}

// CPU is one row of the picture.
type CPU struct {
	CPU           int      `json:"cpu"`
	IRQs          []string `json:"nic_irqs"` // "eth0:comp3"
	NetRxPerSec   float64  `json:"net_rx_per_second"`
	SoftirqShare  float64  `json:"softirq_share"`
	Ksoftirqd     float64  `json:"ksoftirqd_share,omitempty"`
	DropsPerSec   float64  `json:"drops_per_second,omitempty"`
	SqueezePerSec float64  `json:"time_squeeze_per_second,omitempty"`
	Saturated     bool     `json:"saturated,omitempty"`
	Kubelet       bool     `json:"kubelet"`
	Isolated      bool     `json:"isolated,omitempty"`
	Banned        bool     `json:"banned,omitempty"`
	IRQCrowded    bool     `json:"irq_crowded,omitempty"` // holds more NIC IRQs than the spread rule allows
}

// Inputs are the sources a View is built from.
type Inputs struct {
	Now      time.Time
	IRQ      *irq.Report
	Snapshot symptoms.Snapshot // two samples over the window
	Isolated cpuset.Set
	State    *state.State // nil when the daemon never ran
	Fresh    bool         // the state file was updated recently
	Kubelet  Kubelet
	Window   time.Duration
}

// Build assembles the view.
func Build(in Inputs) View {
	v := View{Time: in.Now, Online: in.IRQ.Online, IRQ: in.IRQ.Verdict, Kubelet: in.Kubelet, Window: in.Window,
		Softirq: in.Snapshot.Report().Verdict, Repairs: []state.Action{}}
	v.Kubelet.Mode = shown(v.Kubelet.Mode, maxWord)
	v.Kubelet.Note = shown(v.Kubelet.Note, maxText)
	crowded := map[int]bool{}
	for _, iv := range in.IRQ.Interfaces {
		if iv.MaxAllowed == 0 {
			continue
		}
		per := map[int]int{}
		for _, q := range in.IRQ.NICIRQs {
			if q.Interface == iv.Interface && q.CPU >= 0 {
				per[q.CPU]++
			}
		}
		for cpu, n := range per {
			if n >= iv.MaxAllowed || iv.Status == check.Problem && n > 1 {
				crowded[cpu] = true
			}
		}
	}
	byCPU := map[int][]string{}
	for _, q := range in.IRQ.NICIRQs {
		if q.CPU >= 0 {
			byCPU[q.CPU] = append(byCPU[q.CPU], printable.Escape(q.Interface+":"+q.Queue))
		}
	}
	sig := map[int]symptoms.CPUSignal{}
	for _, c := range in.Snapshot.CPUs {
		sig[c.CPU] = c
	}
	for _, cpu := range in.IRQ.Online.CPUs() {
		s := sig[cpu]
		row := CPU{CPU: cpu, IRQs: byCPU[cpu], NetRxPerSec: s.NetRxPerSecond, SoftirqShare: s.SoftirqShare,
			DropsPerSec: s.DropsPerSecond, SqueezePerSec: s.SqueezePerSecond, Saturated: s.Saturated(),
			Isolated: in.Isolated.Contains(cpu), Banned: in.IRQ.BannedCPUs.Contains(cpu), IRQCrowded: crowded[cpu],
			Kubelet: !in.Kubelet.Known || in.Kubelet.CPUs.IsEmpty() || in.Kubelet.CPUs.Contains(cpu)}
		if s.Ksoftirqd != nil && s.Ksoftirqd.Measured {
			row.Ksoftirqd = s.Ksoftirqd.CPUShare
		}
		sort.Strings(row.IRQs)
		v.CPUs = append(v.CPUs, row)
	}
	if st := in.State; st != nil {
		v.Daemon = Daemon{Running: in.Fresh, PID: st.PID, Version: shown(st.Version, maxWord), Updated: st.Updated, DryRun: st.DryRun}
		ib := st.Irqbalance
		ib.Version, ib.Source, ib.Why, ib.ActiveState = shown(ib.Version, maxWord), shown(ib.Source, maxWord), shown(ib.Why, maxText), shown(ib.ActiveState, maxWord)
		v.Irqbalance = ib
		if n := len(st.Pauses); n > 0 {
			p := st.Pauses[n-1]
			p.Source, p.EventID, p.Description, p.Outcome = shown(p.Source, maxWord), shown(p.EventID, maxID), shown(p.Description, maxText), shown(p.Outcome, maxWord)
			v.LastPause = &p
		}
		for _, e := range st.Freeze {
			e.EventID, e.Status, e.NotBefore, e.Description = shown(e.EventID, maxID), shown(e.Status, maxWord), shown(e.NotBefore, maxWord), shown(e.Description, maxText)
			v.Freeze = append(v.Freeze, e)
		}
		for i := len(st.Actions) - 1; i >= 0 && len(v.Repairs) < 5; i-- {
			if a := st.Actions[i]; a.Result != "started" {
				a.Action, a.Result, a.Detail, a.Trigger = shown(a.Action, maxWord), shown(a.Result, maxWord), shown(a.Detail, maxText), shown(a.Trigger, maxText)
				v.Repairs = append(v.Repairs, a)
			}
		}
		if c, ok := st.Checks["compaction"]; ok {
			v.Compaction = shown(c.Status+": "+c.Message, maxText)
		}
		if c, ok := st.Checks[snat.CheckName]; ok {
			v.SNAT = snatView(c)
		}
		v.DNS = verdictOf(st, dnsprobe.CheckName)
		v.Conntrack = verdictOf(st, ctdrops.CheckName)
		if c, ok := st.Checks[latency.Name]; ok {
			v.Latency = latencyView(c)
		}
	}
	if !v.Daemon.Running {
		v.Notes = append(v.Notes, "the daemon is not running (no fresh state file): live readings only")
	}
	return v
}

// verdictOf is the state file's verdict of check name, made printable; nil
// when the daemon recorded none.
func verdictOf(st *state.State, name check.Name) *check.Verdict {
	c, ok := st.Checks[name]
	if !ok {
		return nil
	}
	return &check.Verdict{Check: name, Status: check.Status(shown(c.Status, maxWord)), Message: shown(c.Message, maxText)}
}

// Latency is the NET_RX softirq latency section: the daemon's last verdict
// and the CPUs with the longest p99 wait.
type Latency struct {
	check.Verdict
	Source       string         `json:"source"`
	P99ProblemUs float64        `json:"p99_problem_us"`
	CPUs         []latency.Stat `json:"cpus"` // the latencyTop slowest by p99
}

// latencyTop bounds the CPUs status shows a latency bar for.
const latencyTop = 8

// latencyView is the latency section from the state file's latency check.
func latencyView(c state.Check) *Latency {
	out := &Latency{Verdict: check.Verdict{Check: latency.Name, Status: check.Status(shown(c.Status, maxWord)),
		Message: shown(c.Message, maxText)}, CPUs: []latency.Stat{}}
	var r latency.Report
	if json.Unmarshal(c.Report, &r) != nil {
		return out
	}
	out.Source, out.P99ProblemUs = shown(r.Source, maxWord), r.P99ProblemUs
	cpus := slices.Clone(r.CPUs)
	slices.SortStableFunc(cpus, func(a, b latency.Stat) int { return cmp.Compare(b.P99us, a.P99us) })
	out.CPUs = append(out.CPUs, cpus[:min(len(cpus), latencyTop)]...)
	return out
}

// snatView is the SNAT section from the state file's snat check.
func snatView(c state.Check) *SNAT {
	out := &SNAT{Verdict: check.Verdict{Check: snat.CheckName, Status: check.Status(shown(c.Status, maxWord)),
		Message: shown(c.Message, maxText)}, Top: []string{}}
	var r snat.Report
	if json.Unmarshal(c.Report, &r) != nil {
		return out
	}
	out.Utilization = r.Utilization
	for _, s := range r.Sources {
		if len(out.Top) == snatTop {
			break
		}
		out.Top = append(out.Top, shown(snat.SourceName(s), maxWord)+" "+strconv.Itoa(s.Flows))
	}
	return out
}

// Clip lengths of strings from outside, in bytes after escaping: a word (a
// version, a state, a result), an IMDS event id, and a sentence.
const (
	maxWord = 40
	maxID   = 40
	maxText = 160
)

// shown makes s, which came from outside, printable and at most max bytes.
func shown(s string, max int) string { return printable.Clip(s, max) }

// queueList shortens "eth0:comp0 eth0:comp2 eth0:comp4" to "eth0 comp0,2,4".
func queueList(irqs []string) string {
	type group struct {
		iface  string
		queues []string
	}
	var groups []group
	for _, s := range irqs {
		iface, q, _ := strings.Cut(s, ":")
		if len(groups) == 0 || groups[len(groups)-1].iface != iface {
			groups = append(groups, group{iface: iface})
		}
		g := &groups[len(groups)-1]
		g.queues = append(g.queues, q)
	}
	var parts []string
	for _, g := range groups {
		sort.SliceStable(g.queues, func(i, j int) bool { return naturalLess(g.queues[i], g.queues[j]) })
		var qs []string
		prefix := ""
		for _, q := range g.queues {
			p := strings.TrimRight(q, "0123456789")
			if p == prefix {
				qs = append(qs, q[len(p):])
			} else {
				qs = append(qs, q)
				prefix = p
			}
		}
		parts = append(parts, g.iface+" "+strings.Join(qs, ","))
	}
	return strings.Join(parts, "; ")
}

func naturalLess(a, b string) bool {
	pa, pb := strings.TrimRight(a, "0123456789"), strings.TrimRight(b, "0123456789")
	if pa != pb {
		return pa < pb
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
