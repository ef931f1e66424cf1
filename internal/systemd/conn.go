package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

const (
	systemdBusName = "org.freedesktop.systemd1"
	unitIface      = "org.freedesktop.systemd1.Unit"
	serviceIface   = "org.freedesktop.systemd1.Service"
	propsIface     = "org.freedesktop.DBus.Properties"

	// Reconnect backoff: the first attempt after a loss is immediate, then
	// backoffMin, doubling up to backoffMax.
	backoffMin = 250 * time.Millisecond
	backoffMax = 15 * time.Second
)

// backoff is the wait before the next attempt after n consecutive failures.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// Conn is the real Units: go-systemd's D-Bus client, re-established when the
// bus connection drops (dbus-daemon restarted, the socket closed). A call that
// finds the connection gone reconnects first; after a failed attempt the next
// one waits for a backoff (measured on the injected clock), and a call whose
// context ends before that returns an error wrapping ErrUnavailable at once.
// Conn is safe for concurrent use.
type Conn struct {
	address string
	log     *slog.Logger
	clk     clock.Clock

	life context.Context // ends with Close
	stop context.CancelFunc

	sem     chan struct{} // held while cur is checked or replaced
	cur     *link         // nil while disconnected
	fails   int           // consecutive failed connection attempts
	retryAt time.Time     // no new attempt before this (clock time)
	down    bool          // a loss has been logged and not yet recovered
}

var _ Units = (*Conn)(nil)

// link is one go-systemd connection and the two bus connections under it.
type link struct {
	sd     *sddbus.Conn
	cancel context.CancelFunc // closes both bus connections
	done   chan struct{}      // closed when either bus connection closes
}

func (s *link) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Dial connects to systemd over the system bus (address "") or over the bus at
// address, a D-Bus address such as "unix:path=/run/dbus/system_bus_socket".
// log may be nil (no logging); clk may be nil (the real clock).
func Dial(ctx context.Context, address string, log *slog.Logger, clk clock.Clock) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.Real{}
	}
	// The connections live until Close, not until the dialing context ends.
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	c := &Conn{
		address: address,
		log:     log,
		clk:     clk,
		life:    life,
		stop:    stop,
		sem:     make(chan struct{}, 1),
	}
	s, err := c.connect(ctx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("connect to systemd over D-Bus (%s): %w", c.where(), err)
	}
	c.cur = s
	return c, nil
}

// Close closes the connection and ends every Watch.
func (c *Conn) Close() error {
	c.stop()
	return nil
}

func (c *Conn) where() string {
	if c.address == "" {
		return "system bus"
	}
	return c.address
}

// dialBus opens one authenticated bus connection (EXTERNAL auth with our uid,
// then Hello). The connection lives as long as life; ctx bounds the dial.
func (c *Conn) dialBus(ctx, life context.Context) (*godbus.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		bus *godbus.Conn
		err error
	)
	if c.address == "" {
		bus, err = godbus.SystemBusPrivate(godbus.WithContext(life))
	} else {
		bus, err = godbus.Dial(c.address, godbus.WithContext(life))
	}
	if err != nil {
		return nil, err
	}
	// Auth and Hello take no context: closing the connection unblocks them.
	stop := context.AfterFunc(ctx, func() { bus.Close() })
	err = bus.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))})
	if err == nil {
		err = bus.Hello()
	}
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		bus.Close()
		return nil, err
	}
	return bus, nil
}

// connect opens a new link: go-systemd dials twice (method calls, signals).
func (c *Conn) connect(ctx context.Context) (*link, error) {
	sctx, cancel := context.WithCancel(c.life)
	var (
		mu    sync.Mutex
		buses []*godbus.Conn
	)
	// go-systemd's NewConnection makes an AddMatch call without a context:
	// cancelling sctx closes the connections and unblocks it.
	stop := context.AfterFunc(ctx, cancel)
	sd, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		b, err := c.dialBus(ctx, sctx)
		if err == nil {
			mu.Lock()
			buses = append(buses, b)
			mu.Unlock()
		}
		return b, err
	})
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	s := &link{sd: sd, cancel: cancel, done: make(chan struct{})}
	var once sync.Once
	for _, b := range buses {
		context.AfterFunc(b.Context(), func() { once.Do(func() { close(s.done) }) })
	}
	return s, nil
}

