package imds

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/imds/imdstest"
)

var t0 = time.Date(2026, 4, 29, 18, 0, 0, 0, time.UTC)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// count is how many log records contain msg.
func (s *syncBuffer) count(msg string) int { return strings.Count(s.String(), msg) }

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	ups      []bool
	seen     map[string]int
	snapshot []Event
	since    []time.Time
	changed  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{seen: map[string]int{}, changed: make(chan struct{}, 64)}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) Up(up bool, err error) {
	r.mu.Lock()
	r.ups = append(r.ups, up)
	r.mu.Unlock()
	r.add(fmt.Sprintf("up %v", up))
}

func (r *recorder) EventSeen(e Event) {
	r.mu.Lock()
	r.seen[e.Type.Label()]++
	r.mu.Unlock()
	r.add("seen " + e.ID + " " + string(e.Type))
}

func (r *recorder) FreezeStarted(e Event, since time.Time) {
	r.mu.Lock()
	r.since = append(r.since, since)
	r.mu.Unlock()
	r.add("started " + e.ID)
}

func (r *recorder) FreezeRemoved(e Event, started bool) {
	r.add(fmt.Sprintf("removed %s started=%v", e.ID, started))
}

func (r *recorder) FreezeEvents(events []Event) {
	r.mu.Lock()
	r.snapshot = events
	r.mu.Unlock()
	var ids []string
	for _, e := range events {
		ids = append(ids, e.ID+":"+string(e.Status))
	}
	r.add("freeze [" + strings.Join(ids, " ") + "]")
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// take returns and forgets the calls so far, ignoring up reports.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		if !strings.HasPrefix(c, "up ") {
			out = append(out, c)
		}
	}
	r.calls = nil
	return out
}

type fixture struct {
	t   *testing.T
	f   *clock.Fake
	srv *imdstest.Server
	w   *Watcher
	rec *recorder
	log *syncBuffer
}

func newFixture(t *testing.T, mod func(*WatcherConfig)) *fixture {
	t.Helper()
	f := clock.NewFake(t0)
	srv := imdstest.New(f)
	t.Cleanup(srv.Close)
	c, err := NewClient(ClientConfig{Endpoint: srv.URL(), Clock: f})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	buf := &syncBuffer{}
	cfg := WatcherConfig{
		Client:   c,
		Observer: rec,
		Logger:   slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Clock:    f,
		Jitter:   func() float64 { return 0 },
	}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, f: f, srv: srv, w: w, rec: rec, log: buf}
}

// poll advances the clock by d and polls once.
func (x *fixture) poll(d time.Duration) time.Duration {
	x.f.Advance(d)
	return x.w.Poll(x.t.Context())
}

func (x *fixture) want(calls ...string) {
	x.t.Helper()
	got := x.rec.take()
	if len(calls) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, calls) {
		x.t.Errorf("observer got\n  %q\nwant\n  %q", got, calls)
	}
}

func freezeEv(id, status string, vms ...string) imdstest.Event {
	if len(vms) == 0 {
		vms = []string{"vm-0"}
	}
	nb := ""
	if status == "Scheduled" {
		nb = "Mon, 19 Sep 2016 18:29:47 GMT"
	}
	return imdstest.Event{
		EventID: id, EventType: "Freeze", ResourceType: "VirtualMachine", Resources: vms,
		EventStatus: status, NotBefore: nb, EventSource: "Platform", DurationInSeconds: 9,
	}
}

func TestWatcherFreezeLifecycle(t *testing.T) {
	x := newFixture(t, nil)
	x.poll(0)
	x.want()
	x.srv.SetEvents(freezeEv("a", "Scheduled"))
	x.poll(time.Second)
	x.want("seen a Freeze", "freeze [a:Scheduled]")
	x.poll(time.Second) // unchanged
	x.want()
	x.srv.SetEvents(freezeEv("a", "Started"))
	x.poll(time.Second)
	x.want("started a", "freeze [a:Started]")
	if got := x.w.FreezeEvents(); len(got) != 1 || got[0].Status != Started {
		t.Errorf("FreezeEvents = %+v", got)
	}
	x.srv.SetEvents()
	x.poll(time.Second)
	x.want("removed a started=true", "freeze []")
	if got := x.w.FreezeEvents(); len(got) != 0 {
		t.Errorf("FreezeEvents = %+v", got)
	}
	if x.w.VMName() != "vm-0" {
		t.Errorf("VMName = %q", x.w.VMName())
	}
}

