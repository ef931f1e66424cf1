package systemd

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotifierNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := NewNotifier()
	for name, f := range map[string]func() error{
		"Ready": n.Ready, "Stopping": n.Stopping, "Watchdog": n.Watchdog, "Reloading": n.Reloading,
		"Status": func() error { return n.Status("ok") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET = %v, want nil", name, err)
		}
	}
	if d, ok := n.WatchdogInterval(); ok || d != 0 {
		t.Errorf("WatchdogInterval = %v, %v; want 0, false", d, ok)
	}
}

func TestNotifierMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := NewNotifier()
	recv := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = l.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := l.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:k])
	}
	steps := []struct {
		send func() error
		want string
	}{
		{n.Ready, "READY=1"},
		{func() error { return n.Status("9 NIC IRQs of eth0\non 2 CPUs") }, "STATUS=9 NIC IRQs of eth0 on 2 CPUs"},
		{n.Watchdog, "WATCHDOG=1"},
		{n.Stopping, "STOPPING=1"},
	}
	for _, s := range steps {
		if err := s.send(); err != nil {
			t.Fatal(err)
		}
		if got := recv(); got != s.want {
			t.Errorf("got %q, want %q", got, s.want)
		}
	}
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	if got := recv(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("Reloading sent %q", got)
	}
	// A socket that is gone is an error, not a silent no-op.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	if err := n.Ready(); err == nil {
		t.Error("Ready to a missing socket: no error")
	}
}

func TestNotifierWatchdogInterval(t *testing.T) {
	n := NewNotifier()
	t.Setenv("WATCHDOG_USEC", "90000000")
	t.Setenv("WATCHDOG_PID", "")
	if d, ok := n.WatchdogInterval(); !ok || d != 90*time.Second {
		t.Errorf("WatchdogInterval = %v, %v; want 90s, true", d, ok)
	}
	t.Setenv("WATCHDOG_PID", "1") // another process's watchdog
	if _, ok := n.WatchdogInterval(); ok {
		t.Error("WatchdogInterval for another PID reported enabled")
	}
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "garbage")
	if _, ok := n.WatchdogInterval(); ok {
		t.Error("malformed WATCHDOG_USEC reported enabled")
	}
}
