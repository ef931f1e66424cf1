// Package freeze owns deciding that the VM was paused and has resumed. It
// correlates the two signals nodekeeper has — the pause detector (clock gaps
// and steps) and the IMDS Freeze events for this VM — and emits exactly one
// Resume per pause, whichever signals that pause gave.
//
// The rules:
//   - A clock pause is a resume (source "clock"), unless it began within
//     MergeWindow of the previous clock resume: a gap followed by the wall
//     clock's resync step is one pause. It carries the id of the Freeze event
//     for this VM that is Started, if any, and covers every Started one.
//   - A Freeze event seen Started after a clock resume that came after IMDS's
//     previous answer (the event turned Started, the VM paused, IMDS was
//     asked again — maybe only after an outage), or within EventWindow of
//     one, is covered by that resume — unless its lifecycle was announced
//     (first seen Scheduled) after that resume: an event announced after a
//     pause cannot have been that pause, so what starts then is a new impact.
//     One first seen already Started, or announced before the resume, can be
//     covered. Ids may change at every state change (Azure's mock server
//     issues a new one each time), so a lifecycle is followed across
//     replaced ids: an event first seen in the answer in which a Freeze that
//     had not started left the list takes over that Freeze's announcement.
//     The decision is therefore made once the whole answer is in
//     (FreezeEvents), not at FreezeStarted.
//   - Freeze events for this VM that are Started at the same time belong to
//     one impact: ids replaced between polls, several events at once. A
//     Freeze seen Started while a covered one is Started is covered.
//   - A Freeze event removed after having been Started, and not covered, is a
//     resume (source "imds", time and length unknown): the fallback for a pause
//     the clocks did not show. It covers the Freeze events Started with it.
//   - A Freeze event removed without having been Started was cancelled.
//
// A second impact during a Started event that the clocks show is a second
// pause, with its own resume.
package freeze

import (
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/pause"
)

// Source says which signal a resume was recorded from.
type Source string

// Sources, as used in the vm_pauses_total metric's label.
const (
	SourceClock Source = "clock"
	SourceIMDS  Source = "imds"
)

// Resume is one pause that is over.
type Resume struct {
	// At is when the VM ran again; zero when unknown (source imds).
	At time.Time
	// Length is how long the pause lasted; zero when unknown.
	Length time.Duration
	// Source is the signal the pause was recorded from.
	Source Source
	// EventID and Description are those of the Freeze event for this VM the
	// pause belongs to, empty when none is known.
	EventID     string
	Description string
}

// Defaults for Config.
const (
	DefaultMergeWindow = 5 * time.Second
	DefaultEventWindow = time.Minute
)

// Config configures a Correlator. Zero values take the defaults.
type Config struct {
	// Emit receives every Resume (required). It is called from the goroutine
	// that delivered the signal, never with the Correlator's lock held, and
	// should return quickly.
	Emit   func(Resume)
	Clock  clock.Clock // default clock.Real
	Logger *slog.Logger
	// MergeWindow: a clock pause that began at most this long after the
	// previous clock resume is the same pause.
	MergeWindow time.Duration
	// EventWindow: a Freeze seen Started at most this long after a clock
	// resume is covered by it, even when IMDS answered in between.
	EventWindow time.Duration
}

type eventState struct {
	ev        imds.Event
	started   bool
	startedAt time.Time // when it was seen Started, on the Correlator's clock
	covered   bool      // a resume has been recorded for its impact
	// announced is when its lifecycle was first seen Scheduled, taken over
	// from the id it replaced; zero when first seen already Started.
	announced time.Time
	fresh     bool      // first seen in the answer being delivered
	pending   bool      // seen Started in that answer; coverage not yet decided
	along     bool      // pending while a covered Started one left the list
	since     time.Time // FreezeStarted's since, for that decision
}

