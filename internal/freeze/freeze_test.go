package freeze_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/pause"
)

type unit struct {
	f    *clock.Fake
	c    *freeze.Correlator
	mu   sync.Mutex
	outs []freeze.Resume
}

func newUnit(t *testing.T) *unit {
	t.Helper()
	u := &unit{f: clock.NewFake(t0)}
	c, err := freeze.New(freeze.Config{Clock: u.f, Emit: func(r freeze.Resume) {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.outs = append(u.outs, r)
	}})
	if err != nil {
		t.Fatal(err)
	}
	u.c = c
	return u
}

func (u *unit) resumes() []freeze.Resume {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.outs
	u.outs = nil
	return out
}

// clockPause reports a pause of length l ending now.
func (u *unit) clockPause(l time.Duration, k pause.Kind) {
	u.c.Pause(pause.Pause{At: u.f.Now(), Length: l, Kind: k})
}

func freezeEvent(id string, st imds.EventStatus) imds.Event {
	return imds.Event{ID: id, Type: imds.Freeze, Status: st, Resources: []string{"vm-0"}, Description: "maintenance " + id}
}

func TestNewNeedsEmit(t *testing.T) {
	if _, err := freeze.New(freeze.Config{}); err == nil {
		t.Error("New without Emit succeeded")
	}
	if _, err := freeze.New(freeze.Config{Emit: func(freeze.Resume) {}, MergeWindow: -1}); err == nil {
		t.Error("negative window accepted")
	}
}

func TestClockPausesAndMerging(t *testing.T) {
	u := newUnit(t)
	u.clockPause(10*time.Second, pause.KindGap)
	rs := u.resumes()
	if len(rs) != 1 || rs[0].Source != freeze.SourceClock || rs[0].Length != 10*time.Second || !rs[0].At.Equal(t0) || rs[0].EventID != "" {
		t.Fatalf("resumes %+v", rs)
	}
	// The wall clock's resync step 2 s later: the same pause.
	u.f.Advance(2 * time.Second)
	u.clockPause(9*time.Second, pause.KindStep)
	// Began 5 s after the first resume: still the same.
	u.f.Advance(4 * time.Second)
	u.clockPause(time.Second+500*time.Millisecond, pause.KindGap)
	if rs := u.resumes(); len(rs) != 0 {
		t.Fatalf("merged signals gave %+v", rs)
	}
	// Began 6 s after the first resume: a new pause.
	u.f.Advance(8 * time.Second)
	u.clockPause(2*time.Second, pause.KindGap)
	if rs := u.resumes(); len(rs) != 1 {
		t.Fatalf("second pause gave %+v", rs)
	}
}

func TestClockPauseCarriesTheStartedEvent(t *testing.T) {
	u := newUnit(t)
	u.c.FreezeEvents([]imds.Event{freezeEvent("a", imds.Scheduled)})
	u.f.Advance(time.Minute)
	u.c.FreezeStarted(freezeEvent("b", imds.Started), u.f.Now().Add(-time.Second))
	u.f.Advance(time.Second)
	u.c.FreezeStarted(freezeEvent("c", imds.Started), u.f.Now().Add(-time.Second))
	u.f.Advance(time.Second)
	u.clockPause(5*time.Second, pause.KindGap)
	rs := u.resumes()
	if len(rs) != 1 || rs[0].EventID != "c" || rs[0].Description != "maintenance c" {
		t.Fatalf("resumes %+v, want the most recently started event", rs)
	}
	// Both Started events are covered; the Scheduled one was cancelled.
	u.c.FreezeRemoved(freezeEvent("b", imds.Started), true)
	u.c.FreezeRemoved(freezeEvent("c", imds.Started), true)
	u.c.FreezeRemoved(freezeEvent("a", imds.Scheduled), false)
	if rs := u.resumes(); len(rs) != 0 {
		t.Fatalf("removals gave %+v", rs)
	}
}

func TestStartedAfterTheClockPause(t *testing.T) {
	const unknown = time.Duration(-1 << 63)
	tests := []struct {
		name      string
		since     time.Duration // when IMDS last answered before showing Started, relative to the pause
		seenAfter time.Duration // when the Started status was seen, after the pause
		covered   bool
	}{
		{"next poll", -time.Second, time.Second, true},
		{"within the window, since unknown", unknown, 59 * time.Second, true},
		{"after an IMDS outage", -time.Second, 10 * time.Minute, true},
		{"long after, IMDS answered after the pause", 5 * time.Minute, 10 * time.Minute, false},
		{"long after, since unknown", unknown, 2 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t)
			u.f.Advance(time.Hour)
			pausedAt := u.f.Now()
			u.clockPause(5*time.Second, pause.KindGap)
			u.resumes()
			u.f.Advance(tt.seenAfter)
			var since time.Time
			if tt.since != unknown {
				since = pausedAt.Add(tt.since)
			}
			u.c.FreezeStarted(freezeEvent("a", imds.Started), since)
			u.f.Advance(10 * time.Minute)
			u.c.FreezeRemoved(freezeEvent("a", imds.Started), true)
			rs := u.resumes()
			if tt.covered && len(rs) != 0 {
				t.Errorf("covered event gave %+v", rs)
			}
			if !tt.covered && (len(rs) != 1 || rs[0].Source != freeze.SourceIMDS) {
				t.Errorf("uncovered event gave %+v", rs)
			}
		})
	}
}

