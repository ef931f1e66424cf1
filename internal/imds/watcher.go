package imds

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

// Observer receives what a Watcher learns. Calls come from the Watcher's
// goroutine, one at a time and in order; they must return quickly and must not
// modify the events they are given.
type Observer interface {
	// Up reports a change of reachability: up after a poll succeeded, down
	// (with the error) after one failed. The first outcome is always reported.
	Up(up bool, err error)
	// EventSeen reports a scheduled event for this VM seen for the first time:
	// once per event id (and once more if IMDS changes the id's EventType).
	EventSeen(e Event)
	// FreezeStarted reports that a Freeze event for this VM is Started: when
	// its status turns Started, or when it first appears already Started. Once
	// per event id. since is when IMDS's previous answer, the last one that
	// did not show it Started, arrived (on the Watcher's clock): the event
	// turned Started after about since. It is zero when the answer showing it
	// Started was IMDS's first.
	FreezeStarted(e Event, since time.Time)
	// FreezeRemoved reports that a Freeze event for this VM left the list:
	// it is over if started, cancelled if not.
	FreezeRemoved(e Event, started bool)
	// FreezeEvents reports the current Freeze events for this VM (Scheduled or
	// Started; an event IMDS later relabels keeps counting as one), sorted by
	// key, whenever that list changes.
	FreezeEvents(events []Event)
}

// Funcs is an Observer made of optional functions.
type Funcs struct {
	OnUp            func(up bool, err error)
	OnEventSeen     func(e Event)
	OnFreezeStarted func(e Event, since time.Time)
	OnFreezeRemoved func(e Event, started bool)
	OnFreezeEvents  func(events []Event)
}

var _ Observer = Funcs{}

func (f Funcs) Up(up bool, err error) {
	if f.OnUp != nil {
		f.OnUp(up, err)
	}
}

func (f Funcs) EventSeen(e Event) {
	if f.OnEventSeen != nil {
		f.OnEventSeen(e)
	}
}

func (f Funcs) FreezeStarted(e Event, since time.Time) {
	if f.OnFreezeStarted != nil {
		f.OnFreezeStarted(e, since)
	}
}

func (f Funcs) FreezeRemoved(e Event, started bool) {
	if f.OnFreezeRemoved != nil {
		f.OnFreezeRemoved(e, started)
	}
}

func (f Funcs) FreezeEvents(events []Event) {
	if f.OnFreezeEvents != nil {
		f.OnFreezeEvents(events)
	}
}

// Multi returns an Observer that calls each of obs in turn.
func Multi(obs ...Observer) Observer { return multi(slices.Clone(obs)) }

type multi []Observer

func (m multi) Up(up bool, err error) {
	for _, o := range m {
		o.Up(up, err)
	}
}

func (m multi) EventSeen(e Event) {
	for _, o := range m {
		o.EventSeen(e)
	}
}

func (m multi) FreezeStarted(e Event, since time.Time) {
	for _, o := range m {
		o.FreezeStarted(e, since)
	}
}

func (m multi) FreezeRemoved(e Event, started bool) {
	for _, o := range m {
		o.FreezeRemoved(e, started)
	}
}

func (m multi) FreezeEvents(events []Event) {
	for _, o := range m {
		o.FreezeEvents(slices.Clone(events))
	}
}

// Defaults for WatcherConfig.
const (
	DefaultPollInterval = time.Second
	// DefaultFirstTimeout bounds scheduled events calls until IMDS has answered
	// once: the first call on a fresh VM enables the service and can take up
	// to two minutes.
	DefaultFirstTimeout = 130 * time.Second
	DefaultMaxBackoff   = 30 * time.Second
	DefaultSlowRetry    = time.Minute
)

// Backoff bases; each doubles per consecutive failure up to its cap.
const (
	throttledBase   = 2 * time.Second
	serverBase      = time.Second
	unreachableBase = 5 * time.Second
	// pauseSlack: a timed-out request that took longer than its timeout by
	// more than this did not run for part of its time (the process or the
	// VM was paused), so its timeout says nothing about IMDS.
	pauseSlack      = time.Second
	nameRetryBase   = 5 * time.Second
	nameRetryMax    = 5 * time.Minute
	maxApproveTries = 3
)

