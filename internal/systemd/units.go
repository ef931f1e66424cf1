// Package systemd owns nodekeeper's conversation with systemd: narrow interfaces
// over go-systemd's D-Bus client (read a unit's state, restart or signal it, set
// its AllowedCPUs=, watch its MainPID and ActiveState through per-unit match
// rules), reconnection when the bus connection drops, and the sd_notify
// readiness, status and watchdog messages of the daemon itself.
//
// Other packages depend on the small interfaces (UnitReader, Restarter,
// CPUPinner, Watcher, or Units for all of them) and test against Fake; *Conn is
// the real implementation.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// UnitReader reads a unit's live state.
type UnitReader interface {
	// Unit returns the state of the named unit ("kubelet.service"). A unit that
	// does not exist is not an error: its LoadState is "not-found".
	Unit(ctx context.Context, name string) (UnitState, error)
}

// Restarter restarts units and signals their main process.
type Restarter interface {
	// Restart restarts the unit (starting it when it is not running) and waits
	// for the job to finish. mode is a job mode such as "replace" ("" means
	// "replace"). A job result other than "done" is a *JobError; one caused by
	// the unit's start rate limit also matches ErrStartLimit.
	Restart(ctx context.Context, name, mode string) error
	// TryRestart restarts the unit only if it is running, and waits for the job.
	TryRestart(ctx context.Context, name string) error
	// Signal sends sig to the unit's main process only.
	Signal(ctx context.Context, name string, sig syscall.Signal) error
}

// CPUPinner sets a unit's AllowedCPUs=.
type CPUPinner interface {
	// SetAllowedCPUs sets AllowedCPUs= of the unit. The empty set resets it (all
	// CPUs). With runtime the setting lasts until reboot (a drop-in under
	// /run/systemd/system.control); otherwise it is persistent (/etc).
	SetAllowedCPUs(ctx context.Context, name string, cpus cpuset.Set, runtime bool) error
}

// Watcher reports changes of units' MainPID and ActiveState.
type Watcher interface {
	// Watch reports a Change whenever the MainPID or ActiveState of one of the
	// named units changes, and one Change with Reconnected set per unit after
	// the watch had to be re-established (changes may have been missed: read
	// the state again). The channel is closed when ctx ends.
	Watch(ctx context.Context, names ...string) (<-chan Change, error)
}

// Units is everything the daemon asks of systemd.
type Units interface {
	UnitReader
	Restarter
	CPUPinner
	Watcher
}

// UnitState is a unit's live state as systemd reports it.
type UnitState struct {
	Name        string
	LoadState   string // "loaded", "not-found", "masked", "error", …
	ActiveState string // "active", "inactive", "failed", "activating", …
	SubState    string // "running", "dead", …
	// InactiveExitTimestamp is when the unit last left the inactive state: the
	// "up since" that cool-downs are measured from. Zero when it never did.
	InactiveExitTimestamp time.Time

	// Service properties: zero for units that are not services.
	MainPID      uint32
	ControlGroup string
	Result       string // Service.Result: "success", "exit-code", "start-limit-hit", …
	NRestarts    uint32 // automatic restarts (Restart=) since the unit was loaded
	// AllowedCPUs is the configured AllowedCPUs= (empty: not set, or not
	// supported); EffectiveCPUs is what the kernel enforces (empty where
	// AllowedCPUs= is not enforced, e.g. without a cgroup v2 cpuset).
	AllowedCPUs   cpuset.Set
	EffectiveCPUs cpuset.Set
}

// Exists reports whether the unit is known to systemd (it has a unit file, or
// it is a transient or generated unit).
func (s UnitState) Exists() bool { return s.LoadState != "" && s.LoadState != "not-found" }

// Active reports whether the unit is active (running, for a service).
func (s UnitState) Active() bool { return s.ActiveState == "active" }

// Change is one reported change of a watched unit.
type Change struct {
	Unit        string
	ActiveState string
	SubState    string
	MainPID     uint32
	// Reconnected marks a change reported after the watch was re-established
	// (bus connection lost, or systemd came back on the bus): the fields hold
	// the state read then, and changes in between may have been missed.
	Reconnected bool
}

var (
	// ErrUnavailable is wrapped by errors that mean systemd cannot be reached
	// over D-Bus right now (the bus connection is down and being re-established,
	// or systemd is not on the bus). Retrying later can succeed.
	ErrUnavailable = errors.New("systemd not reachable over D-Bus")
	// ErrJobFailed is wrapped by every *JobError.
	ErrJobFailed = errors.New("systemd job did not succeed")
	// ErrStartLimit is wrapped by a *JobError caused by the unit's start rate
	// limit (StartLimitIntervalSec=/StartLimitBurst=). systemd refuses further
	// starts until the interval passes or the unit's failed state is reset.
	ErrStartLimit = errors.New("unit start rate limit hit")
	// ErrNoSuchUnit is wrapped when systemd says the unit does not exist.
	ErrNoSuchUnit = errors.New("no such unit")
	// ErrNoProcess is wrapped when a signal has no process to go to (the unit
	// is not running).
	ErrNoProcess = errors.New("unit has no such process")
	// ErrMasked is wrapped when the unit is masked.
	ErrMasked = errors.New("unit is masked")
)

