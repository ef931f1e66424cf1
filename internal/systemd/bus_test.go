package systemd

// Tests of Conn against a real dbus-daemon started by the test, with a stand-in
// for systemd's D-Bus API exported by the test itself: match rules, unit
// references, job results, loss of the bus and reconnection on a fake clock.
// They need no root, only the dbus-daemon binary.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// testBus is a private dbus-daemon listening on a socket in a temp dir.
type testBus struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
	log  *tWriter
}

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

func startBus(t *testing.T) *testBus {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not found (package dbus-daemon or dbus)")
	}
	dir := t.TempDir()
	b := &testBus{t: t, dir: dir, addr: "unix:path=" + filepath.Join(dir, "bus"), log: &tWriter{t: t}}
	t.Cleanup(b.log.close)
	cfg := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(busConfig, filepath.Join(dir, "bus"))), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *testBus) start() {
	b.t.Helper()
	sock := filepath.Join(b.dir, "bus")
	_ = os.Remove(sock)
	cmd := exec.Command("dbus-daemon", "--config-file="+filepath.Join(b.dir, "bus.conf"), "--nofork", "--nopidfile", "--nosyslog")
	cmd.Stderr = b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.cmd = cmd
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.t.Fatal("dbus-daemon does not listen on its socket")
}

// stop kills the daemon this test started, by PID.
func (b *testBus) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	_ = b.cmd.Wait()
	b.cmd = nil
}

func dialTestBus(t *testing.T, addr string) *godbus.Conn {
	t.Helper()
	conn, err := godbus.Dial(addr)
	if err == nil {
		err = conn.Auth([]godbus.Auth{godbus.AuthExternal(fmt.Sprint(os.Getuid()))})
	}
	if err == nil {
		err = conn.Hello()
	}
	if err != nil {
		t.Fatalf("dial test bus: %v", err)
	}
	return conn
}

// stubSystemd serves the part of org.freedesktop.systemd1 that Conn uses.
type stubSystemd struct {
	t   *testing.T
	mu  sync.Mutex
	bus *godbus.Conn

	units   map[string]*stubUnit
	jobs    uint32
	pids    uint32
	fail    map[string][2]string // unit → job result, Service.Result
	refs    []string             // "unit sender"
	kills   []string             // "unit whom signal"
	setProp []string             // "unit runtime name=value"
}

type stubUnit struct {
	unit    map[string]any
	service map[string]any
}

func newStubSystemd(t *testing.T) *stubSystemd {
	s := &stubSystemd{t: t, units: map[string]*stubUnit{}, fail: map[string][2]string{}, pids: 100}
	for _, n := range []string{"kubelet.service", "irqbalance.service"} {
		s.pids++
		s.units[n] = &stubUnit{
			unit: map[string]any{"Id": n, "LoadState": "loaded", "ActiveState": "active", "SubState": "running",
				"InactiveExitTimestamp": uint64(time.Now().UnixMicro())},
			service: map[string]any{"MainPID": s.pids, "ControlGroup": "/system.slice/" + n, "Result": "success",
				"NRestarts": uint32(0), "AllowedCPUs": []byte{}, "EffectiveCPUs": []byte{}},
		}
	}
	return s
}

