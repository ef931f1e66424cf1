// Package irq owns the NIC queue IRQ spread: discovering each NIC's queue
// IRQs (sysfs, netlink on a live host, Azure netvsc + VF pairs), the CPUs
// irqbalance would spread them over, the verdict of DESIGN.md's spread rule,
// and the round-robin spread plan with its snapshot/write/rollback path.
package irq

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/printable"
)

// Name is this check's name on the command line, in JSON and in metrics.
const Name check.Name = "irq"

// ActionSpread is the repair that writes a round-robin spread of the NIC
// queue IRQs itself.
const ActionSpread policy.Action = "irq_spread"

// Options are the irq.* settings the check uses.
type Options struct {
	Filter         Filter
	MinSpreadRatio float64       // irq.minSpreadRatio
	VFMissingAfter time.Duration // irq.vfMissingAfter
}

// NICIRQ is one queue IRQ in the check's report.
type NICIRQ struct {
	IRQ             int        `json:"irq"`
	Name            string     `json:"name"`
	Interface       string     `json:"interface"`
	DeviceInterface string     `json:"device_interface"`
	Queue           string     `json:"queue"`
	CPUs            cpuset.Set `json:"cpus"`
	EffectiveCPUs   cpuset.Set `json:"effective_cpus"`
	CPU             int        `json:"cpu"`
}

// InterfaceVerdict is the spread rule applied to one interface.
type InterfaceVerdict struct {
	Interface       string       `json:"interface"`
	Status          check.Status `json:"status"`
	Message         string       `json:"message"`
	QueueIRQs       int          `json:"queue_irqs"`
	EligibleCPUs    cpuset.Set   `json:"eligible_cpus"`
	CPUsUsed        cpuset.Set   `json:"cpus_used"`
	ExpectedMinCPUs int          `json:"expected_min_cpus"`
	MaxOnOneCPU     int          `json:"max_on_one_cpu"`
	MaxAllowed      int          `json:"max_allowed_on_one_cpu"`
	VFMissingFor    string       `json:"vf_missing_for,omitempty"`
}

// Report is `nodekeeper check irq`'s result. Its JSON is the contract of
// DESIGN.md; "interfaces" (the verdict per interface) and "banned_cpus" are
// additions. Top-level eligible_cpus and cpus_used are unions over the
// interfaces; expected_min_cpus is the largest per-interface expectation.
type Report struct {
	check.Verdict
	NICIRQs         []NICIRQ           `json:"nic_irqs"`
	EligibleCPUs    cpuset.Set         `json:"eligible_cpus"`
	CPUsUsed        cpuset.Set         `json:"cpus_used"`
	ExpectedMinCPUs int                `json:"expected_min_cpus"`
	VMBusChannels   []VMBusChannel     `json:"vmbus_channels"`
	Interfaces      []InterfaceVerdict `json:"interfaces"`
	BannedCPUs      cpuset.Set         `json:"banned_cpus"`
	BannedSource    string             `json:"banned_source,omitempty"`

	Online cpuset.Set `json:"-"`
	Plan   Plan       `json:"-"` // the repair a policy may apply
	NICs   []NIC      `json:"-"`
}

// Checker runs the IRQ check. It remembers when each netvsc interface last had
// a VF, so it is meant to live as long as the daemon (or be seeded).
type Checker struct {
	fs     *hostfs.FS
	disc   *Discoverer
	opts   Options
	now    func() time.Time
	vfSeen map[string]time.Time
}

// NewChecker returns a Checker over h. now is the clock (time.Now in main).
func NewChecker(h *hostfs.FS, links LinkLister, opts Options, now func() time.Time) *Checker {
	return &Checker{fs: h, disc: NewDiscoverer(h, links, opts.Filter), opts: opts, now: now, vfSeen: map[string]time.Time{}}
}

// VFSeen returns when each netvsc interface last had its VF (for the state file).
func (c *Checker) VFSeen() map[string]time.Time {
	out := make(map[string]time.Time, len(c.vfSeen))
	for k, v := range c.vfSeen {
		out[k] = v
	}
	return out
}

// SeedVFSeen restores VF history, e.g. from the daemon's state file.
func (c *Checker) SeedVFSeen(m map[string]time.Time) {
	for k, v := range m {
		if v.After(c.vfSeen[k]) {
			c.vfSeen[k] = v
		}
	}
}

