// Package state owns the daemon's state file (/run/nodekeeper/state.json):
// what the daemon last saw and did, written atomically after every check and
// action, read by `nodekeeper check` (fresh rate-based results, VF history)
// and `nodekeeper status` (last repairs, pauses).
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

// RelPath is the state file's path under the root file system.
const RelPath = "run/nodekeeper/state.json"

// MaxActions is how many recent actions the file keeps.
const MaxActions = 20

// State is the file's content.
type State struct {
	Version string    `json:"version"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Stopped is when the daemon stopped cleanly (zero while it runs): a
	// stopped daemon's results are no longer its current view, however
	// young, so check and status then look for themselves.
	Stopped    time.Time                  `json:"stopped,omitzero"`
	DryRun     bool                       `json:"dry_run"`
	Checks     map[check.Name]Check       `json:"checks"`
	Actions    []Action                   `json:"actions"`
	Irqbalance Irqbalance                 `json:"irqbalance"`
	VFSeen     map[string]time.Time       `json:"vf_seen,omitempty"`
	Pauses     []Pause                    `json:"pauses,omitempty"`
	Freeze     []FreezeEvent              `json:"freeze_events,omitempty"`
	Kubelet    Kubelet                    `json:"kubelet"`
	Extra      map[string]json.RawMessage `json:"extra,omitempty"`
}

// Check is the last result of one check.
type Check struct {
	Time     time.Time       `json:"time"`
	Interval Duration        `json:"interval"` // the daemon's interval for this check: fresh while younger than twice this
	Status   string          `json:"status"`
	Message  string          `json:"message"`
	Report   json.RawMessage `json:"report,omitempty"`
}

// FreshCheck is the daemon's last result of name when it is fresh at now
// and carries a report; a stopped daemon has no fresh results.
func (s *State) FreshCheck(name check.Name, now time.Time) (Check, bool) {
	if s == nil || !s.Stopped.IsZero() {
		return Check{}, false
	}
	c, ok := s.Checks[name]
	return c, ok && c.Fresh(now) && len(c.Report) > 0
}

// Fresh reports whether the result is younger than twice its interval at now.
func (c Check) Fresh(now time.Time) bool {
	return !c.Time.IsZero() && c.Interval > 0 && now.Sub(c.Time) < 2*time.Duration(c.Interval)
}

// Action is one repair decision or outcome.
type Action struct {
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Result  string    `json:"result"`
	Detail  string    `json:"detail,omitempty"`
	Trigger string    `json:"trigger,omitempty"`
	Seconds float64   `json:"seconds,omitempty"`
}

// Irqbalance is what the daemon knows of the installed irqbalance.
type Irqbalance struct {
	Version     string `json:"version"`
	Source      string `json:"source"`
	KnownBuggy  bool   `json:"known_buggy"`
	Why         string `json:"why,omitempty"`
	ActiveState string `json:"active_state,omitempty"`
	MainPID     uint32 `json:"main_pid,omitempty"`
}

// Kubelet is kubelet's pin: what nodekeeper enforced (Pinned and the
// fields after it: the pin applied and verified) and, apart from that, what
// it stored on the unit (Stored), which can outlive a failed pin.
type Kubelet struct {
	Pinned   bool      `json:"pinned"`
	Unit     string    `json:"unit,omitempty"`
	CPUs     string    `json:"cpus,omitempty"`
	NetRx    string    `json:"netrx_cpus,omitempty"`
	Mode     string    `json:"mode,omitempty"`
	Time     time.Time `json:"time,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Disjoint bool      `json:"disjoint,omitempty"`
	// Stored is set from the moment nodekeeper asks systemd to store
	// AllowedCPUs= until it removed it again — also when the pin failed
	// after systemd stored it (Pinned false): what nodekeeper stored is its
	// own to take away, across restarts (pinning: off, undo, the package's
	// removal), and only while the unit still holds it.
	Stored *StoredPin `json:"stored_pin,omitempty"`
}

// StoredPin is an AllowedCPUs= nodekeeper stored on a unit.
type StoredPin struct {
	Unit        string `json:"unit"`
	AllowedCPUs string `json:"allowed_cpus"` // a CPU list ("2-3,6")
}

// StoredPin returns what nodekeeper stored on kubelet's unit, if anything:
// Stored, or for a file written before Stored existed, the enforced pin.
func (k Kubelet) StoredPin() (StoredPin, bool) {
	switch {
	case k.Stored != nil:
		return *k.Stored, true
	case k.Pinned && k.Unit != "" && k.CPUs != "":
		return StoredPin{Unit: k.Unit, AllowedCPUs: k.CPUs}, true
	}
	return StoredPin{}, false
}

// Ours reports whether kubelet's unit may carry a pin of nodekeeper's.
func (k Kubelet) Ours() bool { _, ok := k.StoredPin(); return ok }

// Pause is one VM pause the daemon recorded.
type Pause struct {
	At          time.Time `json:"at"`
	Seconds     float64   `json:"seconds"`
	Source      string    `json:"source"`
	EventID     string    `json:"event_id,omitempty"`
	Description string    `json:"description,omitempty"`
	Outcome     string    `json:"outcome,omitempty"`
}

// FreezeEvent is a scheduled Freeze for this VM, while it is listed.
type FreezeEvent struct {
	EventID     string `json:"event_id"`
	Status      string `json:"status"`
	NotBefore   string `json:"not_before,omitempty"`
	Description string `json:"description,omitempty"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// AddAction appends a and keeps the newest MaxActions.
func (s *State) AddAction(a Action) {
	s.Actions = append(s.Actions, a)
	if n := len(s.Actions); n > MaxActions {
		s.Actions = append([]Action(nil), s.Actions[n-MaxActions:]...)
	}
}

// Write replaces the file at path atomically (temporary file + rename).
func Write(path string, s *State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*.json")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// Read loads the file; a missing file is (nil, nil).
func Read(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}
