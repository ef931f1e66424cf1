package freeze_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/imds/imdstest"
	"github.com/nodekeeper/nodekeeper/internal/pause"
)

// The scenario tests wire the three packages as the daemon does — the IMDS
// watcher polling a fake IMDS, the pause detector, the correlator between them
// and a fake pipeline counting runs — on one fake clock, and play scripted
// scenarios against them.

var t0 = time.Date(2026, 4, 29, 18, 0, 0, 0, time.UTC)

const tick = 250 * time.Millisecond

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), msg)
}

type harness struct {
	t    *testing.T
	ctx  context.Context
	f    *clock.Fake
	srv  *imdstest.Server
	w    *imds.Watcher
	corr *freeze.Correlator
	det  *pause.Detector
	log  *syncBuffer

	hiddenMono time.Duration // pause time CLOCK_MONOTONIC did not see
	hiddenReal time.Duration // pause time CLOCK_REALTIME has not caught up on
	nextPoll   time.Time
	running    bool // the watcher runs on its own goroutine

	mu      sync.Mutex
	resumes []freeze.Resume
	pauses  map[freeze.Source]int // what nodekeeper_vm_pauses_total would say
	runs    int                   // pipeline runs
	counted map[string]int        // what nodekeeper_scheduled_events_total would say
	changed chan struct{}
}

type option func(*imds.ClientConfig, *imds.WatcherConfig)

// withHangTimeout makes the client time requests out on the real clock, after
// a short timeout (for servers that never answer).
func withHangTimeout(c *imds.ClientConfig, _ *imds.WatcherConfig) {
	c.Clock = clock.Real{}
	c.Timeout = 150 * time.Millisecond
}

func withApproval(_ *imds.ClientConfig, w *imds.WatcherConfig) { w.ApproveFreeze = true }

func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	f := clock.NewFake(t0)
	srv := imdstest.New(f)
	t.Cleanup(srv.Close)
	h := &harness{
		t: t, ctx: t.Context(), f: f, srv: srv, log: &syncBuffer{},
		pauses: map[freeze.Source]int{}, counted: map[string]int{}, changed: make(chan struct{}, 64),
	}
	logger := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	h.corr, err = freeze.New(freeze.Config{Clock: f, Logger: logger, Emit: h.pipeline})
	if err != nil {
		t.Fatal(err)
	}
	h.det, err = pause.New(pause.Config{Tick: tick, GapThreshold: 2 * time.Second, Clock: f, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ccfg := imds.ClientConfig{Endpoint: srv.URL(), Clock: f}
	metrics := imds.Funcs{
		OnEventSeen: func(e imds.Event) {
			h.mu.Lock()
			h.counted[e.Type.Label()]++
			h.mu.Unlock()
		},
		OnFreezeEvents: func([]imds.Event) {
			select {
			case h.changed <- struct{}{}:
			default:
			}
		},
	}
	wcfg := imds.WatcherConfig{
		Observer: imds.Multi(h.corr, metrics),
		Logger:   logger,
		Clock:    f,
		Jitter:   func() float64 { return 0.5 },
	}
	for _, o := range opts {
		o(&ccfg, &wcfg)
	}
	wcfg.Client, err = imds.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	h.w, err = imds.NewWatcher(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sample() // the detector's baseline
	h.nextPoll = f.Now()
	return h
}

// pipeline is the daemon's side: count the pause by source, run the pipeline.
func (h *harness) pipeline(r freeze.Resume) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resumes = append(h.resumes, r)
	h.pauses[r.Source]++
	h.runs++
}

func (h *harness) sample() {
	now := h.f.Now()
	s := pause.Sample{Mono: now.Sub(t0) - h.hiddenMono, Real: now.Add(-h.hiddenReal)}
	if p, ok := h.det.Observe(s); ok {
		h.corr.Pause(p)
	}
}

// run lets d pass: the detector samples every tick and the watcher polls
// whenever its last answer says so.
func (h *harness) run(d time.Duration) {
	end := h.f.Now().Add(d)
	for {
		if !h.running && !h.f.Now().Before(h.nextPoll) {
			h.nextPoll = h.f.Now().Add(h.w.Poll(h.ctx))
		}
		if !h.f.Now().Before(end) {
			return
		}
		h.f.Advance(min(tick, end.Sub(h.f.Now())))
		h.sample()
	}
}

type pauseKind int

const (
	gap       pauseKind = iota // CLOCK_MONOTONIC ran through the pause
	step                       // it did not; the wall clock was stepped on resume
	invisible                  // neither clock shows it
)

// freeze pauses the VM for d: nothing runs; on resume the detector's ticker
// fires at once and an overdue poll happens.
func (h *harness) freeze(d time.Duration, k pauseKind) {
	switch k {
	case step:
		h.hiddenMono += d
	case invisible:
		h.hiddenMono += d
		h.hiddenReal += d
	}
	h.f.Advance(d)
	h.sample()
	h.run(0)
}

func (h *harness) startRun() (stop func()) {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	h.running = true
	go func() {
		defer close(done)
		h.w.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
		h.running = false
		h.nextPoll = h.f.Now()
	}
}

func (h *harness) results() (map[freeze.Source]int, int, map[string]int, []freeze.Resume) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pauses, h.runs, h.counted, h.resumes
}