func TestIMDSFallback(t *testing.T) {
	u := newUnit(t)
	u.c.FreezeEvents([]imds.Event{freezeEvent("a", imds.Scheduled)})
	if got := u.c.Active(); len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("Active %+v", got)
	}
	u.c.FreezeStarted(freezeEvent("a", imds.Started), t0)
	u.c.FreezeEvents([]imds.Event{freezeEvent("a", imds.Started)})
	u.f.Advance(10 * time.Minute)
	u.c.FreezeRemoved(freezeEvent("a", imds.Started), true)
	u.c.FreezeEvents(nil)
	rs := u.resumes()
	if len(rs) != 1 || rs[0] != (freeze.Resume{Source: freeze.SourceIMDS, EventID: "a", Description: "maintenance a"}) {
		t.Fatalf("resumes %+v", rs)
	}
	if got := u.c.Active(); len(got) != 0 {
		t.Errorf("Active %+v", got)
	}
	// A removal reported without a Started before it (the correlator joined
	// late) still counts when IMDS says it was started.
	u.c.FreezeRemoved(freezeEvent("z", imds.Started), true)
	if rs := u.resumes(); len(rs) != 1 || rs[0].EventID != "z" {
		t.Fatalf("resumes %+v", rs)
	}
}

func TestEventsStartedTogetherAreOneImpact(t *testing.T) {
	u := newUnit(t)
	u.c.FreezeStarted(freezeEvent("a", imds.Started), t0)
	u.f.Advance(time.Second)
	u.c.FreezeStarted(freezeEvent("b", imds.Started), t0)
	u.f.Advance(time.Minute)
	u.c.FreezeRemoved(freezeEvent("a", imds.Started), true)
	u.f.Advance(5 * time.Minute)
	u.c.FreezeStarted(freezeEvent("c", imds.Started), t0) // b is still Started and covered
	u.c.FreezeRemoved(freezeEvent("b", imds.Started), true)
	u.c.FreezeRemoved(freezeEvent("c", imds.Started), true)
	if rs := u.resumes(); len(rs) != 1 || rs[0].EventID != "a" {
		t.Fatalf("resumes %+v", rs)
	}
	// Later, a new one on its own: a new pause.
	u.f.Advance(time.Hour)
	u.c.FreezeStarted(freezeEvent("d", imds.Started), u.f.Now())
	u.c.FreezeRemoved(freezeEvent("d", imds.Started), true)
	if rs := u.resumes(); len(rs) != 1 || rs[0].EventID != "d" {
		t.Fatalf("resumes %+v", rs)
	}
}

func TestForgottenEventsArePruned(t *testing.T) {
	u := newUnit(t)
	u.c.FreezeStarted(freezeEvent("a", imds.Started), t0)
	u.c.FreezeEvents([]imds.Event{freezeEvent("a", imds.Started)})
	// The VM's name became known: a was never ours. It leaves the list
	// without a removal, and does not make later events look covered.
	u.c.FreezeEvents(nil)
	u.f.Advance(time.Hour)
	u.c.FreezeStarted(freezeEvent("b", imds.Started), u.f.Now())
	u.c.FreezeRemoved(freezeEvent("b", imds.Started), true)
	if rs := u.resumes(); len(rs) != 1 || rs[0].EventID != "b" {
		t.Fatalf("resumes %+v", rs)
	}
}

func TestConcurrentSignals(t *testing.T) {
	u := newUnit(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				switch (i + j) % 4 {
				case 0:
					u.c.Pause(pause.Pause{At: t0.Add(time.Duration(j) * time.Minute), Length: 3 * time.Second, Kind: pause.KindGap})
				case 1:
					u.c.FreezeStarted(freezeEvent("a", imds.Started), t0)
				case 2:
					u.c.FreezeEvents([]imds.Event{freezeEvent("a", imds.Started)})
					_ = u.c.Active()
				case 3:
					u.c.FreezeRemoved(freezeEvent("a", imds.Started), true)
				}
			}
		})
	}
	wg.Wait()
}

// FuzzCorrelator plays arbitrary sequences of signals: the correlator never
// panics, never gives more than one resume per Freeze removal, and never more
// resumes than there were signals that can make one.
func FuzzCorrelator(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{1, 17, 33, 3, 19, 0, 0, 0, 35, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		u := newUnit(t)
		ids := []string{"a", "b", "c"}
		makers := 0
		removed := map[string]int{}
		for _, op := range ops {
			id := ids[int(op>>4)%len(ids)]
			switch op & 7 {
			case 0:
				u.f.Advance(time.Duration(op) * 100 * time.Millisecond)
			case 1:
				u.clockPause(time.Duration(op)*100*time.Millisecond, pause.KindGap)
				makers++
			case 2:
				u.c.FreezeStarted(freezeEvent(id, imds.Started), u.f.Now().Add(-time.Duration(op)*time.Second))
			case 3:
				u.c.FreezeRemoved(freezeEvent(id, imds.Started), true)
				removed[id]++
				makers++
			case 4:
				// started=false after a FreezeStarted contradicts the watcher;
				// the correlator goes by what it saw.
				u.c.FreezeRemoved(freezeEvent(id, imds.Scheduled), false)
				removed[id]++
				makers++
			case 5:
				u.c.FreezeEvents([]imds.Event{freezeEvent(id, imds.Scheduled)})
			case 6:
				u.c.FreezeEvents(nil)
			case 7:
				u.f.Advance(time.Duration(op) * time.Minute)
			}
		}
		rs := u.resumes()
		if len(rs) > makers {
			t.Fatalf("%d resumes from %d signals", len(rs), makers)
		}
		perID := map[string]int{}
		for _, r := range rs {
			if r.Source == freeze.SourceIMDS {
				perID[r.EventID]++
				if !r.At.IsZero() || r.Length != 0 {
					t.Fatalf("imds resume %+v", r)
				}
			}
		}
		for id, n := range perID {
			if n > removed[id] {
				t.Fatalf("%d imds resumes for %s removed %d times", n, id, removed[id])
			}
		}
	})
}
