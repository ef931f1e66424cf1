package systemd

import (
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends the daemon's own state to systemd (sd_notify): READY=1,
// STATUS=, RELOADING=1, STOPPING=1 and WATCHDOG=1. When the process does not
// run under systemd with a notify socket (NOTIFY_SOCKET unset) every method is
// a no-op that returns nil.
//
// The watchdog is meant to be fed by the daemon's own main loop while it makes
// progress, every WatchdogInterval()/2, and never tied to the node's health.
type Notifier struct{}

// NewNotifier returns a Notifier for this process.
func NewNotifier() *Notifier { return &Notifier{} }

// Ready says start-up (or a reload) is complete.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Status sets the one-line status shown by systemctl status. Line breaks are
// replaced by spaces: each line of a notification is one field.
func (n *Notifier) Status(s string) error {
	return n.send("STATUS=" + oneLine(s))
}

// Reloading says the daemon is reloading its configuration (SIGHUP); call
// Ready when done. It carries MONOTONIC_USEC, which Type=notify-reload needs.
func (n *Notifier) Reloading() error {
	return n.send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Stopping says the daemon is shutting down.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Watchdog feeds systemd's watchdog.
func (n *Notifier) Watchdog() error { return n.send(daemon.SdNotifyWatchdog) }

// WatchdogInterval is the unit's WatchdogSec= when systemd expects watchdog
// pings from this process; false when it does not (or the environment is
// malformed). Ping at half of it.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

func (n *Notifier) send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("notify systemd (%s): %w", strings.SplitN(state, "\n", 2)[0], err)
	}
	return nil
}

var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\x00", "")

func oneLine(s string) string { return lineBreaks.Replace(s) }