func TestWatcherLifecycles(t *testing.T) {
	x := newFixture(t, nil)
	// Cancelled.
	x.srv.SetEvents(freezeEv("a", "Scheduled"))
	x.poll(0)
	x.srv.SetEvents()
	x.poll(time.Second)
	x.want("seen a Freeze", "freeze [a:Scheduled]", "removed a started=false", "freeze []")
	// Directly Started, then a change while Started (a second impact), then a
	// status going back and forth: started once.
	x.srv.SetEvents(freezeEv("b", "Started"))
	x.poll(time.Second)
	x.want("seen b Freeze", "started b", "freeze [b:Started]")
	e := freezeEv("b", "Started")
	e.Description = "second impact"
	x.srv.SetEvents(e)
	x.poll(time.Second)
	x.want("freeze [b:Started]")
	x.srv.SetEvents(freezeEv("b", "Scheduled"))
	x.poll(time.Second)
	x.srv.SetEvents(freezeEv("b", "Started"))
	x.poll(time.Second)
	x.want("freeze [b:Scheduled]", "freeze [b:Started]")
	// Ids replaced, several at once, other VMs, other types, a duplicate id.
	x.srv.SetEvents(
		freezeEv("c", "Started"),
		freezeEv("d", "Scheduled", "vm-7", "vm-0"),
		freezeEv("o", "Started", "vm-7"),
		imdstest.Event{EventID: "r", EventType: "Reboot", EventStatus: "Scheduled", Resources: []string{"VM-0"}},
		imdstest.Event{EventID: "r", EventType: "Reboot", EventStatus: "Started", Resources: []string{"vm-0"}},
		imdstest.Event{EventID: "u", EventType: "Hibernate", EventStatus: "Pending", Resources: []string{"vm-0"}},
	)
	x.poll(time.Second)
	x.want("seen c Freeze", "started c", "seen d Freeze", "seen r Reboot", "seen u Hibernate",
		"removed b started=true", "freeze [c:Started d:Scheduled]")
	x.srv.SetEvents(imdstest.Event{EventID: "r", EventType: "Freeze", EventStatus: "Started", Resources: []string{"vm-0"}})
	x.poll(time.Second)
	x.want("seen r Freeze", "started r", "removed c started=true", "removed d started=false",
		"freeze [r:Started]")
	x.rec.mu.Lock()
	seen := x.rec.seen
	x.rec.mu.Unlock()
	if want := map[string]int{"Freeze": 5, "Reboot": 1, "Unknown": 1}; !reflect.DeepEqual(seen, want) {
		t.Errorf("seen = %v, want %v", seen, want)
	}
}

// FreezeStarted says since when the event can have been Started: IMDS's
// previous answer, however long ago an outage made it.
func TestWatcherStartedSince(t *testing.T) {
	x := newFixture(t, nil)
	x.srv.SetEvents(freezeEv("a", "Started"))
	x.poll(0) // IMDS's first answer: unknown
	x.srv.SetEvents(freezeEv("a", "Started"), freezeEv("b", "Scheduled"))
	x.poll(time.Second)
	answered := x.f.Now()
	x.srv.SetEvents(freezeEv("a", "Started"), freezeEv("b", "Started"))
	x.srv.Push(imdstest.Reply{Status: 500}, imdstest.Reply{Status: 503})
	x.poll(time.Second)
	x.poll(time.Minute)
	x.poll(time.Minute)
	x.rec.mu.Lock()
	defer x.rec.mu.Unlock()
	if want := []time.Time{{}, answered}; !reflect.DeepEqual(x.rec.since, want) {
		t.Errorf("since = %v, want %v", x.rec.since, want)
	}
}

func TestWatcherSkipsUnchangedDocuments(t *testing.T) {
	x := newFixture(t, nil)
	x.srv.UseETags(true)
	x.srv.SetEvents(freezeEv("a", "Scheduled"))
	x.poll(0)
	x.want("seen a Freeze", "freeze [a:Scheduled]")
	// 304 via If-None-Match.
	x.poll(time.Second)
	x.want()
	// Same DocumentIncarnation: not processed, even if the list differs.
	x.srv.UseETags(false)
	x.srv.SetEventsSameIncarnation(freezeEv("a", "Started"))
	x.poll(time.Second)
	x.want()
	x.srv.SetEvents(freezeEv("a", "Started"))
	x.poll(time.Second)
	x.want("started a", "freeze [a:Started]")
}

