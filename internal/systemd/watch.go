package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

const (
	// watchQueueMax bounds the changes waiting for a slow reader; beyond it the
	// oldest are dropped (the reader still gets the latest state).
	watchQueueMax = 256
	// watchCallTimeout bounds each step of (re)establishing a watch.
	watchCallTimeout = 10 * time.Second
)

// Watch implements Watcher.
//
// Each Watch has a bus connection of its own with one match rule per unit,
//
//	type='signal',sender='org.freedesktop.systemd1',path='<unit path>',
//	interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'
//
// plus one for NameOwnerChanged of org.freedesktop.systemd1, so the process
// only ever receives the signals of the units it watches. go-systemd's
// Subscribe and SubscribeUnits* are not used: the first matches every unit's
// signals, the second polls ListUnits.
//
// A match rule alone is not enough: systemd puts a unit's PropertiesChanged on
// the system bus only while some client is subscribed, either to everything
// (Manager.Subscribe) or to that unit (Unit.Ref) — systemd's bus_foreach_bus
// sends to the API bus only if its "subscribed" track or the unit's own bus
// track is non-empty, and unit_add_to_dbus_queue does not even queue the
// signal otherwise. On a node where no other client happens to be subscribed a
// bare match rule would stay silent. So Watch calls Unit.Ref on each watched
// unit from its own connection: systemd then emits that unit's signals and no
// other unit's, the reference ends with the connection, and systemd keeps it
// across daemon-reexec (units serialize their references). A referenced unit
// is not garbage-collected while the watch lasts. (Restart needs neither:
// systemd sends JobRemoved to the client that queued the job.)
//
// For every change of a unit systemd emits its type-specific PropertiesChanged
// (Service: MainPID) immediately followed by the Unit one (ActiveState,
// SubState), an order its sources say clients may rely on for atomic updates.
// Watch keeps a per-unit snapshot fed by those signals and reports on the Unit
// signal, when ActiveState or MainPID differs from the last report. Values are
// never mixed with ones read later (a Get after the fact returns a newer state
// than the signal's); Properties.Get is used only for the baseline at
// (re)connection and for a property a signal invalidates without a value.
//
// When the connection drops, Watch logs it once and re-establishes it (first
// at once, then with backoff on the Conn's clock), re-installs the match rules
// and references, and reports one Change with Reconnected set per unit. It
// does the same when systemd reappears on the bus (re-exec, reconnect to a
// restarted dbus-daemon).
func (c *Conn) Watch(ctx context.Context, names ...string) (<-chan Change, error) {
	if len(names) == 0 {
		return nil, errors.New("watch: no unit names")
	}
	if slices.Contains(names, "") {
		return nil, errors.New("watch: empty unit name")
	}
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	w := &watcher{
		c:      c,
		log:    c.log.With("units", names),
		names:  names,
		byPath: make(map[godbus.ObjectPath]string, len(names)),
		cur:    make(map[string]Change, len(names)),
		last:   make(map[string]Change, len(names)),
		out:    make(chan Change, 8),
	}
	for _, n := range names {
		w.byPath[unitPath(n)] = n
	}
	wctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(c.life, cancel)
	if err := w.attempt(wctx); err != nil {
		stopOnClose()
		cancel()
		w.closeBus()
		return nil, fmt.Errorf("watch %v: %w", names, err)
	}
	go func() {
		defer cancel()
		defer stopOnClose()
		w.run(wctx)
	}()
	return w.out, nil
}

type watcher struct {
	c      *Conn
	log    *slog.Logger
	names  []string
	byPath map[godbus.ObjectPath]string
	cur    map[string]Change // state per unit as of the latest signal
	last   map[string]Change // last reported (or baseline) state per unit
	out    chan Change
	queue  []Change

	bus        *godbus.Conn
	sigs       chan *godbus.Signal
	subscribed bool   // references taken and baseline read on this connection
	owner      string // systemd's unique bus name when the references were taken
	everUp     bool   // a watch was established once: later ones report Reconnected
	down       bool   // a loss is logged and not yet recovered
	fails      int
	retry      clock.Timer // armed after a failed attempt
	overflow   bool
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	defer w.closeBus()
	defer func() {
		if w.retry != nil {
			w.retry.Stop()
		}
	}()
	for {
		var (
			out     chan<- Change
			head    Change
			retry   <-chan time.Time
			busDone <-chan struct{}
		)
		if len(w.queue) > 0 {
			out, head = w.out, w.queue[0]
		}
		if w.retry != nil {
			retry = w.retry.C()
		}
		if w.bus != nil {
			busDone = w.bus.Context().Done()
		}
		select {
		case <-ctx.Done():
			return
		case out <- head:
			w.queue = w.queue[1:]
			if len(w.queue) == 0 {
				w.queue, w.overflow = nil, false
			}
		case sig, ok := <-w.sigs:
			if !ok {
				w.lost(ctx)
				continue
			}
			w.handle(ctx, sig)
		case <-busDone:
			w.lost(ctx)
		case <-retry:
			w.retry = nil
			w.try(ctx)
		}
	}
}

