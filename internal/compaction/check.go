package compaction

import (
	"fmt"
	"math"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/policy"
)

// CheckName is the compaction check's name.
const CheckName check.Name = "compaction"

// Action is compaction as a repair (label action of remediations_total).
const Action policy.Action = "compaction"

// Report is the compaction check's answer: the verdict, the nodes that make
// it a problem and every node's indices.
type Report struct {
	check.Verdict
	ProblemNodes []int       `json:"problem_nodes,omitempty"`
	Nodes        []NodeIndex `json:"nodes,omitempty"`
}

func newReport(st check.Status, msg string) Report {
	return Report{Verdict: check.Verdict{Check: CheckName, Status: st, Message: check.Short(msg)}}
}

// NodeState is what the daemon knows about one node.
type NodeState struct {
	NodeIndex
	// AboveSince is when the index was first seen above the threshold in the
	// current episode (zero when it is not above).
	AboveSince time.Time `json:"above_since,omitzero"`
	// CanCompact is false when the kernel offers no compaction file for it.
	CanCompact bool `json:"can_compact"`
	// LastAttempt paces minInterval: the last compaction started (or, in
	// dry-run, decided).
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastResult  *Result   `json:"last_result,omitempty"`
}

// State is the Manager's state, for the daemon's state file and the check.
type State struct {
	Config     Config      `json:"config"`
	Updated    time.Time   `json:"updated,omitzero"` // the last Decide
	NextSafety time.Time   `json:"next_safety,omitzero"`
	Running    bool        `json:"running"`
	Nodes      []NodeState `json:"nodes"`
}

// Fresh reports whether the state is recent enough to judge from: younger
// than twice the check interval.
func (s State) Fresh(now time.Time) bool {
	if s.Updated.IsZero() || s.Config.CheckInterval <= 0 {
		return false
	}
	age := now.Sub(s.Updated)
	return age >= -time.Minute && age < 2*s.Config.CheckInterval
}

// State returns a copy of the Manager's state.
func (m *Manager) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := State{Config: m.cfg, Updated: m.updated, NextSafety: m.nextSafety, Running: m.running}
	for _, ni := range m.latest {
		ns := m.node(ni.Node)
		_, can := m.targetLocked(ni.Node)
		s := NodeState{NodeIndex: ni, AboveSince: ns.aboveSince, CanCompact: can, LastAttempt: ns.lastAttempt}
		if ns.last != nil {
			r := *ns.last
			s.LastResult = &r
		}
		st.Nodes = append(st.Nodes, s)
	}
	return st
}

// Restore takes pacing and history from a state saved by an earlier run (a
// restart must not compact again at once, nor forget the safety net).
func (m *Manager) Restore(st State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !st.NextSafety.IsZero() && st.Config.SafetyInterval == m.cfg.SafetyInterval {
		m.nextSafety = st.NextSafety
	}
	for _, s := range st.Nodes {
		ns := m.node(s.Node)
		ns.lastAttempt = s.LastAttempt
		ns.aboveSince = s.AboveSince
		if s.LastResult != nil {
			r := *s.LastResult
			ns.last = &r
		}
	}
}

// Report judges the Manager's current state.
func (m *Manager) Report() Report { return m.State().Report() }

// Report is the compaction check judged from a (fresh) state: a node is a
// problem when its index is above the threshold and compaction is not
// possible (mode off, no compaction file) or ran in this episode and did not
// help (failed, or left the index above the threshold). A node above the
// threshold whose compaction is still to come is fine.
func (s State) Report() Report {
	if s.Updated.IsZero() {
		return newReport(check.Unknown, "compaction: no buddyinfo read yet")
	}
	return judge(s.Config, s.Nodes)
}

// CheckOnce is the compaction check without a fresh state: one read of
// buddyinfo, where a node is a problem only when its index is above the
// threshold and compaction is not possible.
func CheckOnce(fsys *hostfs.FS, cfg Config) (Report, error) {
	var buf []byte
	zones, err := readBuddyinfo(fsys, &buf)
	if err != nil {
		return newReport(check.Unknown, "compaction: "+err.Error()), err
	}
	nodes := Indices(zones, cfg.Order)
	states := make([]NodeState, len(nodes))
	for i, ni := range nodes {
		_, can := CompactPath(fsys, ni.Node)
		states[i] = NodeState{NodeIndex: ni, CanCompact: can}
	}
	return judge(cfg, states), nil
}

func judge(cfg Config, nodes []NodeState) Report {
	if len(nodes) == 0 {
		return newReport(check.Unknown, "compaction: no NUMA node in buddyinfo")
	}
	th := cfg.UnusableIndexThreshold
	var problems []int
	var firstMsg, pendingMsg string
	worst := -1
	for i, n := range nodes {
		if worst < 0 || n.Unusable > nodes[worst].Unusable {
			worst = i
		}
		if n.Unusable <= th {
			continue
		}
		head := fmt.Sprintf("node %d: %s of free memory unusable at order %d", n.Node, pct(n.Unusable), cfg.Order)
		var why string
		switch r := n.LastResult; {
		case cfg.Mode == ModeOff:
			why = "compaction off"
		case !n.CanCompact:
			why = "kernel cannot compact"
		case r != nil && !r.Start.Before(n.AboveSince) && r.Err != nil:
			why = "compaction failed"
		case r != nil && !r.Start.Before(n.AboveSince) && r.IndexAfter > th:
			why = "compaction did not help"
		default:
			if pendingMsg == "" {
				pendingMsg = head + ", compaction pending"
			}
			continue
		}
		problems = append(problems, n.Node)
		if firstMsg == "" {
			firstMsg = head + ", " + why
		}
	}
	var r Report
	switch {
	case len(problems) > 0:
		if extra := len(problems) - 1; extra > 0 {
			firstMsg += fmt.Sprintf(" (+%d nodes)", extra)
		}
		r = newReport(check.Problem, firstMsg)
	case pendingMsg != "":
		r = newReport(check.OK, pendingMsg)
	default:
		w := nodes[worst]
		r = newReport(check.OK, fmt.Sprintf("memory fragmentation ok: worst node %d, %s unusable at order %d",
			w.Node, pct(w.Unusable), cfg.Order))
	}
	r.ProblemNodes = problems
	for _, n := range nodes {
		r.Nodes = append(r.Nodes, n.NodeIndex)
	}
	return r
}

// pct is x as a whole percentage, rounded down (so 99.9 % never reads 100 %).
func pct(x float64) string { return fmt.Sprintf("%.0f%%", math.Floor(x*100+1e-9)) }
