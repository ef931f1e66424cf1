package freeze

// Outcome is what became of the NIC IRQ spread after a VM pause (label
// outcome of pause_to_verified_seconds, and the state file's pause record).
type Outcome string

// Outcomes of a pause.
const (
	OutcomeRepaired  Outcome = "repaired"   // a problem was seen and repaired
	OutcomeAlreadyOK Outcome = "already_ok" // the spread was fine after the pause
	OutcomeFailed    Outcome = "failed"     // the repair failed, was refused, or was not verified
)

// Outcomes are every Outcome.
var Outcomes = []Outcome{OutcomeRepaired, OutcomeAlreadyOK, OutcomeFailed}