// Bounds on the work one document can cause; what IMDS sends is outside
// input, and a document may list thousands of events.
const (
	// maxTracked is how many of this VM's events are followed at once. Azure
	// documents a handful per VM (one per kind of maintenance pending: a
	// Freeze, a Reboot or Redeploy, a Preempt, a Terminate); 64 leaves an
	// order of magnitude of room for ids replaced at every state change and
	// several maintenances at once, while keeping each poll's work, the
	// observer's calls and the state shown to people small. Events beyond it
	// are not followed, and that is said once (per reason).
	maxTracked = 64
	// maxChangesLogged is how many events one poll names one by one (new,
	// changed, over); past it the poll's changes are summarised in one line.
	maxChangesLogged = 8
)

// Reasons a poll summarises instead of logging event by event.
const (
	noisyOverCap = "over cap"
	noisyChurn   = "churn"
)

// WatcherConfig configures a Watcher. Zero values take the defaults.
type WatcherConfig struct {
	Client   *Client // required
	Observer Observer
	Logger   *slog.Logger
	Clock    clock.Clock // default clock.Real
	// PollInterval is the time between polls while IMDS answers and an event
	// for this VM is listed.
	PollInterval time.Duration
	// IdlePollInterval is the time between polls while no event for this VM
	// is listed (0: PollInterval). Events are announced well ahead (15 min
	// for a Freeze), and each poll wakes the daemon on every node.
	IdlePollInterval time.Duration
	// ResourceName is this VM's name as events name it; "" means learn
	// compute.name from instance metadata (retried until it succeeds; until
	// then every event counts as this VM's).
	ResourceName string
	// ApproveFreeze approves (StartRequests) Scheduled Freeze events naming
	// this VM. Never done while the VM's name is unknown.
	ApproveFreeze bool
	// FirstTimeout is the request timeout until IMDS first answers.
	FirstTimeout time.Duration
	// MaxBackoff caps the backoff after 429, 410, 5xx and bad bodies.
	MaxBackoff time.Duration
	// SlowRetry is the retry interval when IMDS is unreachable (the cap of its
	// backoff) or rejects the request (400, 404, …).
	SlowRetry time.Duration
	// Jitter returns a number in [0, 1); default math/rand/v2.Float64.
	Jitter func() float64
}

type tracked struct {
	ev            Event
	counted       map[EventType]bool
	freeze        bool // it has been a Freeze event
	started       bool // it has been a Started Freeze event
	approved      bool
	approveTries  int
	loggedUnknown bool
}

type upState int

const (
	upUnknown upState = iota
	upYes
	upNo
)

// Watcher polls scheduled events and tracks this VM's events across polls.
// Run (or Poll) must be called from one goroutine; FreezeEvents and VMName may
// be called from any.
type Watcher struct {
	client, first *Client
	obs           Observer
	log           *slog.Logger
	clk           clock.Clock
	interval      time.Duration
	idle          time.Duration // between polls while no event for this VM is listed
	maxBackoff    time.Duration
	slowRetry     time.Duration
	jitter        func() float64
	approve       bool

	events  map[string]*tracked
	etag    string
	lastDoc Document
	haveDoc bool

	answered bool      // IMDS has answered once (any status)
	lastOK   time.Time // when the last successful poll was answered
	// pauseRetried: the last poll timed out across a pause and was not
	// counted as a failure; the next one is (see Poll).
	pauseRetried bool
	up           upState
	failures     int // consecutive failed polls
	outageStart  time.Time
	logged       map[Failure]bool // failure kinds logged in this outage
	noisy        map[string]bool  // summaries said, per reason, while it lasts

	nameTries     int
	nextNameTry   time.Time
	nameErrLogged bool

	mu       sync.Mutex
	name     string
	snapshot []Event
}

