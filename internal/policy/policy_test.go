package policy

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func limits() Limits {
	return Limits{Cooldown: 2 * time.Minute, MaxPerHour: 3, BackoffBase: 5 * time.Minute, BackoffMax: 20 * time.Minute}
}

func TestCooldownFromOwnHistoryAndFromOutside(t *testing.T) {
	g := NewGate(limits())
	if d := g.Begin(t0, time.Time{}, false); !d.Allowed {
		t.Fatalf("first repair: %+v", d)
	}
	g.End(true)
	d := g.Begin(t0.Add(time.Minute), time.Time{}, false)
	if d.Allowed || d.Result != SkippedCooldown || d.Reason != "cooldown" || !d.Until.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("within cool-down: %+v", d)
	}
	// irqbalance restarted by someone else at t0+2m30s: the cool-down runs from there.
	outside := t0.Add(150 * time.Second)
	if d := g.Begin(t0.Add(3*time.Minute), outside, false); d.Allowed || d.Result != SkippedCooldown {
		t.Fatalf("cool-down from an outside restart: %+v", d)
	}
	if d := g.Begin(t0.Add(5*time.Minute), outside, false); !d.Allowed {
		t.Fatalf("after cool-down: %+v", d)
	}
}

func TestCapPerHour(t *testing.T) {
	g := NewGate(limits())
	now := t0
	for i := 0; i < 3; i++ {
		if d := g.Begin(now, time.Time{}, false); !d.Allowed {
			t.Fatalf("repair %d: %+v", i, d)
		}
		g.End(true)
		now = now.Add(3 * time.Minute)
	}
	d := g.Begin(now, time.Time{}, false)
	if d.Allowed || d.Result != SkippedCap || !d.Until.Equal(t0.Add(time.Hour)) {
		t.Fatalf("fourth repair within the hour: %+v", d)
	}
	if d := g.Begin(t0.Add(time.Hour+time.Second), time.Time{}, false); !d.Allowed {
		t.Fatalf("an hour after the first: %+v", d)
	}
	if d := NewGate(Limits{MaxPerHour: 0}).Begin(t0, time.Time{}, false); d.Result != SkippedCap {
		t.Fatalf("maxRepairsPerHour 0 never repairs: %+v", d)
	}
}

func TestBackoffDoublesAndResets(t *testing.T) {
	g := NewGate(limits())
	now := t0
	var waits []time.Duration
	for i := 0; i < 4; i++ {
		d := g.Begin(now, time.Time{}, false)
		for !d.Allowed {
			if d.Result == SkippedCap {
				now = now.Add(time.Hour)
			} else {
				now = d.Until
			}
			d = g.Begin(now, time.Time{}, false)
		}
		g.End(false)
		next := g.Begin(now.Add(g.limits.Cooldown), time.Time{}, false)
		if next.Reason != "backoff" {
			t.Fatalf("after failure %d: %+v", i+1, next)
		}
		waits = append(waits, next.Until.Sub(now))
	}
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 20 * time.Minute}
	for i := range want {
		if waits[i] != want[i] {
			t.Errorf("backoff after failure %d = %v, want %v", i+1, waits[i], want[i])
		}
	}
	now = now.Add(time.Hour)
	if d := g.Begin(now, time.Time{}, false); !d.Allowed {
		t.Fatal(d)
	}
	g.End(true)
	if g.Failures() != 0 {
		t.Error("a success resets the backoff")
	}
	if d := g.Begin(now.Add(3*time.Minute), time.Time{}, false); !d.Allowed {
		t.Errorf("after a success only the cool-down applies: %+v", d)
	}
}

func TestDryRunAndBusy(t *testing.T) {
	g := NewGate(limits())
	d := g.Begin(t0, time.Time{}, true)
	if d.Allowed || d.Result != SkippedDryRun {
		t.Fatalf("dry run: %+v", d)
	}
	if d := g.Begin(t0, time.Time{}, false); !d.Allowed {
		t.Fatalf("a dry run leaves no history: %+v", d)
	}
	if d := g.Begin(t0.Add(time.Hour), time.Time{}, false); d.Allowed || d.Result != SkippedBusy {
		t.Fatalf("never two repairs of the same kind at once: %+v", d)
	}
	g.End(true)
}