// connect puts the stub on the bus at addr as org.freedesktop.systemd1.
func (s *stubSystemd) connect(addr string) {
	s.t.Helper()
	bus := dialTestBus(s.t, addr)
	for _, e := range []struct {
		v       any
		path    godbus.ObjectPath
		iface   string
		subtree bool
	}{
		{stubManager{s}, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", false},
		{stubProps{s}, "/org/freedesktop/systemd1/unit", propsIface, true},
		{stubUnitMethods{s}, "/org/freedesktop/systemd1/unit", unitIface, true},
	} {
		var err error
		if e.subtree {
			err = bus.ExportSubtree(e.v, e.path, e.iface)
		} else {
			err = bus.Export(e.v, e.path, e.iface)
		}
		if err != nil {
			s.t.Fatal(err)
		}
	}
	if r, err := bus.RequestName(systemdBusName, godbus.NameFlagDoNotQueue); err != nil || r != godbus.RequestNameReplyPrimaryOwner {
		s.t.Fatalf("RequestName: %v, %v", r, err)
	}
	s.mu.Lock()
	s.bus = bus
	s.mu.Unlock()
	s.t.Cleanup(func() { bus.Close() })
}

func unescapeUnit(path godbus.ObjectPath) string {
	e := strings.TrimPrefix(string(path), "/org/freedesktop/systemd1/unit/")
	var out []byte
	for i := 0; i < len(e); i++ {
		if e[i] == '_' && i+2 < len(e) {
			if b, err := hex.DecodeString(e[i+1 : i+3]); err == nil {
				out = append(out, b...)
				i += 2
				continue
			}
		}
		out = append(out, e[i])
	}
	return string(out)
}

func (s *stubSystemd) lookup(path godbus.ObjectPath) (string, *stubUnit) {
	name := unescapeUnit(path)
	if u, ok := s.units[name]; ok {
		return name, u
	}
	return name, &stubUnit{
		unit:    map[string]any{"Id": name, "LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "InactiveExitTimestamp": uint64(0)},
		service: map[string]any{"MainPID": uint32(0), "Result": "success"},
	}
}

func (u *stubUnit) iface(name string) (map[string]any, *godbus.Error) {
	switch name {
	case unitIface:
		return u.unit, nil
	case serviceIface:
		return u.service, nil
	}
	return nil, godbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"Unknown interface " + name})
}

type stubProps struct{ s *stubSystemd }

func (p stubProps) Get(msg godbus.Message, iface, prop string) (godbus.Variant, *godbus.Error) {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	_, u := p.s.lookup(msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath))
	m, err := u.iface(iface)
	if err != nil {
		return godbus.Variant{}, err
	}
	v, ok := m[prop]
	if !ok {
		return godbus.Variant{}, godbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"Unknown property " + prop})
	}
	return godbus.MakeVariant(v), nil
}

func (p stubProps) GetAll(msg godbus.Message, iface string) (map[string]godbus.Variant, *godbus.Error) {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	_, u := p.s.lookup(msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath))
	m, err := u.iface(iface)
	if err != nil {
		return nil, err
	}
	out := make(map[string]godbus.Variant, len(m))
	for k, v := range m {
		out[k] = godbus.MakeVariant(v)
	}
	return out, nil
}

type stubUnitMethods struct{ s *stubSystemd }

func (m stubUnitMethods) Ref(msg godbus.Message, sender godbus.Sender) *godbus.Error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	name, _ := m.s.lookup(msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath))
	m.s.refs = append(m.s.refs, name+" "+string(sender))
	return nil
}

type stubManager struct{ s *stubSystemd }

func (m stubManager) RestartUnit(name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return m.s.startJob(name, true)
}

func (m stubManager) TryRestartUnit(name, mode string) (godbus.ObjectPath, *godbus.Error) {
	return m.s.startJob(name, false)
}

func (m stubManager) KillUnit(name, whom string, sig int32) *godbus.Error {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kills = append(s.kills, fmt.Sprintf("%s %s %d", name, whom, sig))
	u, ok := s.units[name]
	if !ok {
		return godbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not loaded."})
	}
	if u.service["MainPID"].(uint32) == 0 {
		return godbus.NewError("org.freedesktop.systemd1.NoSuchProcess", []any{"No main process to kill"})
	}
	return nil
}

func (m stubManager) SetUnitProperties(name string, runtime bool, props []struct {
	Name  string
	Value godbus.Variant
}) *godbus.Error {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.units[name]
	if !ok {
		return godbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not found."})
	}
	for _, p := range props {
		b, _ := p.Value.Value().([]byte)
		s.setProp = append(s.setProp, fmt.Sprintf("%s %v %s=%x", name, runtime, p.Name, b))
		if p.Name == "AllowedCPUs" {
			u.service["AllowedCPUs"] = b
		}
	}
	return nil
}