func (h *harness) activeIDs() string {
	var s []string
	for _, e := range h.corr.Active() {
		s = append(s, e.ID+":"+string(e.Status))
	}
	return strings.Join(s, " ")
}

func ev(id, typ, status string, vms ...string) imdstest.Event {
	if len(vms) == 0 {
		vms = []string{"vm-0"}
	}
	e := imdstest.Event{
		EventID: id, EventType: typ, ResourceType: "VirtualMachine", Resources: vms, EventStatus: status,
		EventSource: "Platform", DurationInSeconds: 9, Description: "Host server is undergoing maintenance.",
	}
	if status == "Scheduled" {
		e.NotBefore = "Mon, 19 Sep 2016 18:29:47 GMT"
	}
	return e
}

func fz(id, status string, vms ...string) imdstest.Event { return ev(id, "Freeze", status, vms...) }

type want struct {
	pauses  map[freeze.Source]int
	counted map[string]int
	check   func(t *testing.T, h *harness, resumes []freeze.Resume)
}

func TestScenarios(t *testing.T) {
	scenarios := []struct {
		name   string
		opts   []option
		script func(h *harness)
		want   want
	}{
		{
			name: "Freeze lifecycle, pause seen by the monotonic clock",
			script: func(h *harness) {
				h.run(5 * time.Second)
				h.srv.SetEvents(fz("a", "Scheduled"))
				h.run(15 * time.Second)
				if got := h.activeIDs(); got != "a:Scheduled" {
					h.t.Errorf("while Scheduled: active %q", got)
				}
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				if got := h.activeIDs(); got != "a:Started" {
					h.t.Errorf("while Started: active %q", got)
				}
				h.freeze(9*time.Second, gap)
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(5 * time.Second)
				if got := h.activeIDs(); got != "" {
					h.t.Errorf("after removal: active %q", got)
				}
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceClock: 1},
				counted: map[string]int{"Freeze": 1},
				check: func(t *testing.T, h *harness, rs []freeze.Resume) {
					r := rs[0]
					if r.EventID != "a" || r.Description == "" || r.At.IsZero() ||
						r.Length < 9*time.Second-tick || r.Length > 9*time.Second+tick {
						t.Errorf("resume %+v", r)
					}
				},
			},
		},
		{
			name: "Freeze lifecycle, pause seen as a wall clock step",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(3 * time.Second)
				h.freeze(20*time.Second, step)
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(5 * time.Second)
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceClock: 1},
				counted: map[string]int{"Freeze": 1},
				check: func(t *testing.T, h *harness, rs []freeze.Resume) {
					if r := rs[0]; r.EventID != "a" || r.Length < 20*time.Second {
						t.Errorf("resume %+v", r)
					}
				},
			},
		},
		{
			name: "Freeze lifecycle, clocks see nothing: IMDS removal is the fallback",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled"))
				h.run(30 * time.Second)
				h.srv.SetEvents(fz("a", "Started"))
				h.run(time.Second)
				h.freeze(5*time.Second, invisible)
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(5 * time.Second)
				h.run(10 * time.Minute) // nothing more
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceIMDS: 1},
				counted: map[string]int{"Freeze": 1},
				check: func(t *testing.T, h *harness, rs []freeze.Resume) {
					if r := rs[0]; r.EventID != "a" || !r.At.IsZero() || r.Length != 0 {
						t.Errorf("resume %+v", r)
					}
				},
			},
		},
		{
			name: "pause before the poll saw Started",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled"))
				h.run(10 * time.Second)
				h.srv.SetEvents(fz("a", "Started")) // the VM freezes before the next poll
				h.freeze(7*time.Second, gap)
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(5 * time.Second)
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceClock: 1},
				counted: map[string]int{"Freeze": 1},
			},
		},
		{
			name: "cancelled event",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled"))
				h.run(15 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{pauses: map[freeze.Source]int{}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "appears directly as Started, clocks see nothing",
			script: func(h *harness) {
				h.freeze(4*time.Second, invisible)
				h.srv.SetEvents(fz("hw", "Started"))
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceIMDS: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "appears directly as Started after the clocks saw the pause",
			script: func(h *harness) {
				h.run(3 * time.Second)
				h.srv.SetEvents(fz("hw", "Started"))
				h.freeze(4*time.Second, gap)
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceClock: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "second impact while Started",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				h.freeze(8*time.Second, gap)
				h.run(40 * time.Second)
				h.freeze(3*time.Second, gap)
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceClock: 2},
				counted: map[string]int{"Freeze": 1},
				check: func(t *testing.T, h *harness, rs []freeze.Resume) {
					for _, r := range rs {
						if r.EventID != "a" {
							t.Errorf("resume %+v", r)
						}
					}
				},
			},
		},
		{
			name: "one pause, two clock signals (gap, then the wall clock's resync step)",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				h.freeze(6*time.Second, gap)
				h.run(time.Second)
				h.hiddenReal -= 3 * time.Second // the resync steps the wall clock 3 s forward
				h.run(10 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceClock: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "ids change between polls; several events at once",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled"))
				h.run(5 * time.Second)
				h.srv.SetEvents(fz("b", "Scheduled")) // a replaced by b
				h.run(5 * time.Second)
				h.srv.SetEvents(fz("b", "Started"), ev("r", "Reboot", "Scheduled"), fz("x", "Started", "vm-7"))
				h.run(time.Second)
				h.freeze(5*time.Second, invisible)
				h.srv.SetEvents(fz("c", "Started"), ev("r", "Reboot", "Scheduled")) // b replaced by c
				h.run(5 * time.Minute)
				h.srv.SetEvents(fz("c", "Started"), fz("d", "Started"), ev("r", "Reboot", "Scheduled"))
				h.run(5 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceIMDS: 1},
				counted: map[string]int{"Freeze": 4, "Reboot": 1},
				check: func(t *testing.T, h *harness, rs []freeze.Resume) {
					if rs[0].EventID != "b" {
						t.Errorf("resume %+v", rs[0])
					}
				},
			},
		},
		{
			name: "events for other VMs only",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled", "vm-7", "vm-8"), ev("r", "Reboot", "Scheduled", "vm-9"))
				h.run(10 * time.Second)
				h.srv.SetEvents(fz("a", "Started", "vm-7", "vm-8"))
				h.run(10 * time.Second)
				if got := h.activeIDs(); got != "" {
					h.t.Errorf("active %q", got)
				}
				h.srv.SetEvents()
				h.run(10 * time.Second)
			},
			want: want{pauses: map[freeze.Source]int{}, counted: map[string]int{}},
		},
		{
			name: "VM name unknown: every event counts as ours, none is approved",
			opts: []option{withApproval},
			script: func(h *harness) {
				h.srv.SetInstanceStatus(http.StatusNotFound)
				h.srv.SetEvents(fz("a", "Scheduled", "vm-7"))
				h.run(10 * time.Second)
				h.srv.SetEvents(fz("a", "Started", "vm-7"))
				h.run(10 * time.Second)
				h.srv.SetEvents()
				h.run(10 * time.Second)
				if got := h.srv.Approvals(); len(got) != 0 {
					h.t.Errorf("approved %v", got)
				}
				if n := h.log.count("cannot learn this VM's name"); n != 1 {
					h.t.Errorf("name failure logged %d times", n)
				}
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceIMDS: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "approveFreeze approves this VM's Freeze once",
			opts: []option{withApproval},
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled"), fz("o", "Scheduled", "vm-7"))
				h.run(10 * time.Second)
				h.srv.SetEvents(fz("a", "Started"), fz("o", "Scheduled", "vm-7"))
				h.freeze(3*time.Second, gap)
				h.run(time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
				if got := h.srv.Approvals(); !reflect.DeepEqual(got, []string{"a"}) {
					h.t.Errorf("approvals %v", got)
				}
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceClock: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "429 storm while Started",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				for range 15 {
					h.srv.Push(imdstest.Reply{Status: http.StatusTooManyRequests})
				}
				before := h.srv.Stats().EventGets
				h.run(5 * time.Minute)
				// Backing off: 2.5 s, 5 s, 10 s, 20 s, then 37.5 s (jitter 0.5).
				if n := h.srv.Stats().EventGets - before; n != 11 {
					h.t.Errorf("%d polls in 5 minutes of 429s", n)
				}
				h.srv.SetEvents()
				h.run(10 * time.Minute) // the storm ends within this
				if n := h.log.count("IMDS is throttling"); n != 1 {
					h.t.Errorf("throttling logged %d times", n)
				}
				if n := h.log.count("IMDS answering again"); n != 1 {
					h.t.Errorf("recovery logged %d times", n)
				}
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceIMDS: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "500 and 410 bursts around a freeze",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Scheduled"))
				h.run(2 * time.Second)
				for _, c := range []int{500, 410, 410, 503, 500, 502} {
					h.srv.Push(imdstest.Reply{Status: c})
				}
				h.srv.SetEvents(fz("a", "Started"))
				h.run(time.Second)
				h.freeze(6*time.Second, gap)
				h.run(2 * time.Minute)
				for range 8 {
					h.srv.Push(imdstest.Reply{Status: http.StatusGone})
				}
				h.srv.SetEvents()
				h.run(5 * time.Minute)
				if n := h.log.count("IMDS answered with a server error"); n != 2 {
					h.t.Errorf("server errors logged %d times (once per outage)", n)
				}
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceClock: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "garbage JSON does not end events",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				for _, b := range []string{`{"DocumentIncarnation":9,"Events":[`, `<html>maintenance</html>`, `null`,
					`{"error":"x"}`, `{"DocumentIncarnation":9,"Events":{}}`, "\x00\xff"} {
					h.srv.Push(imdstest.Reply{Body: []byte(b)})
				}
				h.run(3 * time.Minute)
				if got := h.activeIDs(); got != "a:Started" {
					h.t.Errorf("active %q after garbage", got)
				}
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceIMDS: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "10 MB body",
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				huge := []byte(`{"DocumentIncarnation":99,"Events":[],"pad":"` + strings.Repeat("x", 10<<20) + `"}`)
				h.srv.Push(imdstest.Reply{Body: huge}, imdstest.Reply{Body: huge})
				h.run(time.Minute)
				if got := h.activeIDs(); got != "a:Started" {
					h.t.Errorf("active %q after a huge body", got)
				}
				if n := h.log.count("body larger than the limit"); n < 1 {
					h.t.Error("huge body not reported")
				}
				h.srv.SetEvents()
				h.run(time.Minute)
			},
			want: want{pauses: map[freeze.Source]int{freeze.SourceIMDS: 1}, counted: map[string]int{"Freeze": 1}},
		},
		{
			name: "server hangs; the clocks carry on alone",
			opts: []option{withHangTimeout},
			script: func(h *harness) {
				h.srv.SetEvents(fz("a", "Started"))
				h.run(2 * time.Second)
				for range 4 {
					h.srv.Push(imdstest.Reply{Hang: true})
				}
				h.run(10 * time.Second)
				h.freeze(9*time.Second, gap)
				h.run(2 * time.Minute)
				h.srv.SetEvents()
				h.run(time.Minute)
				if n := h.log.count("IMDS unreachable"); n != 1 {
					h.t.Errorf("unreachable logged %d times", n)
				}
				if n := h.log.count("IMDS answering again"); n != 1 {
					h.t.Errorf("recovery logged %d times", n)
				}
			},
			want: want{
				pauses:  map[freeze.Source]int{freeze.SourceClock: 1},
				counted: map[string]int{"Freeze": 1},
				check: func(t *testing.T, h *harness, rs []freeze.Resume) {
					if rs[0].EventID != "a" {
						t.Errorf("resume %+v", rs[0])
					}
				},
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, sc.opts...)
			sc.script(h)
			pauses, runs, counted, resumes := h.results()
			total := 0
			for _, n := range sc.want.pauses {
				total += n
			}
			if !reflect.DeepEqual(pauses, sc.want.pauses) || runs != total {
				t.Errorf("pauses %v, pipeline runs %d; want %v, %d\nresumes: %s", pauses, runs, sc.want.pauses, total, fmtResumes(resumes))
			}
			if !reflect.DeepEqual(counted, sc.want.counted) {
				t.Errorf("counted events %v, want %v", counted, sc.want.counted)
			}
			if sc.want.check != nil && len(resumes) > 0 {
				sc.want.check(t, h, resumes)
			}
		})
	}
}

