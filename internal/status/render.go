package status

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

// Style says how to draw: colour only on a terminal, and never with NO_COLOR.
type Style struct {
	Color bool
}

const (
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	green  = "\x1b[32m"
	dim    = "\x1b[2m"
	bold   = "\x1b[1m"
	reset  = "\x1b[0m"
)

func (s Style) paint(code, text string) string {
	if !s.Color || text == "" {
		return text
	}
	return code + text + reset
}

func (s Style) status(st check.Status) string {
	switch st {
	case check.OK:
		return s.paint(green, "ok")
	case check.Problem:
		return s.paint(red+bold, "PROBLEM")
	}
	return s.paint(yellow, string(st))
}

// latencyVerdict is the latency section's verdict line (nil: none).
func latencyVerdict(l *Latency) *check.Verdict {
	if l == nil {
		return nil
	}
	return &l.Verdict
}

// logShare places us on a log scale from 1 µs (0) to limit µs (1).
func logShare(us, limit float64) float64 {
	if us <= 1 || limit <= 1 {
		return 0
	}
	return math.Log(us) / math.Log(limit)
}

// usShort prints microseconds in at most 7 characters (0.2µs, 830µs, 4.1ms, 1.2s).
func usShort(us float64) string {
	switch {
	case us < 10:
		return fmt.Sprintf("%.1fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.1fms", us/1000)
	}
	return fmt.Sprintf("%.1fs", us/1e6)
}

// bar draws a 6-cell bar for a share 0..1.
func bar(share float64) string {
	const cells = 6
	blocks := []rune(" ▏▎▍▌▋▊▉█")
	share = math.Max(0, math.Min(1, share))
	eighths := int(math.Round(share * cells * 8))
	var b strings.Builder
	for i := 0; i < cells; i++ {
		n := min(8, max(0, eighths-8*i))
		if n == 0 {
			b.WriteRune('·')
		} else {
			b.WriteRune(blocks[n])
		}
	}
	return b.String()
}