// getLink returns a live link, reconnecting when the last one was lost.
func (c *Conn) getLink(ctx context.Context) (*link, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()

	if c.life.Err() != nil {
		return nil, fmt.Errorf("%w: connection closed", ErrUnavailable)
	}
	if s := c.cur; s != nil {
		if s.alive() {
			return s, nil
		}
		c.lostLocked(s)
	}
	if wait := c.retryAt.Sub(c.clk.Now()); wait > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, fmt.Errorf("%w: reconnecting to the %s, next attempt in %s",
				ErrUnavailable, c.where(), wait.Round(time.Millisecond))
		}
		if err := clock.Sleep(ctx, c.clk, wait); err != nil {
			return nil, err
		}
	}
	s, err := c.connect(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.fails++
		c.retryAt = c.clk.Now().Add(backoff(c.fails))
		if c.fails == 1 {
			c.log.Warn("cannot reconnect to systemd over D-Bus; retrying with backoff", "bus", c.where(), "err", err)
		} else {
			c.log.Debug("reconnect to systemd over D-Bus failed", "bus", c.where(), "attempt", c.fails, "err", err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if c.down {
		c.log.Info("reconnected to systemd over D-Bus", "bus", c.where(), "failed_attempts", c.fails)
		c.down = false
	}
	c.fails, c.retryAt, c.cur = 0, time.Time{}, s
	return s, nil
}

// lostLocked forgets a dead link and logs the loss once. Callers hold sem.
func (c *Conn) lostLocked(s *link) {
	s.cancel()
	if c.cur == s {
		c.cur = nil
		if !c.down {
			c.log.Warn("D-Bus connection to systemd lost; reconnecting", "bus", c.where())
			c.down = true
		}
	}
}

// markLost is lostLocked for callers that do not hold sem.
func (c *Conn) markLost(s *link) {
	c.sem <- struct{}{}
	c.lostLocked(s)
	<-c.sem
}

// call runs f on a live link. When the link died during f, the error
// wraps ErrUnavailable, and with retry set f runs once more on a new link
// (for calls that are safe to repeat).
func (c *Conn) call(ctx context.Context, what string, retry bool, f func(*link) error) error {
	for attempt := 0; ; attempt++ {
		s, err := c.getLink(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		err = f(s)
		if err == nil {
			return nil
		}
		if s.alive() || ctx.Err() != nil {
			return mapError(what, err)
		}
		c.markLost(s)
		if !retry || attempt > 0 {
			return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
		}
	}
}

// Unit implements UnitReader.
func (c *Conn) Unit(ctx context.Context, name string) (UnitState, error) {
	var st UnitState
	err := c.call(ctx, "read unit "+name, true, func(s *link) error {
		up, err := s.sd.GetUnitPropertiesContext(ctx, name)
		if err != nil {
			return err
		}
		var sp map[string]any
		if isService(name) && propString(up, "LoadState") != "not-found" {
			sp, err = s.sd.GetUnitTypePropertiesContext(ctx, name, "Service")
			if err != nil && busErrorName(err) != "org.freedesktop.DBus.Error.UnknownInterface" {
				return err
			}
		}
		st = stateFromProps(name, up, sp)
		return nil
	})
	return st, err
}

// Restart implements Restarter.
func (c *Conn) Restart(ctx context.Context, name, mode string) error {
	if mode == "" {
		mode = "replace"
	}
	return c.runJob(ctx, "restart", name, func(sd *sddbus.Conn, ch chan<- string) (int, error) {
		return sd.RestartUnitContext(ctx, name, mode, ch)
	})
}

// TryRestart implements Restarter.
func (c *Conn) TryRestart(ctx context.Context, name string) error {
	return c.runJob(ctx, "try-restart", name, func(sd *sddbus.Conn, ch chan<- string) (int, error) {
		return sd.TryRestartUnitContext(ctx, name, "replace", ch)
	})
}

// runJob enqueues a job and waits for its result (go-systemd's JobRemoved
// listener). systemd sends JobRemoved to the client that enqueued the job even
// when nobody called Subscribe().
func (c *Conn) runJob(ctx context.Context, job, name string, start func(*sddbus.Conn, chan<- string) (int, error)) error {
	what := job + " " + name
	var (
		s  *link
		ch = make(chan string, 1) // buffered: go-systemd must never block on it
	)
	// Enqueueing is not repeated after a lost connection: the job may have
	// been queued already.
	err := c.call(ctx, what, false, func(cur *link) error {
		s = cur
		_, err := start(cur.sd, ch)
		return err
	})
	if err != nil {
		return err
	}
	select {
	case result := <-ch:
		if result == "done" {
			return nil
		}
		var serviceResult string
		if isService(name) {
			if p, err := s.sd.GetServicePropertyContext(ctx, name, "Result"); err == nil {
				serviceResult, _ = p.Value.Value().(string)
			}
		}
		return jobError(job, name, result, serviceResult)
	case <-s.done:
		c.markLost(s)
		return fmt.Errorf("%s: waiting for the job: %w", what, ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for the job: %w", what, ctx.Err())
	}
}

// Signal implements Restarter: KillUnit(name, "main", sig).
func (c *Conn) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	return c.call(ctx, fmt.Sprintf("send %s to the main process of %s", sigName(sig), name), false, func(s *link) error {
		return s.sd.KillUnitWithTarget(ctx, name, sddbus.Main, int32(sig))
	})
}

// SetAllowedCPUs implements CPUPinner with SetUnitProperties(name, runtime,
// AllowedCPUs=ay). Setting the same value again is harmless.
func (c *Conn) SetAllowedCPUs(ctx context.Context, name string, cpus cpuset.Set, runtime bool) error {
	what := fmt.Sprintf("set AllowedCPUs=%s on %s", cpus.List(), name)
	return c.call(ctx, what, true, func(s *link) error {
		return s.sd.SetUnitPropertiesContext(ctx, name, runtime,
			sddbus.Property{Name: "AllowedCPUs", Value: godbus.MakeVariant(cpus.Bytes())})
	})
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	}
	return "signal " + strconv.Itoa(int(sig))
}
