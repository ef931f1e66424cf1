package imds

import (
	"strings"
	"testing"
	"time"
)

// A document of 4 000 events whose ids all change at every poll is hostile
// input: the watcher tracks at most maxTracked of them and says what it
// leaves out in a bounded number of lines, however many polls it lasts.
func TestChurnLogsABoundedNumberOfLines(t *testing.T) {
	x := newFixture(t, func(c *WatcherConfig) { c.ResourceName = "vm-0" })
	x.srv.Churn(4000)
	const polls = 50
	for range polls {
		x.poll(time.Second)
		if n := len(x.w.events); n > maxTracked {
			t.Fatalf("%d events tracked, want at most %d", n, maxTracked)
		}
	}
	lines := strings.Count(x.log.String(), "\n")
	// The first poll may name maxChangesLogged events one by one; then one
	// summary per reason.
	if lines > maxChangesLogged+4 {
		t.Fatalf("%d polls of churn logged %d lines:\n%s", polls, lines, x.log.String())
	}
	if x.log.count("not tracked") == 0 {
		t.Errorf("what was left out was not said:\n%s", x.log.String())
	}
	if got := len(x.w.FreezeEvents()); got == 0 || got > maxTracked {
		t.Errorf("%d Freeze events published", got)
	}
	// The churn ends: the events go, and a later change is said again.
	x.srv.Churn(0)
	x.srv.SetEvents()
	x.poll(time.Second)
	x.srv.Churn(4000)
	x.poll(time.Second)
	if x.log.count("not tracked") < 2 {
		t.Errorf("churn after a calm poll not said again:\n%s", x.log.String())
	}
}