// NewWatcher returns a Watcher for cfg.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Client == nil {
		return nil, errors.New("imds: watcher needs a client")
	}
	if cfg.PollInterval < 0 || cfg.FirstTimeout < 0 || cfg.MaxBackoff < 0 || cfg.SlowRetry < 0 {
		return nil, errors.New("imds: negative interval")
	}
	if cfg.Observer == nil {
		cfg.Observer = Funcs{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.IdlePollInterval < cfg.PollInterval {
		cfg.IdlePollInterval = cfg.PollInterval
	}
	if cfg.FirstTimeout == 0 {
		cfg.FirstTimeout = DefaultFirstTimeout
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.SlowRetry == 0 {
		cfg.SlowRetry = DefaultSlowRetry
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	name := strings.TrimSpace(cfg.ResourceName)
	return &Watcher{
		client:     cfg.Client,
		first:      cfg.Client.WithTimeout(max(cfg.FirstTimeout, cfg.Client.Timeout())),
		obs:        cfg.Observer,
		log:        cfg.Logger,
		clk:        cfg.Clock,
		interval:   cfg.PollInterval,
		idle:       cfg.IdlePollInterval,
		maxBackoff: cfg.MaxBackoff,
		slowRetry:  cfg.SlowRetry,
		jitter:     cfg.Jitter,
		approve:    cfg.ApproveFreeze,
		name:       name,
		events:     map[string]*tracked{},
		logged:     map[Failure]bool{},
		noisy:      map[string]bool{},
	}, nil
}

// Run polls until ctx ends. It blocks: start it on its own goroutine, so that
// nothing waits for IMDS (the first answer on a fresh VM can take two minutes).
func (w *Watcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		d := w.Poll(ctx)
		if clock.Sleep(ctx, w.clk, d) != nil {
			return
		}
	}
}

// FreezeEvents returns the current Freeze events for this VM, sorted by key.
func (w *Watcher) FreezeEvents() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.snapshot)
}

// VMName returns the name events must carry to count as this VM's, "" while
// it is unknown.
func (w *Watcher) VMName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.name
}

// Poll runs one polling cycle — learn the VM's name if due, fetch the
// document, update the tracked events, approve if configured — and returns the
// time to wait before the next one.
func (w *Watcher) Poll(ctx context.Context) time.Duration {
	if w.VMName() == "" && !w.clk.Now().Before(w.nextNameTry) {
		w.learnName(ctx)
	}
	if ctx.Err() != nil {
		return 0
	}
	c := w.client
	if !w.answered {
		c = w.first
	}
	start := w.clk.Now()
	resp, err := c.ScheduledEvents(ctx, w.etag)
	if ctx.Err() != nil {
		return 0
	}
	retried := w.pauseRetried
	w.pauseRetried = false
	if err != nil {
		if took := w.clk.Now().Sub(start); !retried && errors.Is(err, ErrTimeout) && took > c.Timeout()+pauseSlack {
			// The request's time ran out while this process did not run (a
			// VM freeze or a SIGSTOP spanned it): IMDS had no fair chance
			// to answer. Ask again at once, once, before calling it
			// unreachable.
			w.pauseRetried = true
			w.log.Debug("IMDS request spanned a pause; asking again", "took", took.Round(time.Millisecond), "timeout", c.Timeout())
			return 0
		}
		return w.failed(err)
	}
	w.answered = true
	w.succeeded()
	since := w.lastOK
	w.lastOK = w.clk.Now()
	switch {
	case resp.NotModified:
		w.log.Debug("scheduled events not modified")
	case w.haveDoc && resp.Document.Incarnation >= 0 && resp.Document.Incarnation == w.lastDoc.Incarnation:
		w.etag = resp.ETag
		w.log.Debug("scheduled events unchanged", "incarnation", resp.Document.Incarnation)
	default:
		w.etag = resp.ETag
		w.process(resp.Document, since)
	}
	w.approvePending(ctx)
	if len(w.events) == 0 {
		return w.idle
	}
	return w.interval
}

func (w *Watcher) succeeded() {
	if w.failures > 0 {
		w.log.Info("IMDS answering again",
			"failed_polls", w.failures, "after", w.clk.Now().Sub(w.outageStart).Round(time.Second))
	} else if w.up == upUnknown {
		w.log.Info("IMDS scheduled events available")
	}
	w.failures = 0
	clear(w.logged)
	if w.up != upYes {
		w.up = upYes
		w.obs.Up(true, nil)
	}
}

func (w *Watcher) failed(err error) time.Duration {
	kind := Classify(err)
	if kind != FailUnreachable {
		w.answered = true
	}
	if w.failures == 0 {
		w.outageStart = w.clk.Now()
	}
	w.failures++
	if w.up != upNo {
		w.up = upNo
		w.obs.Up(false, err)
	}
	d := w.backoff(kind, err)
	if w.logged[kind] {
		w.log.Debug("IMDS poll failed", "failure", string(kind), "err", err, "retry_in", d)
		return d
	}
	w.logged[kind] = true
	switch kind {
	case FailUnreachable:
		w.log.Warn("IMDS unreachable; VM pauses are detected from the clocks alone until it answers",
			"err", err, "retry_in", d)
	case FailThrottled:
		w.log.Warn("IMDS is throttling (429): the 5 requests/s budget is shared with every IMDS client on this VM; backing off",
			"err", err, "retry_in", d)
	case FailServer:
		w.log.Warn("IMDS answered with a server error; retrying with backoff", "err", err, "retry_in", d)
	case FailRejected:
		w.log.Error("IMDS rejected the scheduled events request; this is not Azure's IMDS, or it does not serve "+
			"api-version 2020-07-01 (set imds.enabled: false off Azure); retrying slowly",
			"err", err, "retry_in", d)
	case FailBadBody:
		w.log.Warn("IMDS answered something that is not a scheduled events document; keeping the last known events",
			"err", err, "retry_in", d)
	}
	return d
}