func (s *stubSystemd) startJob(name string, always bool) (godbus.ObjectPath, *godbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.units[name]
	if !ok {
		return "", godbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not found."})
	}
	s.jobs++
	id := s.jobs
	job := godbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	result := "done"
	if always || u.unit["ActiveState"] == "active" {
		if f, ok := s.fail[name]; ok {
			result = f[0]
			u.unit["ActiveState"], u.unit["SubState"] = "failed", "failed"
			u.service["MainPID"], u.service["Result"] = uint32(0), f[1]
		} else {
			s.pids++
			u.unit["ActiveState"], u.unit["SubState"] = "active", "running"
			u.unit["InactiveExitTimestamp"] = uint64(time.Now().UnixMicro())
			u.service["MainPID"], u.service["Result"] = s.pids, "success"
		}
	}
	bus := s.bus
	pid := u.service["MainPID"].(uint32)
	as, ss := u.unit["ActiveState"].(string), u.unit["SubState"].(string)
	go func() {
		// As systemd does: the unit's change signals (Service, then Unit), then
		// JobRemoved, after the method reply.
		time.Sleep(5 * time.Millisecond)
		s.emitChange(bus, name, pid, as, ss)
		_ = bus.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", id, job, name, result)
	}()
	return job, nil
}

func (s *stubSystemd) emitChange(bus *godbus.Conn, name string, pid uint32, active, sub string) {
	path := unitPath(name)
	_ = bus.Emit(path, propsIface+".PropertiesChanged", serviceIface,
		map[string]godbus.Variant{"MainPID": godbus.MakeVariant(pid)}, []string{})
	_ = bus.Emit(path, propsIface+".PropertiesChanged", unitIface,
		map[string]godbus.Variant{"ActiveState": godbus.MakeVariant(active), "SubState": godbus.MakeVariant(sub)}, []string{})
}

// restartNow restarts a unit as if from elsewhere (no job, just the signals).
func (s *stubSystemd) restartNow(name string) uint32 {
	s.mu.Lock()
	u := s.units[name]
	s.pids++
	pid := s.pids
	u.service["MainPID"] = pid
	bus := s.bus
	s.mu.Unlock()
	s.emitChange(bus, name, pid, "active", "running")
	return pid
}

func (s *stubSystemd) refCount(unit string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.refs {
		if strings.HasPrefix(r, unit+" ") {
			n++
		}
	}
	return n
}