func TestWatcherBackoffAndLogging(t *testing.T) {
	x := newFixture(t, nil)
	x.srv.SetEvents(freezeEv("a", "Started"))
	x.poll(0)
	x.want("seen a Freeze", "started a", "freeze [a:Started]")

	var throttled []time.Duration
	for i := range 7 {
		r := imdstest.Reply{Status: http.StatusTooManyRequests}
		if i == 5 {
			r.Header = http.Header{"Retry-After": {"45"}}
		}
		x.srv.Push(r)
	}
	d := time.Second
	for range 7 {
		d = x.poll(d)
		throttled = append(throttled, d)
	}
	want := []time.Duration{2, 4, 8, 16, 30, 45, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !reflect.DeepEqual(throttled, want) {
		t.Errorf("429 backoff %v, want %v", throttled, want)
	}
	x.srv.Push(
		imdstest.Reply{Status: 500}, imdstest.Reply{Status: 410}, imdstest.Reply{Status: 503},
		imdstest.Reply{Body: []byte("<html>")}, imdstest.Reply{Body: []byte(`{"Events":null`)},
	)
	var server []time.Duration
	for range 5 {
		d = x.poll(d)
		server = append(server, d)
	}
	// The failure count carries on across kinds: 8th to 12th failure in a row.
	for _, d := range server {
		if d != 30*time.Second {
			t.Errorf("server error backoff %v, want the 30s cap", server)
			break
		}
	}
	x.want() // nothing removed while IMDS misbehaved
	if got := x.w.FreezeEvents(); len(got) != 1 {
		t.Errorf("FreezeEvents during errors = %+v", got)
	}
	x.srv.SetEvents()
	if d = x.poll(d); d != time.Second {
		t.Errorf("after recovery: next poll in %v", d)
	}
	x.want("removed a started=true", "freeze []")

	log := x.log.String()
	for msg, n := range map[string]int{
		"IMDS is throttling":                      1,
		"IMDS answered with a server error":       1,
		"not a scheduled events document":         1,
		"IMDS answering again":                    1,
		"failed_polls=12":                         1,
		"IMDS scheduled events available":         1,
		"IMDS unreachable":                        0,
		"IMDS rejected the scheduled events":      0,
		"cannot learn this VM's name":             0,
		`msg="scheduled event over" event_id=a`:   1,
		`msg="scheduled event for this VM" event`: 1,
	} {
		if got := strings.Count(log, msg); got != n {
			t.Errorf("log has %q %d times, want %d\n%s", msg, got, n, log)
		}
	}
	x.rec.mu.Lock()
	ups := x.rec.ups
	x.rec.mu.Unlock()
	if !reflect.DeepEqual(ups, []bool{true, false, true}) {
		t.Errorf("up reports %v", ups)
	}
}

func TestWatcherRejectedAndUnreachable(t *testing.T) {
	x := newFixture(t, func(c *WatcherConfig) { c.ResourceName = "vm-0" })
	x.srv.Push(imdstest.Reply{Status: 404}, imdstest.Reply{Status: 400}, imdstest.Reply{Status: 404})
	for range 3 {
		if d := x.poll(time.Second); d != DefaultSlowRetry {
			t.Errorf("after 4xx: next poll in %v, want %v", d, DefaultSlowRetry)
		}
	}
	if n := x.log.count("IMDS rejected"); n != 1 {
		t.Errorf("rejection logged %d times", n)
	}
	x.poll(time.Minute)
	if n := x.log.count("IMDS answering again"); n != 1 {
		t.Errorf("recovery logged %d times", n)
	}
	if x.srv.Stats().InstanceGets != 0 {
		t.Error("instance metadata asked although imds.resourceName was set")
	}

	// Unreachable: the server is gone.
	x.srv.Close()
	var got []time.Duration
	for range 6 {
		got = append(got, x.poll(time.Second))
	}
	want := []time.Duration{5, 10, 20, 40, 60, 60}
	for i := range want {
		want[i] *= time.Second
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unreachable backoff %v, want %v", got, want)
	}
	if n := x.log.count("IMDS unreachable"); n != 1 {
		t.Errorf("unreachable logged %d times", n)
	}
}

func TestWatcherJitter(t *testing.T) {
	x := newFixture(t, func(c *WatcherConfig) { c.Jitter = func() float64 { return 0.999 } })
	x.srv.Push(imdstest.Reply{Status: 500}, imdstest.Reply{Status: 500})
	x.poll(0)
	if d := x.poll(0); d < 2*time.Second || d >= 3*time.Second {
		t.Errorf("second 500: next poll in %v, want [2s, 3s)", d)
	}
	x = newFixture(t, func(c *WatcherConfig) { c.Jitter = func() float64 { return 7 } }) // a broken source
	x.srv.Push(imdstest.Reply{Status: 500})
	if d := x.poll(0); d != time.Second {
		t.Errorf("next poll in %v", d)
	}
}

func TestWatcherNameUnknown(t *testing.T) {
	x := newFixture(t, func(c *WatcherConfig) { c.ApproveFreeze = true })
	x.srv.SetInstanceStatus(http.StatusInternalServerError)
	x.srv.SetEvents(freezeEv("a", "Scheduled", "vm-7"), freezeEv("b", "Scheduled", "vm-0"))
	x.poll(0)
	x.want("seen a Freeze", "seen b Freeze", "freeze [a:Scheduled b:Scheduled]")
	if n := x.log.count("cannot learn this VM's name"); n != 1 {
		t.Errorf("name failure logged %d times", n)
	}
	for range 5 {
		x.poll(time.Second)
	}
	if got := x.srv.Approvals(); len(got) != 0 {
		t.Errorf("approved %v while the VM's name is unknown", got)
	}
	if x.w.VMName() != "" {
		t.Errorf("VMName = %q", x.w.VMName())
	}
	// Retried with backoff: 5s, 10s after the first failure; 6 polls so far.
	if n := x.srv.Stats().InstanceGets; n != 2 {
		t.Errorf("instance metadata asked %d times in 5s", n)
	}
	x.srv.SetInstanceStatus(0)
	x.poll(10 * time.Second)
	// Learned: a is not ours, it is forgotten without a removal; b gets approved.
	x.want("freeze [b:Scheduled]")
	if got := x.srv.Approvals(); !reflect.DeepEqual(got, []string{"b"}) {
		t.Errorf("approvals %v", got)
	}
	if n := x.log.count("VM name learned"); n != 1 {
		t.Errorf("name learned logged %d times", n)
	}
}

func TestWatcherApproval(t *testing.T) {
	x := newFixture(t, func(c *WatcherConfig) { c.ApproveFreeze = true })
	x.srv.SetEvents(freezeEv("a", "Scheduled", "vm-7"), freezeEv("b", "Scheduled"),
		imdstest.Event{EventID: "r", EventType: "Reboot", EventStatus: "Scheduled", Resources: []string{"vm-0"}})
	x.srv.SetApproveStatus(http.StatusInternalServerError)
	for range 5 {
		x.poll(time.Second)
	}
	if n := x.log.count("cannot approve Freeze event"); n != maxApproveTries {
		t.Errorf("approval tried %d times, want %d", n, maxApproveTries)
	}
	x.srv.SetEvents(freezeEv("c", "Scheduled"))
	x.srv.SetApproveStatus(0)
	for range 3 {
		x.poll(time.Second)
	}
	if got := x.srv.Approvals(); !reflect.DeepEqual(got, []string{"c"}) {
		t.Errorf("approvals %v, want [c]", got)
	}

	y := newFixture(t, nil) // approval off by default
	y.srv.SetEvents(freezeEv("b", "Scheduled"))
	y.poll(0)
	if got := y.srv.Approvals(); len(got) != 0 {
		t.Errorf("approved %v with approval off", got)
	}
}

// The first call on a fresh VM takes two minutes: Run does not give up on it,
// sends no second request meanwhile, and what arrives is processed.
func TestWatcherSlowFirstCall(t *testing.T) {
	x := newFixture(t, nil)
	x.srv.SetEvents(freezeEv("a", "Scheduled"))
	x.srv.Push(imdstest.Reply{Delay: 2 * time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		x.w.Run(ctx)
	}()
	// Instance metadata, then the scheduled events call, which waits.
	for p := range x.srv.Arrived() {
		if p == "/metadata/scheduledevents" {
			break
		}
	}
	x.f.BlockUntil(2) // the client's timeout and the server's delay
	for range 119 {
		x.f.Advance(time.Second)
	}
	x.want()
	x.f.Advance(time.Second)
	<-x.rec.changed
	x.want("seen a Freeze", "freeze [a:Scheduled]")
	cancel()
	<-done
	st := x.srv.Stats()
	if st.MaxInFlight != 1 || st.EventGets != 1 {
		t.Errorf("stats %+v", st)
	}
	if n := x.log.count("IMDS unreachable"); n != 0 {
		t.Errorf("slow first call reported as unreachable")
	}
}

func TestNewWatcherErrors(t *testing.T) {
	if _, err := NewWatcher(WatcherConfig{}); err == nil {
		t.Error("no client accepted")
	}
	c, _ := NewClient(ClientConfig{})
	if _, err := NewWatcher(WatcherConfig{Client: c, PollInterval: -1}); err == nil {
		t.Error("negative interval accepted")
	}
}

func TestMultiAndFuncs(t *testing.T) {
	var n int
	f := Funcs{OnEventSeen: func(Event) { n++ }}
	m := Multi(f, Funcs{}, f)
	m.Up(true, nil)
	m.EventSeen(Event{})
	m.FreezeStarted(Event{}, time.Time{})
	m.FreezeRemoved(Event{}, true)
	m.FreezeEvents(nil)
	if n != 2 {
		t.Errorf("n = %d", n)
	}
}

// FuzzWatcherDocuments feeds sequences of arbitrary documents to the watcher's
// tracking: it never panics, reports each Freeze event Started at most once
// while it is listed as this VM's, and reports removals only of Freeze events
// it reported seen.
func FuzzWatcherDocuments(f *testing.F) {
	f.Add([]byte(`{"DocumentIncarnation":1,"Events":[{"EventId":"a","EventType":"Freeze","Resources":["vm-0"],"EventStatus":"Scheduled"}]}` +
		"\xff" + `{"DocumentIncarnation":2,"Events":[{"EventId":"a","EventType":"Freeze","Resources":["vm-0"],"EventStatus":"Started"}]}` +
		"\xff" + `{"DocumentIncarnation":3,"Events":[]}`))
	f.Add([]byte(`{"Events":[{"EventType":"Freeze","EventStatus":"Started"},{"EventId":"a","EventType":"Freeze","EventStatus":"Started"}]}` +
		"\xff" + `{"Events":[{"EventId":"a","EventType":"Reboot","EventStatus":"Started","Resources":"vm-7"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := NewClient(ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		started := map[string]int{}
		var bad string
		obs := Funcs{
			OnEventSeen: func(e Event) { seen[e.Key()] = true },
			OnFreezeStarted: func(e Event, _ time.Time) {
				started[e.Key()]++
				if started[e.Key()] > 1 {
					bad = "started twice: " + e.Key()
				}
			},
			OnFreezeRemoved: func(e Event, _ bool) {
				if !seen[e.Key()] {
					bad = "removed unseen: " + e.Key()
				}
				delete(started, e.Key())
			},
			OnFreezeEvents: func(events []Event) {
				// An event no longer listed as ours is forgotten (its
				// Resources changed, or the VM's name became known).
				keep := map[string]bool{}
				for _, e := range events {
					keep[e.Key()] = true
				}
				for k := range started {
					if !keep[k] {
						delete(started, k)
					}
				}
			},
		}
		w, err := NewWatcher(WatcherConfig{Client: c, Observer: obs, Clock: clock.NewFake(t0)})
		if err != nil {
			t.Fatal(err)
		}
		for i, part := range bytes.Split(b, []byte{0xff}) {
			if i%3 == 2 {
				w.mu.Lock()
				w.name = "vm-0" // the name becomes known midway
				w.mu.Unlock()
			}
			doc, err := Parse(part)
			if err != nil {
				continue
			}
			w.process(doc, t0)
			if bad != "" {
				t.Fatal(bad)
			}
			for _, e := range w.FreezeEvents() {
				if w.events[e.Key()] == nil {
					t.Fatalf("snapshot has untracked %q", e.Key())
				}
			}
		}
	})
}

// Idle polling: the slower interval while no event names this VM, the fast
// one as soon as one does.
func TestIdlePollInterval(t *testing.T) {
	var doc atomic.Value
	doc.Store(`{"DocumentIncarnation":1,"Events":[]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(doc.Load().(string)))
	}))
	defer srv.Close()
	c, err := NewClient(ClientConfig{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(WatcherConfig{Client: c, ResourceName: "vm0", PollInterval: time.Second, IdlePollInterval: 5 * time.Second,
		Jitter: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	if d := w.Poll(context.Background()); d != 5*time.Second {
		t.Errorf("no event: next poll in %v, want 5s", d)
	}
	doc.Store(`{"DocumentIncarnation":2,"Events":[{"EventId":"E1","EventType":"Freeze","ResourceType":"VirtualMachine",` +
		`"Resources":["vm0"],"EventStatus":"Scheduled","NotBefore":"Mon, 19 Sep 2016 18:29:47 GMT"}]}`)
	if d := w.Poll(context.Background()); d != time.Second {
		t.Errorf("a Freeze for this VM: next poll in %v, want 1s", d)
	}
}

// TestWatcherRequestSpanningAPause: a request whose timeout ran out while the
// process was stopped (the clock jumps past the timeout at once) is asked
// again at once and not reported as IMDS being unreachable; a second such
// timeout in a row, and a timeout that took its real time, are failures.
func TestWatcherRequestSpanningAPause(t *testing.T) {
	x := newFixture(t, func(c *WatcherConfig) { c.ResourceName = "vm-0" })
	x.srv.SetEvents(freezeEv("a", "Scheduled"))
	x.poll(time.Second) // answered: the normal 3 s timeout applies from now on
	x.rec.take()

	// pollAcross starts a poll whose answer never comes, waits until the
	// request and its timeout are pending, then moves the clock by jump
	// (once, as after a SIGSTOP, or in 100 ms steps, as time really passes).
	pollAcross := func(jump time.Duration, stepwise bool) time.Duration {
		t.Helper()
		x.srv.Push(imdstest.Reply{Delay: time.Hour})
		for len(x.srv.Arrived()) > 0 {
			<-x.srv.Arrived()
		}
		got := make(chan time.Duration, 1)
		go func() { got <- x.w.Poll(t.Context()) }()
		// The request has taken its reply (and its timeout runs) once the
		// server saw it.
		for p := range x.srv.Arrived() {
			if p == "/metadata/scheduledevents" {
				break
			}
		}
		x.f.BlockUntil(2) // the client's timeout and the server's delay
		if stepwise {
			for range jump / (100 * time.Millisecond) {
				x.f.Advance(100 * time.Millisecond)
			}
		} else {
			x.f.Advance(jump)
		}
		return <-got
	}

	if d := pollAcross(10*time.Second, false); d != 0 {
		t.Errorf("timeout across a 10 s pause: next poll in %v, want at once", d)
	}
	if n := x.log.count("IMDS unreachable"); n != 0 || len(x.rec.take()) != 0 {
		t.Errorf("a timeout across a pause was reported (%d log lines)", n)
	}
	// The same again right after: now it counts.
	if d := pollAcross(10*time.Second, false); d != 5*time.Second {
		t.Errorf("second timeout across a pause: next poll in %v, want the unreachable backoff 5s", d)
	}
	if n := x.log.count("IMDS unreachable"); n != 1 {
		t.Errorf("second timeout in a row: unreachable logged %d times, want 1", n)
	}
	x.srv.SetEvents(freezeEv("a", "Scheduled"))
	x.poll(5 * time.Second)
	if n := x.log.count("IMDS answering again"); n != 1 {
		t.Errorf("recovery logged %d times", n)
	}
	// A timeout that took its real time is a failure at once.
	if d := pollAcross(3*time.Second, true); d != 5*time.Second {
		t.Errorf("plain timeout: next poll in %v, want 5s", d)
	}
	if n := x.log.count("IMDS unreachable"); n != 2 {
		t.Errorf("plain timeout: unreachable logged %d times in all, want 2", n)
	}
}