// JobError is a systemd job that ended with a result other than "done".
type JobError struct {
	Job    string // "restart", "try-restart"
	Unit   string
	Result string // the job result: "failed", "canceled", "timeout", "dependency", …
	// ServiceResult is the unit's Service.Result read after the job, when the
	// unit is a service ("start-limit-hit", "exit-code", …).
	ServiceResult string
}

func (e *JobError) Error() string {
	msg := fmt.Sprintf("%s %s: job %s", e.Job, e.Unit, e.Result)
	switch e.ServiceResult {
	case "", "success":
	case "start-limit-hit":
		msg += " (start rate limit hit)"
	default:
		msg += " (service result " + e.ServiceResult + ")"
	}
	return msg
}

// Unwrap makes errors.Is match ErrJobFailed, and ErrStartLimit when the start
// rate limit caused the failure.
func (e *JobError) Unwrap() []error {
	if e.ServiceResult == "start-limit-hit" {
		return []error{ErrJobFailed, ErrStartLimit}
	}
	return []error{ErrJobFailed}
}

// jobError maps a job result to nil ("done") or a *JobError.
func jobError(job, unit, result, serviceResult string) error {
	if result == "done" {
		return nil
	}
	return &JobError{Job: job, Unit: unit, Result: result, ServiceResult: serviceResult}
}

// D-Bus error names that map to the package's sentinel errors.
var busErrors = map[string]error{
	"org.freedesktop.systemd1.NoSuchUnit":       ErrNoSuchUnit,
	"org.freedesktop.systemd1.NoSuchProcess":    ErrNoProcess,
	"org.freedesktop.systemd1.UnitMasked":       ErrMasked,
	"org.freedesktop.DBus.Error.ServiceUnknown": ErrUnavailable,
	"org.freedesktop.DBus.Error.NameHasNoOwner": ErrUnavailable,
	"org.freedesktop.DBus.Error.Disconnected":   ErrUnavailable,
}

// busErrorName returns the D-Bus error name carried by err, or "".
func busErrorName(err error) string {
	var v godbus.Error
	if errors.As(err, &v) {
		return v.Name
	}
	var p *godbus.Error
	if errors.As(err, &p) && p != nil {
		return p.Name
	}
	return ""
}

// mapError wraps err with what was being done and, when the D-Bus error name
// has a meaning here, with the matching sentinel error.
func mapError(what string, err error) error {
	if err == nil {
		return nil
	}
	if s, ok := busErrors[busErrorName(err)]; ok && !errors.Is(err, s) {
		return fmt.Errorf("%s: %w: %w", what, s, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unitPath is the D-Bus object path of a unit, escaped the way systemd does it:
// "kubelet.service" → /org/freedesktop/systemd1/unit/kubelet_2eservice.
func unitPath(name string) godbus.ObjectPath {
	return godbus.ObjectPath("/org/freedesktop/systemd1/unit/" + sddbus.PathBusEscape(name))
}

func isService(name string) bool { return strings.HasSuffix(name, ".service") }

// stateFromProps builds a UnitState from the property maps of the Unit and
// (for services) the Service interface. Missing or mistyped properties stay
// zero: an older systemd lacks some of them.
func stateFromProps(name string, unit, service map[string]any) UnitState {
	st := UnitState{
		Name:        name,
		LoadState:   propString(unit, "LoadState"),
		ActiveState: propString(unit, "ActiveState"),
		SubState:    propString(unit, "SubState"),
	}
	if us, ok := unit["InactiveExitTimestamp"].(uint64); ok {
		st.InactiveExitTimestamp = usecTime(us)
	}
	if service == nil {
		return st
	}
	st.MainPID, _ = service["MainPID"].(uint32)
	st.ControlGroup = propString(service, "ControlGroup")
	st.Result = propString(service, "Result")
	st.NRestarts, _ = service["NRestarts"].(uint32)
	if b, ok := service["AllowedCPUs"].([]byte); ok {
		st.AllowedCPUs = cpuset.FromBytes(b)
	}
	if b, ok := service["EffectiveCPUs"].([]byte); ok {
		st.EffectiveCPUs = cpuset.FromBytes(b)
	}
	return st
}

func propString(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// usecTime converts systemd's realtime microsecond timestamps (0 = never).
func usecTime(us uint64) time.Time {
	if us == 0 || us > 1<<62 {
		return time.Time{}
	}
	return time.UnixMicro(int64(us))
}
