// Package hup owns the process's SIGHUP subscription for `nodekeeper run`.
//
// Until a Go program listens for SIGHUP, the runtime's answer to it is to
// exit (status 129). A config-management agent that reloads right after a
// start would then kill the daemon it meant to reload. Package initialisers
// run before main — some of the daemon's dependencies take milliseconds —
// so the subscription is made here, in an initialiser with no dependencies
// but the standard library's signal package, which the runtime runs before
// the heavy ones (see `GODEBUG=inittrace=1 nodekeeper run`). It is the one
// piece of process-wide state in nodekeeper, as a signal disposition is.
package hup

import (
	"os"
	"os/signal"
	"syscall"
)

var ch chan os.Signal

func init() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		ch = make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
	}
}

// Signals delivers the SIGHUPs received since the process started, or is
// nil when the process is not `nodekeeper run`.
func Signals() <-chan os.Signal { return ch }