// Run reads the host and judges the spread. It never writes. A read error
// gives status unknown with the reason in the message.
func (c *Checker) Run(ctx context.Context) *Report {
	rep := &Report{Verdict: check.Verdict{Check: Name}, NICIRQs: []NICIRQ{}, VMBusChannels: []VMBusChannel{}, Interfaces: []InterfaceVerdict{}}
	fail := func(err error) *Report {
		rep.Status, rep.Message = check.Unknown, check.Short("cannot judge IRQ spread: "+err.Error())
		return rep
	}
	online, err := c.fs.OnlineCPUs()
	if err != nil {
		return fail(err)
	}
	rep.Online = online
	banned, err := ReadBanned(c.fs)
	if err != nil {
		return fail(err)
	}
	rep.BannedCPUs, rep.BannedSource = banned.CPUs, banned.Source
	nics, err := c.disc.Discover(ctx)
	if err != nil {
		return fail(err)
	}
	rep.NICs = nics
	now := c.now()
	offset := 0
	for _, nic := range nics {
		rep.VMBusChannels = append(rep.VMBusChannels, nic.Channels...)
		if nic.Netvsc && nic.VF {
			c.vfSeen[nic.Interface] = now
		}
		var nodeCPUs cpuset.Set
		if nic.NUMANode >= 0 {
			if nodeCPUs, _, err = c.fs.NodeCPUs(nic.NUMANode); err != nil {
				return fail(err)
			}
		}
		eligible := Eligible(online, nodeCPUs, banned.CPUs)
		var irqs []NICIRQ
		for _, q := range nic.Queues {
			aff, err := c.disc.r.Affinity(q.IRQ)
			if err != nil {
				return fail(err)
			}
			irqs = append(irqs, NICIRQ{
				IRQ: q.IRQ, Name: q.Name, Interface: nic.Interface, DeviceInterface: nic.DeviceInterface,
				Queue: q.Queue, CPUs: aff.Requested, EffectiveCPUs: aff.Effective,
				CPU: AssignedCPU(aff, online),
			})
		}
		v := Judge(nic.Interface, irqs, eligible, c.opts.MinSpreadRatio)
		if nic.Netvsc && !nic.VF {
			if seen, ok := c.vfSeen[nic.Interface]; ok && now.Sub(seen) >= c.opts.VFMissingAfter {
				gone := now.Sub(seen).Round(time.Second)
				v.Status, v.VFMissingFor = check.Problem, gone.String()
				v.Message = fmt.Sprintf("accelerated networking VF of %s missing for %s", printable.Escape(nic.Interface), gone)
			}
		}
		if len(irqs) == 0 && v.Status == check.OK {
			continue // nothing to judge: an interface without queue IRQs is not listed
		}
		rep.Interfaces = append(rep.Interfaces, v)
		rep.NICIRQs = append(rep.NICIRQs, irqs...)
		rep.EligibleCPUs = rep.EligibleCPUs.Union(eligible)
		rep.CPUsUsed = rep.CPUsUsed.Union(v.CPUsUsed)
		rep.ExpectedMinCPUs = max(rep.ExpectedMinCPUs, v.ExpectedMinCPUs)
		rep.Plan.Moves = append(rep.Plan.Moves, roundRobin(irqs, eligible, offset)...)
		offset += len(irqs)
	}
	rep.Status, rep.Message = summarize(rep.Interfaces)
	return rep
}

// AssignedCPU is the CPU an IRQ is assigned to: the single CPU of its
// requested mask (an idle IRQ's effective CPU may be stale), else its
// effective CPU (a wide mask is delivered to one CPU), else the first online
// CPU of the mask; -1 if none.
func AssignedCPU(a hostfs.Affinity, online cpuset.Set) int {
	if a.Requested.Len() == 1 {
		return a.Requested.First()
	}
	if !a.Effective.IsEmpty() {
		return a.Effective.First()
	}
	return a.Requested.Intersect(online).First()
}