// backoff is the wait before the next poll after the w.failures-th failure in
// a row, jittered to [d, 1.5d) and never below the poll interval.
func (w *Watcher) backoff(kind Failure, err error) time.Duration {
	var d time.Duration
	switch kind {
	case FailThrottled:
		d = expo(throttledBase, w.failures, w.maxBackoff)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > d {
			d = se.RetryAfter
		}
	case FailServer, FailBadBody:
		d = expo(serverBase, w.failures, w.maxBackoff)
	case FailUnreachable:
		d = expo(unreachableBase, w.failures, w.slowRetry)
	default:
		d = w.slowRetry
	}
	return max(w.jittered(d), w.interval)
}

func (w *Watcher) jittered(d time.Duration) time.Duration {
	j := w.jitter()
	if !(j >= 0 && j < 1) {
		j = 0
	}
	return d + time.Duration(j*float64(d)/2)
}

// expo is base·2^(n−1), capped.
func expo(base time.Duration, n int, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (w *Watcher) learnName(ctx context.Context) {
	name, err := w.client.InstanceName(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		w.nameTries++
		retry := w.jittered(expo(nameRetryBase, w.nameTries, nameRetryMax))
		w.nextNameTry = w.clk.Now().Add(retry)
		if !w.nameErrLogged {
			w.nameErrLogged = true
			w.log.Warn("cannot learn this VM's name from instance metadata; every scheduled event counts as this VM's "+
				"until it is known, and none is approved (imds.resourceName sets it)",
				"err", err, "retry_in", retry)
		} else {
			w.log.Debug("VM name still unknown", "err", err, "retry_in", retry)
		}
		return
	}
	w.mu.Lock()
	w.name = name
	w.mu.Unlock()
	w.log.Info("VM name learned from instance metadata", "vm_name", name, "tries", w.nameTries+1)
	if w.haveDoc {
		w.process(w.lastDoc, w.lastOK)
	}
}

func (w *Watcher) isOurs(e Event, name string) bool {
	return name == "" || e.Names(name)
}

// process takes a new document; since is when IMDS answered before it.
func (w *Watcher) process(doc Document, since time.Time) {
	w.lastDoc, w.haveDoc = doc, true
	name := w.VMName()
	if doc.Skipped > 0 {
		w.log.Debug("scheduled events document had entries that are not objects", "skipped", doc.Skipped)
	}
	present := make(map[string]bool, len(doc.Events))
	ours := map[string]bool{}
	others, dropped, changes := 0, 0, 0
	// A poll's changes are named one by one only when they are few; they
	// are held until the poll is over to know that.
	var named [maxChangesLogged]func()
	logChange := func(msg string, attrs func() []any) {
		if changes < maxChangesLogged {
			named[changes] = func() { w.log.Info(msg, attrs()...) }
		}
		changes++
	}
	// Events already followed keep their place; new ones take what is left.
	room := maxTracked
	for _, e := range doc.Events {
		if w.events[e.Key()] != nil && w.isOurs(e, name) {
			room--
		}
	}
	for _, e := range doc.Events {
		key := e.Key()
		present[key] = true
		if !w.isOurs(e, name) {
			others++
			continue
		}
		if ours[key] {
			continue // the same id twice in one document: the first wins
		}
		t := w.events[key]
		if t == nil {
			if room <= 0 {
				dropped++
				continue
			}
			room--
		}
		ours[key] = true
		if t == nil {
			t = &tracked{counted: map[EventType]bool{}}
			w.events[key] = t
			logChange("scheduled event for this VM", func() []any { return eventAttrs(e, name) })
		} else if t.ev.Status != e.Status || t.ev.Type != e.Type {
			was := t.ev.Status
			logChange("scheduled event changed", func() []any { return append(eventAttrs(e, name), "was", printable([]byte(was), 64)) })
		}
		if (!e.Type.Known() || !e.Status.Known()) && !t.loggedUnknown {
			t.loggedUnknown = true
			w.log.Debug("scheduled event with an undocumented type or status; kept as is", eventAttrs(e, name)...)
		}
		t.ev = e
		if !t.counted[e.Type] {
			t.counted[e.Type] = true
			w.obs.EventSeen(e)
		}
		if e.Type == Freeze {
			t.freeze = true
			if e.Status == Started && !t.started {
				t.started = true
				w.obs.FreezeStarted(e, since)
			}
		}
	}
	if others > 0 {
		w.log.Debug("scheduled events for other VMs ignored", "count", others, "vm_name", name)
	}
	for _, key := range slices.Sorted(maps.Keys(w.events)) {
		if ours[key] {
			continue
		}
		t := w.events[key]
		delete(w.events, key)
		if present[key] && w.isOurs(t.ev, name) {
			continue // ours still, beyond the cap: no longer followed
		}
		if present[key] {
			// Counted as ours while the VM's name was unknown; it is not.
			w.log.Debug("scheduled event is not this VM's after all", eventAttrs(t.ev, name)...)
			continue
		}
		logChange("scheduled event over", func() []any { return append(eventAttrs(t.ev, name), "was_started", t.started) })
		if t.freeze {
			w.obs.FreezeRemoved(t.ev, t.started)
		}
	}
	w.summarise(noisyOverCap, dropped > 0, func() {
		w.log.Warn("scheduled events document lists more events for this VM than nodekeeper follows; the rest are not tracked "+
			"(Azure lists a handful per VM: this document is not what IMDS normally sends)",
			"not_tracked", dropped, "tracked", len(w.events), "listed", len(doc.Events), "max_tracked", maxTracked)
	})
	if changes <= maxChangesLogged {
		for _, say := range named[:changes] {
			say()
		}
	}
	w.summarise(noisyChurn, changes > maxChangesLogged, func() {
		w.log.Warn("scheduled events for this VM change faster than they can be named one by one; "+
			"further changes are summarised while this lasts",
			"changes", changes, "named", maxChangesLogged)
	})
	w.publish()
}

// summarise says, once while it lasts, what a poll did not say event by
// event; once a poll is calm again for that reason, a recurrence is said
// again.
func (w *Watcher) summarise(reason string, now bool, say func()) {
	switch {
	case !now:
		delete(w.noisy, reason)
	case !w.noisy[reason]:
		w.noisy[reason] = true
		say()
	}
}

func (w *Watcher) publish() {
	var list []Event
	for _, t := range w.events {
		if t.freeze {
			list = append(list, t.ev)
		}
	}
	slices.SortFunc(list, func(a, b Event) int { return strings.Compare(a.Key(), b.Key()) })
	w.mu.Lock()
	same := reflect.DeepEqual(list, w.snapshot)
	if !same {
		w.snapshot = list
	}
	w.mu.Unlock()
	if !same {
		w.obs.FreezeEvents(slices.Clone(list))
	}
}

func (w *Watcher) approvePending(ctx context.Context) {
	name := w.VMName()
	if !w.approve || name == "" {
		return
	}
	for _, key := range slices.Sorted(maps.Keys(w.events)) {
		t := w.events[key]
		e := t.ev
		if e.Type != Freeze || e.Status != Scheduled || e.ID == "" || t.approved ||
			t.approveTries >= maxApproveTries || !e.Names(name) {
			continue
		}
		err := w.client.Approve(ctx, e.ID)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t.approveTries++
			w.log.Warn("cannot approve Freeze event", "event_id", e.ID, "try", t.approveTries, "err", err)
			continue
		}
		t.approved = true
		w.log.Info("approved Freeze event; it starts now for every VM it names",
			"event_id", e.ID, "resources", strings.Join(e.Resources, ","))
	}
}

func eventAttrs(e Event, name string) []any {
	a := []any{
		"event_id", printable([]byte(e.ID), 64),
		"event_type", printable([]byte(e.Type), 64),
		"event_status", printable([]byte(e.Status), 64),
	}
	if !e.NotBefore.IsZero() {
		a = append(a, "not_before", e.NotBefore)
	} else if e.NotBeforeRaw != "" {
		a = append(a, "not_before", printable([]byte(e.NotBeforeRaw), 64))
	}
	if e.Description != "" {
		a = append(a, "description", printable([]byte(e.Description), 200))
	}
	if e.DurationSeconds >= 0 {
		a = append(a, "duration_seconds", e.DurationSeconds)
	}
	if name == "" {
		a = append(a, "vm_name", "unknown")
	}
	return a
}
