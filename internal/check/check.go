// Package check owns what every nodekeeper check shares: the verdict (status
// and a one-line message, the node-problem-detector contract) and its exit
// codes. The checks themselves live with the concern they judge (irq, kubelet,
// compaction, symptoms); the daemon and `nodekeeper check` run the same code.
package check

import "unicode/utf8"

// Name names a check: its `nodekeeper check NAME` argument, its key in the
// state file and its check label in metrics. Each check's package declares
// its own (irq.Name, compaction.CheckName…); a plain string does not
// convert silently, so a wrong label does not compile.
type Name string

// Status is a check's verdict.
type Status string

const (
	OK      Status = "ok"
	Problem Status = "problem"
	Unknown Status = "unknown" // the check could not judge (unreadable files, bad config…)
)

// ExitCode follows node-problem-detector's custom plugin convention.
func (s Status) ExitCode() int {
	switch s {
	case OK:
		return 0
	case Problem:
		return 1
	default:
		return 2
	}
}

// Verdict is the part of every check's JSON object that the contract fixes.
// Check-specific reports embed it, so its fields sit at the top level.
type Verdict struct {
	Check   Name   `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// MaxMessage is node-problem-detector's default max_output_length: a check's
// text output must fit in it.
const MaxMessage = 80

// Short cuts s to at most MaxMessage bytes on a rune boundary, marking the cut.
func Short(s string) string {
	if len(s) <= MaxMessage {
		return s
	}
	cut := MaxMessage - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Combine folds several statuses as `check all` does: problem if any says
// problem, else unknown if any says unknown, else ok.
func Combine(ss ...Status) Status {
	out := OK
	for _, s := range ss {
		switch s {
		case Problem:
			return Problem
		case Unknown:
			out = Unknown
		}
	}
	return out
}