// human prints a rate in at most 5 characters (0, 950, 12k, 1.2M).
func human(v float64) string {
	switch {
	case v < 0.5:
		return "0"
	case v < 1000:
		return fmt.Sprintf("%.0f", v)
	case v < 10_000:
		return fmt.Sprintf("%.1fk", v/1000)
	case v < 1_000_000:
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.1fM", v/1_000_000)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

// Render writes the picture. Rows are at most 80 columns; beyond 16 CPUs,
// runs of quiet CPUs (no NIC IRQs, no NET_RX or softirq load to speak of,
// nothing wrong) fold into one row.
func Render(w io.Writer, v View, s Style) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%s %d CPUs, %s\n", s.paint(bold, "nodekeeper status:"), v.Online.Len(), v.Time.UTC().Format("2006-01-02 15:04:05 UTC"))
	if v.Daemon.Running {
		dry := ""
		if v.Daemon.DryRun {
			dry = ", dry run"
		}
		p("%s\n", clip(fmt.Sprintf("daemon     running (pid %d, %s, state %s%s)", v.Daemon.PID, v.Daemon.Version, ago(v.Time, v.Daemon.Updated), dry), 80))
	} else {
		p("daemon     %s\n", s.paint(yellow, "not running: live readings only"))
	}
	ib := v.Irqbalance
	switch {
	case ib.Version == "" && ib.ActiveState == "":
		p("irqbalance unknown\n")
	default:
		pid, buggy := "", ""
		if ib.MainPID != 0 {
			pid = fmt.Sprintf(" (pid %d)", ib.MainPID)
		}
		if ib.KnownBuggy {
			buggy = "KNOWN BUGGY: never migrates IRQs"
		}
		room := 80 - len(pid) - len(buggy) - 1
		line := clip(fmt.Sprintf("irqbalance %s %s", orDash(ib.Version), orDash(ib.ActiveState)), room) + pid
		if buggy != "" {
			line += " " + s.paint(red, buggy)
		}
		p("%s\n", line)
	}
	k := v.Kubelet
	switch {
	case !k.Known:
		p("%s\n", clip("kubelet    "+orDash(k.Note), 80))
	case k.CPUs.IsEmpty():
		p("%s\n", clip("kubelet    not pinned (may run on every CPU)"+note(k.Note), 80))
	default:
		by := ""
		if k.Pinned {
			by = " by nodekeeper"
		}
		p("%s\n", clip(fmt.Sprintf("kubelet    pinned%s to %s (%s)", by, k.CPUs, orDash(k.Mode)), 80))
	}
	p("IRQ spread %s: %s\n", s.status(v.IRQ.Status), fit(v.IRQ.Message, 80-len("IRQ spread : ")-len(v.IRQ.Status)))
	p("softirq    %s: %s\n", s.status(v.Softirq.Status), fit(v.Softirq.Message, 80-len("softirq    : ")-len(v.Softirq.Status)))
	for _, e := range v.Freeze {
		p("freeze     %s %s\n", s.paint(yellow, clip(e.Status, 16)), clip(e.EventID+" "+e.Description, 80-len("freeze      ")-min(16, utf8.RuneCountInString(e.Status))))
	}
	if lp := v.LastPause; lp != nil {
		desc := ""
		if lp.EventID != "" {
			desc = " Freeze " + lp.EventID
			if lp.Description != "" {
				desc += " \"" + lp.Description + "\""
			}
		}
		p("%s\n", clip(fmt.Sprintf("last pause %s, %.1fs (%s%s) → %s", ago(v.Time, lp.At), lp.Seconds, lp.Source, desc, orDash(lp.Outcome)), 80))
	}
	for i, a := range v.Repairs {
		label := "repairs   "
		if i > 0 {
			label = "          "
		}
		res := clip(a.Result, 20)
		if res == "success" {
			res = s.paint(green, res)
		} else if strings.HasPrefix(res, "fail") || res == "verify_timeout" {
			res = s.paint(red, res)
		}
		head := fmt.Sprintf("%s %s %s ", label, ago(v.Time, a.Time), clip(orDash(a.Action), 24))
		room := 80 - utf8.RuneCountInString(head) - utf8.RuneCountInString(clip(a.Result, 20)) - 1
		p("%s%s %s\n", head, res, clip(a.Detail, max(room, 1)))
	}
	if v.Compaction != "" {
		p("compaction %s\n", clip(v.Compaction, 69))
	}
	if sn := v.SNAT; sn != nil {
		word := check.Status(clip(string(sn.Status), 7)) // a state file's word may be anything
		shownWord := word
		if word == check.Problem {
			shownWord = "PROBLEM"
		}
		room := 80 - len("snat       ") - utf8.RuneCountInString(string(shownWord)) - 1
		p("snat       %s %s\n", s.status(word), clip(sn.Message, room))
		if len(sn.Top) > 0 {
			p("           %s\n", clip("top: "+strings.Join(sn.Top, ", "), 69))
		}
	}
	for _, line := range []struct {
		label string
		v     *check.Verdict
	}{{"dns", v.DNS}, {"conntrack", v.Conntrack}, {"latency", latencyVerdict(v.Latency)}} {
		if d := line.v; d != nil {
			word := check.Status(clip(string(d.Status), 7))
			shownWord := word
			if word == check.Problem {
				shownWord = "PROBLEM"
			}
			room := 80 - 11 - utf8.RuneCountInString(string(shownWord)) - 1
			p("%-10s %s %s\n", line.label, s.status(word), clip(d.Message, room))
		}
	}
	if l := v.Latency; l != nil && len(l.CPUs) > 0 {
		// Two CPUs a line: "cpu 3 ███▌·· 4.1ms"; the bar is logarithmic from
		// 1 µs to latency.p99Problem (full: a problem).
		for i := 0; i < len(l.CPUs); i += 2 {
			line := "           p99"
			for _, c := range l.CPUs[i:min(i+2, len(l.CPUs))] {
				line += fmt.Sprintf("  cpu %-3d %s %-7s", c.CPU, bar(logShare(c.P99us, l.P99ProblemUs)), usShort(c.P99us))
			}
			p("%s\n", strings.TrimRight(line, " "))
		}
	}
	p("\n%s\n", s.paint(dim, "CPU  NIC queue IRQs           NET_RX/s        softirq         drop/s sq/s kub"))
	rows := v.CPUs
	for i := 0; i < len(rows); i++ {
		r := rows[i]
		if len(rows) > 16 && quiet(r) {
			j := i
			for j+1 < len(rows) && quiet(rows[j+1]) && rows[j+1].Kubelet == r.Kubelet && rows[j+1].CPU == rows[j].CPU+1 {
				j++
			}
			if j > i {
				label := fmt.Sprintf("%d-%d", r.CPU, rows[j].CPU)
				p("%s\n", s.paint(dim, fmt.Sprintf("%-7s %-21s %s", label, "·", "quiet"+kubeNote(v.Kubelet.Known, r.Kubelet))))
				i = j
				continue
			}
		}
		p("%s\n", row(r, v.Kubelet.Known, s))
	}
	p("%s\n", s.paint(dim, fmt.Sprintf("rates over %s; ! = too many NIC IRQs or softirq-saturated; k = kubelet may run", v.Window)))
	for _, n := range v.Notes {
		p("%s\n", s.paint(dim, "note: "+n))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func quiet(r CPU) bool {
	return len(r.IRQs) == 0 && r.NetRxPerSec < 100 && r.SoftirqShare < 0.05 && r.DropsPerSec == 0 &&
		r.SqueezePerSec == 0 && !r.Saturated && !r.Isolated && !r.Banned
}

func kubeNote(known, k bool) string {
	switch {
	case !known:
		return ""
	case k:
		return ", kubelet may run here"
	}
	return ", no kubelet"
}

// row is one CPU: "  4 ! eth0 comp0,2,4,6,8      45k ██████  98% ██████    0  120  -  banned"
func row(r CPU, kubeKnown bool, s Style) string {
	mark := " "
	if r.IRQCrowded || r.Saturated {
		mark = s.paint(red+bold, "!")
	}
	irqs := clip(queueList(r.IRQs), 21)
	if irqs == "" {
		irqs = "·"
	}
	share := fmt.Sprintf("%3.0f%%", 100*r.SoftirqShare)
	sbar := bar(r.SoftirqShare)
	if r.Saturated {
		share, sbar = s.paint(red, share), s.paint(red, sbar)
	}
	kub := " -"
	switch {
	case !kubeKnown:
		kub = " ?"
	case r.Kubelet:
		kub = " k"
	}
	var flags []string
	if r.Isolated {
		flags = append(flags, "isolated")
	}
	if r.Banned {
		flags = append(flags, "banned")
	}
	drops, sq := "      ", "    "
	if r.DropsPerSec > 0 {
		drops = s.paint(red, fmt.Sprintf("%6s", human(r.DropsPerSec)))
	}
	if r.SqueezePerSec > 0 {
		sq = s.paint(yellow, fmt.Sprintf("%4s", human(r.SqueezePerSec)))
	}
	// NET_RX bar: log-scaled from 100/s (empty) to 100k/s (full).
	rx := 0.0
	if r.NetRxPerSec > 100 {
		rx = math.Log10(r.NetRxPerSec/100) / 3
	}
	return strings.TrimRight(fmt.Sprintf("%3d %s %-21s %5s %s %s %s %s %s %s %s",
		r.CPU, mark, irqs, human(r.NetRxPerSec), bar(rx), share, sbar, drops, sq, kub, strings.Join(flags, ",")), " ")
}

// fit cuts s to n runes where a line must stay within 80 columns; the PROBLEM
// word is longer than "ok", so the room depends on the status.
func fit(s string, n int) string {
	if n < 10 {
		n = 10
	}
	return clip(s, n)
}

func clip(s string, n int) string {
	if n < 1 {
		return ""
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func note(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}