func fmtResumes(rs []freeze.Resume) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("{%s %s %s %q}", r.Source, r.At.Format(time.TimeOnly), r.Length, r.EventID))
	}
	return strings.Join(s, " ")
}

// A fresh VM: the first scheduled events call is answered after two minutes.
// Start-up does not wait for it, pauses are handled meanwhile, the watcher
// sends no second request while the first is pending, and the answer counts.
func TestFirstCallAfterTwoMinutes(t *testing.T) {
	h := newHarness(t)
	h.srv.SetEvents(fz("a", "Scheduled"))
	h.srv.Push(imdstest.Reply{Delay: 2 * time.Minute})
	stop := h.startRun()
	for p := range h.srv.Arrived() {
		if p == "/metadata/scheduledevents" {
			break
		}
	}
	h.f.BlockUntil(2) // the client's timeout and the server's delay
	h.run(10 * time.Second)
	h.freeze(5*time.Second, gap) // the clocks still work
	if p, runs, _, _ := h.results(); runs != 1 || p[freeze.SourceClock] != 1 {
		t.Fatalf("while IMDS is silent: pauses %v, runs %d", p, runs)
	}
	h.run(2*time.Minute - 15*time.Second - tick)
	if got := h.activeIDs(); got != "" {
		t.Fatalf("active %q before IMDS answered", got)
	}
	h.run(tick)
	<-h.changed
	stop()
	if got := h.activeIDs(); got != "a:Scheduled" {
		t.Errorf("active %q after the answer", got)
	}
	if st := h.srv.Stats(); st.EventGets != 1 || st.MaxInFlight != 1 {
		t.Errorf("server stats %+v", st)
	}
	if n := h.log.count("IMDS unreachable"); n != 0 {
		t.Error("the slow first call was reported as unreachable")
	}
	// The rest of the lifecycle, clocks seeing nothing.
	h.srv.SetEvents(fz("a", "Started"))
	h.run(10 * time.Second)
	h.freeze(5*time.Second, invisible)
	h.srv.SetEvents()
	h.run(time.Minute)
	pauses, runs, counted, _ := h.results()
	if want := map[freeze.Source]int{freeze.SourceClock: 1, freeze.SourceIMDS: 1}; !reflect.DeepEqual(pauses, want) || runs != 2 {
		t.Errorf("pauses %v runs %d", pauses, runs)
	}
	if want := map[string]int{"Freeze": 1}; !reflect.DeepEqual(counted, want) {
		t.Errorf("counted %v", counted)
	}
}