// try runs attempt and arms the retry timer when it fails.
func (w *watcher) try(ctx context.Context) {
	err := w.attempt(ctx)
	if err == nil || ctx.Err() != nil {
		return
	}
	w.fails++
	wait := backoff(w.fails)
	if w.fails == 1 {
		w.log.Warn("cannot re-establish the unit watch; retrying with backoff", "err", err)
	} else {
		w.log.Debug("re-establishing the unit watch failed", "attempt", w.fails, "retry_in", wait, "err", err)
	}
	if w.retry != nil {
		w.retry.Stop()
	}
	w.retry = w.c.clk.NewTimer(wait)
}

// attempt connects (when not connected), installs the match rules, takes the
// unit references and reads the baseline state.
func (w *watcher) attempt(ctx context.Context) error {
	if w.bus != nil && w.subscribed {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, watchCallTimeout)
	defer cancel()
	if w.bus == nil {
		if err := w.open(actx, ctx); err != nil {
			return err
		}
	}
	var owner string
	err := w.bus.BusObject().CallWithContext(actx, "org.freedesktop.DBus.GetNameOwner", 0, systemdBusName).Store(&owner)
	if err != nil {
		return mapError("find systemd on the bus", err)
	}
	for path, name := range w.byPath {
		err := w.bus.Object(systemdBusName, path).CallWithContext(actx, unitIface+".Ref", 0).Store()
		if err != nil {
			return mapError("reference unit "+name, err)
		}
	}
	for _, name := range w.names {
		st, err := w.read(actx, name, Change{Unit: name}, false, false)
		if err != nil {
			return err
		}
		w.cur[name], w.last[name] = st, st
		if w.everUp {
			st.Reconnected = true
			w.push(st)
		}
	}
	w.subscribed, w.owner = true, owner
	if w.down {
		w.log.Info("unit watch re-established", "failed_attempts", w.fails)
		w.down = false
	}
	w.everUp = true
	w.fails = 0
	if w.retry != nil {
		w.retry.Stop()
		w.retry = nil
	}
	return nil
}

// open dials the watch's own connection and installs the match rules.
func (w *watcher) open(ctx, life context.Context) error {
	bus, err := w.c.dialBus(ctx, life)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	sigs := make(chan *godbus.Signal, 256) // godbus reorders signals it cannot queue
	bus.Signal(sigs)
	add := func(opts ...godbus.MatchOption) error {
		if err := bus.AddMatchSignalContext(ctx, opts...); err != nil {
			bus.Close()
			return fmt.Errorf("add match rule: %w", err)
		}
		return nil
	}
	err = add(
		godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchInterface("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged"),
		godbus.WithMatchArg(0, systemdBusName))
	if err != nil {
		return err
	}
	for path := range w.byPath {
		if err := add(propertiesChangedMatch(path)...); err != nil {
			return err
		}
	}
	w.bus, w.sigs, w.subscribed = bus, sigs, false
	return nil
}

// propertiesChangedMatch is the match rule of one unit's PropertiesChanged.
func propertiesChangedMatch(path godbus.ObjectPath) []godbus.MatchOption {
	return []godbus.MatchOption{
		godbus.WithMatchSender(systemdBusName),
		godbus.WithMatchObjectPath(path),
		godbus.WithMatchInterface(propsIface),
		godbus.WithMatchMember("PropertiesChanged"),
	}
}

func (w *watcher) closeBus() {
	if w.bus != nil {
		w.bus.Close()
	}
	w.bus, w.sigs, w.subscribed, w.owner = nil, nil, false, ""
}

// lost handles a dropped connection: log once, then re-establish.
func (w *watcher) lost(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	w.closeBus()
	if !w.down {
		// Info: Conn warns about the loss; a failure to re-establish warns here.
		w.log.Info("D-Bus connection of the unit watch lost; re-establishing")
		w.down = true
	}
	if w.retry == nil {
		w.try(ctx)
	}
}

func (w *watcher) handle(ctx context.Context, sig *godbus.Signal) {
	switch sig.Name {
	case "org.freedesktop.DBus.NameOwnerChanged":
		var name, oldOwner, newOwner string
		if godbus.Store(sig.Body, &name, &oldOwner, &newOwner) != nil || name != systemdBusName {
			return
		}
		// systemd left the bus or came back (re-exec, restarted dbus-daemon):
		// take the references again and re-read the state — unless they were
		// just taken from this very owner.
		if w.subscribed && newOwner == w.owner {
			return
		}
		w.subscribed = false
		if newOwner == "" {
			w.log.Debug("systemd left the bus; waiting for it to return")
			return
		}
		w.try(ctx)
	case propsIface + ".PropertiesChanged":
		name, ok := w.byPath[sig.Path]
		if !ok || !w.subscribed {
			return
		}
		w.propertiesChanged(ctx, name, sig.Body)
	}
}