// Judge applies the spread rule to one interface's queue IRQs: with n IRQs and
// e eligible CPUs, a problem when fewer than max(1, ⌊ratio·min(n,e)⌋) distinct
// CPUs are used, or when one CPU holds max(3, 2·⌈n/e⌉) or more of them.
func Judge(iface string, irqs []NICIRQ, eligible cpuset.Set, ratio float64) InterfaceVerdict {
	n, e := len(irqs), eligible.Len()
	v := InterfaceVerdict{Interface: iface, Status: check.OK, QueueIRQs: n, EligibleCPUs: eligible}
	per := map[int]int{}
	var used []int
	for _, q := range irqs {
		if q.CPU < 0 {
			continue
		}
		if per[q.CPU] == 0 {
			used = append(used, q.CPU)
		}
		per[q.CPU]++
		v.MaxOnOneCPU = max(v.MaxOnOneCPU, per[q.CPU])
	}
	v.CPUsUsed = cpuset.New(used...)
	if n == 0 {
		v.Message = iface + ": no NIC queue IRQs"
		return v
	}
	v.ExpectedMinCPUs = max(1, int(math.Floor(ratio*float64(min(n, e))+1e-9)))
	v.MaxAllowed = max(3, 2*((n+e-1)/max(e, 1)))
	distinct := v.CPUsUsed.Len()
	switch {
	case e <= 1:
		v.Message = fmt.Sprintf("%d NIC IRQs of %s: one eligible CPU, nothing to spread", n, printable.Escape(iface))
	case distinct < v.ExpectedMinCPUs || v.MaxOnOneCPU >= v.MaxAllowed:
		v.Status = check.Problem
		v.Message = fmt.Sprintf("%d NIC IRQs of %s on %d of %d CPUs (%s)", n, printable.Escape(iface), distinct, e, v.CPUsUsed.List())
	default:
		v.Message = fmt.Sprintf("%d NIC IRQs of %s on %d of %d CPUs", n, printable.Escape(iface), distinct, e)
	}
	v.Message = check.Short(v.Message)
	return v
}

// summarize makes the one-line message: the first problem, or every
// interface when all are fine.
func summarize(vs []InterfaceVerdict) (check.Status, string) {
	if len(vs) == 0 {
		return check.OK, "no NIC queue IRQs found: nothing to judge"
	}
	var problems []InterfaceVerdict
	for _, v := range vs {
		if v.Status == check.Problem {
			problems = append(problems, v)
		}
	}
	switch {
	case len(problems) == 1:
		return check.Problem, problems[0].Message
	case len(problems) > 1:
		names := make([]string, len(problems))
		for i, p := range problems {
			names[i] = p.Interface
		}
		return check.Problem, check.Short(problems[0].Message + "; also " + strings.Join(names[1:], ","))
	case len(vs) == 1:
		return check.OK, vs[0].Message
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%s %d/%d", printable.Escape(v.Interface), v.CPUsUsed.Len(), v.EligibleCPUs.Len())
	}
	return check.OK, check.Short("NIC IRQs spread (CPUs used/eligible): " + strings.Join(parts, ", "))
}

// Plan is a spread repair: a single-CPU mask for each queue IRQ.
type Plan struct {
	Moves []Move
}

// Move sets one IRQ's requested affinity.
type Move struct {
	IRQ       int
	Interface string
	Queue     string
	From      cpuset.Set
	To        cpuset.Set
}

// Changes are the moves that change something.
func (p Plan) Changes() []Move {
	var out []Move
	for _, m := range p.Moves {
		if !m.From.Equal(m.To) {
			out = append(out, m)
		}
	}
	return out
}

// roundRobin spreads irqs over eligible CPUs in ascending order, starting at
// offset (so several NICs do not all start on the first CPU).
func roundRobin(irqs []NICIRQ, eligible cpuset.Set, offset int) []Move {
	cpus := eligible.CPUs()
	if len(cpus) == 0 {
		return nil
	}
	sorted := append([]NICIRQ(nil), irqs...)
	sort.SliceStable(sorted, func(i, j int) bool { return queueLess(sorted[i].Queue, sorted[j].Queue) })
	moves := make([]Move, 0, len(sorted))
	for i, q := range sorted {
		moves = append(moves, Move{IRQ: q.IRQ, Interface: q.Interface, Queue: q.Queue, From: q.CPUs,
			To: cpuset.New(cpus[(i+offset)%len(cpus)])})
	}
	return moves
}