func TestBusUnitsAndJobs(t *testing.T) {
	b := startBus(t)
	s := newStubSystemd(t)
	s.connect(b.addr)
	ctx := t.Context()
	conn, err := Dial(ctx, b.addr, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	st, err := conn.Unit(ctx, "kubelet.service")
	if err != nil || !st.Active() || st.MainPID != 101 || st.ControlGroup != "/system.slice/kubelet.service" {
		t.Fatalf("Unit(kubelet.service) = %+v, %v", st, err)
	}
	if nf, err := conn.Unit(ctx, "nope.service"); err != nil || nf.LoadState != "not-found" {
		t.Errorf("Unit(nope.service) = %+v, %v", nf, err)
	}
	// A unit type without a Service interface.
	if sl, err := conn.Unit(ctx, "kubepods.slice"); err != nil || sl.LoadState != "not-found" {
		t.Errorf("Unit(kubepods.slice) = %+v, %v", sl, err)
	}

	if err := conn.Restart(ctx, "kubelet.service", ""); err != nil {
		t.Fatal(err)
	}
	if st2, _ := conn.Unit(ctx, "kubelet.service"); st2.MainPID == st.MainPID || st2.MainPID == 0 {
		t.Errorf("MainPID %d after restart, was %d", st2.MainPID, st.MainPID)
	}
	if err := conn.TryRestart(ctx, "irqbalance.service"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Restart(ctx, "nope.service", ""); !errors.Is(err, ErrNoSuchUnit) {
		t.Errorf("Restart(nope.service) = %v, want ErrNoSuchUnit", err)
	}

	s.mu.Lock()
	s.fail["irqbalance.service"] = [2]string{"failed", "start-limit-hit"}
	s.mu.Unlock()
	err = conn.Restart(ctx, "irqbalance.service", "")
	if !errors.Is(err, ErrStartLimit) {
		t.Errorf("Restart with start-limit-hit = %v, want ErrStartLimit", err)
	}
	s.mu.Lock()
	s.fail["irqbalance.service"] = [2]string{"timeout", "timeout"}
	s.mu.Unlock()
	err = conn.Restart(ctx, "irqbalance.service", "")
	var je *JobError
	if !errors.As(err, &je) || je.Result != "timeout" || errors.Is(err, ErrStartLimit) {
		t.Errorf("Restart with a timeout = %v", err)
	}

	if err := conn.Signal(ctx, "kubelet.service", syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := conn.Signal(ctx, "irqbalance.service", syscall.SIGHUP); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Signal to a failed unit = %v, want ErrNoProcess", err)
	}
	if err := conn.SetAllowedCPUs(ctx, "kubelet.service", cpuset.Range(2, 3), true); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetAllowedCPUs(ctx, "kubelet.service", cpuset.Set{}, false); err != nil {
		t.Fatal(err)
	}
	if st3, _ := conn.Unit(ctx, "kubelet.service"); !st3.AllowedCPUs.IsEmpty() {
		t.Errorf("AllowedCPUs after reset = %v", st3.AllowedCPUs)
	}
	s.mu.Lock()
	kills, props := slices.Clone(s.kills), slices.Clone(s.setProp)
	s.mu.Unlock()
	if want := []string{"kubelet.service main 1", "irqbalance.service main 1"}; !slices.Equal(kills, want) {
		t.Errorf("KillUnit calls %q, want %q", kills, want)
	}
	if want := []string{"kubelet.service true AllowedCPUs=0c", "kubelet.service false AllowedCPUs="}; !slices.Equal(props, want) {
		t.Errorf("SetUnitProperties calls %q, want %q", props, want)
	}
}

func TestBusWatch(t *testing.T) {
	b := startBus(t)
	s := newStubSystemd(t)
	s.connect(b.addr)
	ctx := t.Context()
	conn, err := Dial(ctx, b.addr, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Watch(ctx); err == nil {
		t.Error("Watch of no units: no error")
	}
	if _, err := conn.Watch(ctx, "kubelet.service", ""); err == nil {
		t.Error("Watch of an empty name: no error")
	}
	ch, err := conn.Watch(ctx, "kubelet.service", "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.refCount("kubelet.service"); n != 1 {
		t.Errorf("kubelet.service referenced %d times, want 1", n)
	}
	if n := s.refCount("irqbalance.service"); n != 0 {
		t.Errorf("irqbalance.service referenced %d times, want 0", n)
	}

	// Changes of an unwatched unit, and a forged signal from another client
	// on the watched unit's path, never arrive.
	s.restartNow("irqbalance.service")
	forger := dialTestBus(t, b.addr)
	defer forger.Close()
	_ = forger.Emit(unitPath("kubelet.service"), propsIface+".PropertiesChanged", serviceIface,
		map[string]godbus.Variant{"MainPID": godbus.MakeVariant(uint32(66666))}, []string{})

	pid := s.restartNow("kubelet.service")
	c := nextChange(ctx, t, ch, "kubelet.service", 5*time.Second, func(Change) bool { return true })
	if c.MainPID != pid || c.ActiveState != "active" || c.Reconnected {
		t.Errorf("first change = %+v, want MainPID %d active (the forged 66666 must not arrive)", c, pid)
	}
	// The Unit signal that follows carries nothing new: no second change.
	select {
	case c := <-ch:
		t.Errorf("unexpected change %+v", c)
	case <-time.After(200 * time.Millisecond):
	}

	// A restart through the Conn reports the new PID.
	if err := conn.Restart(ctx, "kubelet.service", ""); err != nil {
		t.Fatal(err)
	}
	c = nextChange(ctx, t, ch, "kubelet.service", 5*time.Second, func(c Change) bool { return c.MainPID != pid })
	t.Logf("change after Restart: %+v", c)
}

func TestBusReconnect(t *testing.T) {
	b := startBus(t)
	s := newStubSystemd(t)
	s.connect(b.addr)
	clk := clock.NewFake(time.Now())
	ctx := t.Context()
	conn, err := Dial(ctx, b.addr, testLog(t), clk)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Watch(ctx, "kubelet.service")
	if err != nil {
		t.Fatal(err)
	}

	b.stop() // the bus goes away with everybody on it
	// The watch tried at once, failed, and waits for its backoff.
	clk.BlockUntil(1)

	// A call with a deadline shorter than the backoff fails at once; the
	// first call after the loss tries to connect, fails, and sets the backoff.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = conn.Unit(short, "kubelet.service")
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Unit with the bus down = %v, want ErrUnavailable", err)
	}
	short, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	start := time.Now()
	_, err = conn.Unit(short, "kubelet.service")
	cancel()
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 50*time.Millisecond || !strings.Contains(err.Error(), "next attempt in") {
		t.Errorf("Unit during the backoff = %v after %v, want an immediate ErrUnavailable", err, time.Since(start))
	}

	// The bus and systemd come back; nothing happens until the clock moves.
	b.start()
	s.connect(b.addr)
	clk.Advance(backoffMax)
	rc := nextChange(ctx, t, ch, "kubelet.service", 5*time.Second, func(Change) bool { return true })
	if !rc.Reconnected || rc.MainPID != 101 || rc.ActiveState != "active" {
		t.Errorf("change after reconnect = %+v, want Reconnected with the current state", rc)
	}
	if n := s.refCount("kubelet.service"); n != 2 {
		t.Errorf("kubelet.service referenced %d times, want 2 (once per connection)", n)
	}
	st, err := conn.Unit(ctx, "kubelet.service")
	if err != nil || st.MainPID != 101 {
		t.Fatalf("Unit after reconnect = %+v, %v", st, err)
	}
	pid := s.restartNow("kubelet.service")
	if c := nextChange(ctx, t, ch, "kubelet.service", 5*time.Second, func(Change) bool { return true }); c.MainPID != pid || c.Reconnected {
		t.Errorf("change after reconnect = %+v, want MainPID %d", c, pid)
	}

	// systemd leaving and re-joining the bus (re-exec) re-takes the reference
	// and reports the state again.
	s.mu.Lock()
	old := s.bus
	s.mu.Unlock()
	old.Close()
	s.connect(b.addr)
	rc = nextChange(ctx, t, ch, "kubelet.service", 5*time.Second, func(Change) bool { return true })
	if !rc.Reconnected || rc.MainPID != pid {
		t.Errorf("change after systemd re-joined = %+v", rc)
	}
	if n := s.refCount("kubelet.service"); n != 3 {
		t.Errorf("kubelet.service referenced %d times, want 3", n)
	}

	// Close ends the watch.
	conn.Close()
	select {
	case _, open := <-ch:
		for open {
			_, open = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Error("watch not ended by Close")
	}
	if _, err := conn.Unit(ctx, "kubelet.service"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Unit after Close = %v", err)
	}
}

func TestDialFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, "unix:path="+filepath.Join(t.TempDir(), "none"), nil, nil)
	if err == nil {
		t.Fatal("Dial to a missing socket succeeded")
	}
	t.Log(err)
}