// propertiesChanged updates the unit's snapshot from one signal and reports a
// change after the Unit-interface signal.
func (w *watcher) propertiesChanged(ctx context.Context, name string, body []any) {
	u := parsePropertiesChanged(name, body)
	cur := w.cur[name]
	cur.Unit = name
	switch u.iface {
	case serviceIface:
		if u.havePID {
			cur.MainPID = u.MainPID
		} else if u.pidInvalid {
			w.refresh(ctx, name, &cur, false, true)
		}
		w.cur[name] = cur
		return // the Unit signal follows
	case unitIface:
		if u.haveState {
			cur.ActiveState, cur.SubState = u.ActiveState, u.SubState
		} else if u.stateInvalid {
			w.refresh(ctx, name, &cur, true, false)
		} else {
			return
		}
		w.cur[name] = cur
	default:
		return
	}
	if prev, ok := w.last[name]; ok && prev.ActiveState == cur.ActiveState && prev.MainPID == cur.MainPID {
		return
	}
	w.last[name] = cur
	w.push(cur)
}

// refresh reads invalidated properties into c; on failure c keeps its values.
func (w *watcher) refresh(ctx context.Context, name string, c *Change, state, pid bool) {
	rctx, cancel := context.WithTimeout(ctx, watchCallTimeout)
	defer cancel()
	got, err := w.read(rctx, name, *c, !state, !pid)
	if err != nil {
		w.log.Debug("read invalidated unit properties", "unit", name, "err", err)
		return
	}
	*c = got
}

// propsUpdate is what one PropertiesChanged signal says about a unit.
type propsUpdate struct {
	Change
	iface        string
	haveState    bool // ActiveState and SubState carried (Unit interface)
	stateInvalid bool // one of them invalidated without a value
	havePID      bool // MainPID carried (Service interface)
	pidInvalid   bool
}

// parsePropertiesChanged extracts what a PropertiesChanged signal
// (interface, changed, invalidated) carries for a unit.
func parsePropertiesChanged(name string, body []any) propsUpdate {
	u := propsUpdate{Change: Change{Unit: name}}
	if len(body) < 2 {
		return u
	}
	u.iface, _ = body[0].(string)
	changed, _ := body[1].(map[string]godbus.Variant)
	var invalidated []string
	if len(body) >= 3 {
		invalidated, _ = body[2].([]string)
	}
	switch u.iface {
	case unitIface:
		as, ok1 := variantString(changed, "ActiveState")
		ss, ok2 := variantString(changed, "SubState")
		u.ActiveState, u.SubState, u.haveState = as, ss, ok1 && ok2
		u.stateInvalid = !u.haveState && (ok1 || ok2 ||
			slices.Contains(invalidated, "ActiveState") || slices.Contains(invalidated, "SubState"))
	case serviceIface:
		if v, ok := changed["MainPID"]; ok {
			u.MainPID, u.havePID = v.Value().(uint32)
		}
		u.pidInvalid = !u.havePID && slices.Contains(invalidated, "MainPID")
	}
	return u
}

func variantString(m map[string]godbus.Variant, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	s, ok := v.Value().(string)
	return s, ok
}

// read completes c with the properties not yet known, read from systemd.
func (w *watcher) read(ctx context.Context, name string, c Change, haveState, havePID bool) (Change, error) {
	obj := w.bus.Object(systemdBusName, unitPath(name))
	get := func(iface, prop string, dst any) error {
		var v godbus.Variant
		if err := obj.CallWithContext(ctx, propsIface+".Get", 0, iface, prop).Store(&v); err != nil {
			return mapError(fmt.Sprintf("read %s of %s", prop, name), err)
		}
		return godbus.Store([]any{v.Value()}, dst)
	}
	if !haveState {
		if err := get(unitIface, "ActiveState", &c.ActiveState); err != nil {
			return c, err
		}
		if err := get(unitIface, "SubState", &c.SubState); err != nil {
			return c, err
		}
	}
	if !havePID && isService(name) {
		err := get(serviceIface, "MainPID", &c.MainPID)
		if err != nil && busErrorName(err) != "org.freedesktop.DBus.Error.UnknownProperty" &&
			busErrorName(err) != "org.freedesktop.DBus.Error.UnknownInterface" {
			return c, err
		}
	}
	return c, nil
}

// push queues a change for the reader, dropping the oldest when the reader
// has fallen too far behind.
func (w *watcher) push(c Change) {
	if len(w.queue) >= watchQueueMax {
		if !w.overflow {
			w.log.Warn("unit changes not read in time; dropping the oldest")
			w.overflow = true
		}
		w.queue = w.queue[1:]
	}
	w.queue = append(w.queue, c)
}
