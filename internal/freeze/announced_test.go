package freeze_test

import (
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/pause"
)

// poll delivers one IMDS answer the way the watcher does: new events first
// (EventSeen), then Started transitions, then removals, then the list.
func (u *unit) poll(since time.Time, seen, started, removed []imds.Event, list ...imds.Event) {
	for _, e := range seen {
		u.c.EventSeen(e)
	}
	for _, e := range started {
		u.c.FreezeStarted(e, since)
	}
	for _, e := range removed {
		u.c.FreezeRemoved(e, e.Status == imds.Started)
	}
	u.c.FreezeEvents(list)
}

// A second Freeze announced after a pause's resume is a new impact: started
// and gone without a pause the clocks saw, it is a pause of its own (imds),
// even within EventWindow of the first resume. Azure's mock server gives the
// event a new id at every state change, as here.
func TestFreezeAnnouncedAfterAResumeIsANewImpact(t *testing.T) {
	u := newUnit(t)
	first := freezeEvent("A1", imds.Started)
	u.poll(u.f.Now(), []imds.Event{first}, []imds.Event{first}, nil, first)
	u.f.Advance(4 * time.Second)
	u.clockPause(4*time.Second, pause.KindGap) // the first Freeze's impact, seen by the clocks
	if rs := u.resumes(); len(rs) != 1 || rs[0].Source != freeze.SourceClock || rs[0].EventID != "A1" {
		t.Fatalf("the first pause: %+v", rs)
	}
	u.f.Advance(time.Second)
	gone := first
	u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{gone})

	u.f.Advance(10 * time.Second) // 11 s after the resume: a second Freeze is announced
	announced := freezeEvent("B1", imds.Scheduled)
	u.poll(u.f.Now().Add(-time.Second), []imds.Event{announced}, nil, nil, announced)
	u.f.Advance(5 * time.Second) // it starts, with a new id
	startedB := freezeEvent("B2", imds.Started)
	since := u.f.Now().Add(-time.Second)
	u.poll(since, []imds.Event{startedB}, []imds.Event{startedB}, []imds.Event{announced}, startedB)
	u.f.Advance(5 * time.Second) // and is gone: no pause the clocks saw
	u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{startedB})
	rs := u.resumes()
	if len(rs) != 1 || rs[0].Source != freeze.SourceIMDS || rs[0].EventID != "B2" {
		t.Fatalf("the second Freeze, announced 11 s after the first resume: %+v; want one imds pause", rs)
	}
}

// An event first seen already Started within EventWindow of a resume, with
// no Freeze announced since, is that pause's (IMDS answered late): covered.
func TestFreezeFirstSeenStartedAfterAResumeIsCovered(t *testing.T) {
	u := newUnit(t)
	u.clockPause(4*time.Second, pause.KindGap)
	if rs := u.resumes(); len(rs) != 1 {
		t.Fatalf("the pause: %+v", rs)
	}
	u.f.Advance(20 * time.Second)
	e := freezeEvent("C1", imds.Started)
	u.poll(u.f.Now().Add(-time.Second), []imds.Event{e}, []imds.Event{e}, nil, e)
	u.f.Advance(5 * time.Second)
	u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{e})
	if rs := u.resumes(); len(rs) != 0 {
		t.Fatalf("a Freeze seen Started 20 s after a resume counted again: %+v", rs)
	}
}

// Scheduled before the pause, Started (with a new id) after it: the pause
// was its impact.
func TestFreezeScheduledBeforeAResumeIsCovered(t *testing.T) {
	u := newUnit(t)
	s := freezeEvent("D1", imds.Scheduled)
	u.poll(u.f.Now(), []imds.Event{s}, nil, nil, s)
	u.f.Advance(30 * time.Second)
	u.clockPause(4*time.Second, pause.KindGap)
	if rs := u.resumes(); len(rs) != 1 {
		t.Fatalf("the pause: %+v", rs)
	}
	u.f.Advance(3 * time.Second)
	st := freezeEvent("D2", imds.Started)
	u.poll(u.f.Now().Add(-40*time.Second), []imds.Event{st}, []imds.Event{st}, []imds.Event{s}, st)
	u.f.Advance(5 * time.Second)
	u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{st})
	if rs := u.resumes(); len(rs) != 0 {
		t.Fatalf("a Freeze scheduled before the pause counted again: %+v", rs)
	}
}

// A Freeze announced after a resume makes only its own lifecycle a new
// impact. One first seen already Started while another, announced later, is
// still Scheduled (or was cancelled earlier) is the pause's, IMDS having
// answered late: covered, not counted twice.
func TestFreezeFirstSeenStartedBesideALaterAnnouncementIsCovered(t *testing.T) {
	for _, cancelled := range []bool{false, true} {
		u := newUnit(t)
		u.clockPause(4*time.Second, pause.KindGap)
		if rs := u.resumes(); len(rs) != 1 {
			t.Fatalf("the pause: %+v", rs)
		}
		u.f.Advance(10 * time.Second)
		later := freezeEvent("L1", imds.Scheduled) // a Freeze for later, announced after the resume
		u.poll(u.f.Now().Add(-time.Second), []imds.Event{later}, nil, nil, later)
		list := []imds.Event{later}
		if cancelled {
			u.f.Advance(3 * time.Second)
			u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{later})
			list = nil
		}
		u.f.Advance(10 * time.Second)
		e := freezeEvent("P1", imds.Started) // the pause's own Freeze, seen late
		u.poll(u.f.Now().Add(-time.Second), []imds.Event{e}, []imds.Event{e}, nil, append(list, e)...)
		u.f.Advance(5 * time.Second)
		u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{e}, list...)
		if rs := u.resumes(); len(rs) != 0 {
			t.Fatalf("cancelled=%v: a Freeze first seen Started 20 s after a resume counted again: %+v", cancelled, rs)
		}
	}
}

// Ids replaced while Scheduled keep the lifecycle's first announcement: a
// Freeze announced before the pause, re-issued under a new id after it and
// then Started under a third, is still the pause's.
func TestFreezeReissuedAfterTheResumeKeepsItsAnnouncement(t *testing.T) {
	u := newUnit(t)
	s := freezeEvent("R1", imds.Scheduled)
	u.poll(u.f.Now(), []imds.Event{s}, nil, nil, s)
	u.f.Advance(30 * time.Second)
	u.clockPause(4*time.Second, pause.KindGap)
	if rs := u.resumes(); len(rs) != 1 {
		t.Fatalf("the pause: %+v", rs)
	}
	u.f.Advance(2 * time.Second)
	s2 := freezeEvent("R2", imds.Scheduled)
	u.poll(u.f.Now().Add(-40*time.Second), []imds.Event{s2}, nil, []imds.Event{s}, s2)
	u.f.Advance(2 * time.Second)
	st := freezeEvent("R3", imds.Started)
	u.poll(u.f.Now().Add(-40*time.Second), []imds.Event{st}, []imds.Event{st}, []imds.Event{s2}, st)
	u.f.Advance(5 * time.Second)
	u.poll(u.f.Now().Add(-time.Second), nil, nil, []imds.Event{st})
	if rs := u.resumes(); len(rs) != 0 {
		t.Fatalf("a Freeze announced before the pause and re-issued after it counted again: %+v", rs)
	}
}