// Correlator turns pause and IMDS signals into resumes. It is an
// imds.Observer and is safe for concurrent use.
type Correlator struct {
	emit        func(Resume)
	clk         clock.Clock
	log         *slog.Logger
	mergeWindow time.Duration
	eventWindow time.Duration

	mu        sync.Mutex
	events    map[string]*eventState // Freeze events for this VM
	active    []imds.Event
	last      pause.Pause // the last clock pause (resumed or merged)
	lastSeen  time.Time   // when it arrived, on the Correlator's clock
	haveClock bool
	// left holds the announcements of the Freeze events that left the list,
	// not started, in the answer being delivered: the lifecycles a new id in
	// that answer may continue.
	left []time.Time
}

var _ imds.Observer = (*Correlator)(nil)

// New returns a Correlator for cfg.
func New(cfg Config) (*Correlator, error) {
	if cfg.Emit == nil {
		return nil, errors.New("freeze: Emit is required")
	}
	if cfg.MergeWindow < 0 || cfg.EventWindow < 0 {
		return nil, errors.New("freeze: negative window")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MergeWindow == 0 {
		cfg.MergeWindow = DefaultMergeWindow
	}
	if cfg.EventWindow == 0 {
		cfg.EventWindow = DefaultEventWindow
	}
	return &Correlator{
		emit:        cfg.Emit,
		clk:         cfg.Clock,
		log:         cfg.Logger,
		mergeWindow: cfg.MergeWindow,
		eventWindow: cfg.EventWindow,
		events:      map[string]*eventState{},
	}, nil
}

// Pause takes a pause from the detector.
func (c *Correlator) Pause(p pause.Pause) {
	r, ok := c.clockPause(p)
	if ok {
		c.emit(r)
	}
}

func (c *Correlator) clockPause(p pause.Pause) (Resume, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clk.Now()
	prev, had := c.last, c.haveClock
	c.last, c.lastSeen, c.haveClock = p, now, true
	if had && !p.At.Add(-p.Length).After(prev.At.Add(c.mergeWindow)) {
		c.log.Debug("clock signal belongs to the previous pause",
			"kind", string(p.Kind), "length", p.Length, "previous_kind", string(prev.Kind), "previous_length", prev.Length)
		// Keep the earlier pause as the reference, so a chain of signals
		// does not stretch the window.
		c.last = prev
		return Resume{}, false
	}
	r := Resume{At: p.At, Length: p.Length, Source: SourceClock}
	var during *eventState
	for _, st := range c.events {
		if !st.started {
			continue
		}
		st.covered = true
		if during == nil || st.startedAt.After(during.startedAt) ||
			(st.startedAt.Equal(during.startedAt) && st.ev.Key() < during.ev.Key()) {
			during = st
		}
	}
	if during != nil {
		r.EventID, r.Description = during.ev.ID, during.ev.Description
	}
	c.log.Debug("pause seen by the clocks", "kind", string(p.Kind), "length", p.Length, "event_id", r.EventID)
	return r, true
}

// Up is part of imds.Observer; reachability does not change correlation.
func (c *Correlator) Up(bool, error) {}

// EventSeen takes an event for this VM seen for the first time: a Freeze
// first seen Scheduled is an announcement, of an impact still to come.
func (c *Correlator) EventSeen(e imds.Event) {
	if e.Type != imds.Freeze {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(e)
	if e.Status == imds.Scheduled && st.announced.IsZero() {
		st.announced = c.clk.Now()
	}
}

// FreezeStarted takes a Freeze event for this VM that is Started; it turned
// Started after since (zero: unknown). Whether an earlier pause covers it is
// decided when the answer is complete (FreezeEvents), once it is known
// whether it replaced an announced id.
func (c *Correlator) FreezeStarted(e imds.Event, since time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(e)
	if st.started {
		return
	}
	st.started, st.startedAt = true, c.clk.Now()
	st.pending, st.since = true, since
}

// settle ends the delivery of one answer: new ids take over the announcement
// of the not-started Freeze events that left with it, then the coverage of
// what was seen Started in it is decided. Lock held.
func (c *Correlator) settle() {
	var inherit time.Time
	for _, a := range c.left {
		if !a.IsZero() && (inherit.IsZero() || a.Before(inherit)) {
			inherit = a
		}
	}
	c.left = c.left[:0]
	keys := slices.Sorted(maps.Keys(c.events))
	for _, k := range keys {
		st := c.events[k]
		if st.fresh && !inherit.IsZero() && (st.announced.IsZero() || inherit.Before(st.announced)) {
			st.announced = inherit
		}
		st.fresh = false
	}
	for _, k := range keys {
		if st := c.events[k]; st.pending {
			c.decide(st)
		}
	}
}

// decide says whether a Freeze seen Started is covered by an earlier resume
// or by a covered Freeze Started with it. Lock held.
func (c *Correlator) decide(st *eventState) {
	st.pending = false
	if st.covered {
		return // a clock pause came in the meantime
	}
	e, now := st.ev, st.startedAt
	announcedSince := st.announced.After(c.lastSeen) // its lifecycle began after the last resume
	if c.haveClock && !announcedSince && (now.Sub(c.lastSeen) <= c.eventWindow || (!st.since.IsZero() && !c.lastSeen.Before(st.since))) {
		st.covered = true
		c.log.Debug("Freeze seen Started after a clock pause; that pause was its impact", "event_id", e.ID)
		return
	}
	if st.along {
		st.covered = true
		c.log.Debug("Freeze Started as one already accounted for ended", "event_id", e.ID)
		return
	}
	for _, o := range c.events {
		if o != st && o.started && o.covered {
			st.covered = true
			c.log.Debug("Freeze Started along with one already accounted for", "event_id", e.ID, "with", o.ev.ID)
			return
		}
	}
}

// FreezeRemoved takes a Freeze event for this VM that left the list.
func (c *Correlator) FreezeRemoved(e imds.Event, started bool) {
	r, ok := c.removed(e, started)
	if ok {
		c.emit(r)
	}
}

func (c *Correlator) removed(e imds.Event, started bool) (Resume, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(e)
	if st.pending {
		c.decide(st)
	}
	delete(c.events, e.Key())
	if !started && !st.started {
		c.left = append(c.left, st.announced)
	}
	if st.started && st.covered {
		for _, o := range c.events {
			if o.pending {
				o.along = true
			}
		}
	}
	c.active = slices.DeleteFunc(c.active, func(a imds.Event) bool { return a.Key() == e.Key() })
	if started && !st.started {
		st.started, st.startedAt = true, c.clk.Now()
	}
	if !st.started {
		c.log.Debug("Freeze cancelled", "event_id", e.ID)
		return Resume{}, false
	}
	if st.covered {
		c.log.Debug("Freeze over; its pause was already recorded", "event_id", e.ID)
		return Resume{}, false
	}
	for _, o := range c.events {
		if o.started {
			o.covered = true
		}
	}
	c.log.Debug("Freeze over without a pause seen by the clocks", "event_id", e.ID)
	return Resume{Source: SourceIMDS, EventID: e.ID, Description: e.Description}, true
}

// FreezeEvents takes the current Freeze events for this VM.
func (c *Correlator) FreezeEvents(events []imds.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = slices.Clone(events)
	keep := make(map[string]bool, len(events))
	for _, e := range events {
		keep[e.Key()] = true
		c.state(e).ev = e
	}
	for k := range c.events {
		if !keep[k] {
			delete(c.events, k) // no longer this VM's (its name became known)
		}
	}
	c.settle()
}

// Active returns the Freeze events for this VM that are Scheduled or Started,
// as IMDS last listed them.
func (c *Correlator) Active() []imds.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.active)
}

func (c *Correlator) state(e imds.Event) *eventState {
	k := e.Key()
	st := c.events[k]
	if st == nil {
		st = &eventState{ev: e, fresh: true}
		c.events[k] = st
	}
	return st
}
