package hostfs

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
)

func TestParseSigCgt(t *testing.T) {
	status := []byte("Name:\tirqbalance\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004003\n")
	for sig, want := range map[syscall.Signal]bool{syscall.SIGHUP: true, syscall.SIGINT: true, syscall.SIGTERM: true, syscall.SIGUSR1: false} {
		got, err := ParseSigCgt(status, sig)
		if err != nil || got != want {
			t.Errorf("signal %d: %v %v, want %v", sig, got, err, want)
		}
	}
	if _, err := ParseSigCgt([]byte("Name: x\n"), syscall.SIGHUP); err == nil {
		t.Error("a status without SigCgt is an error")
	}
	if _, err := ParseSigCgt([]byte("SigCgt: zz\n"), syscall.SIGHUP); err == nil {
		t.Error("a bad mask is an error")
	}
}

func TestCatchesSignalLive(t *testing.T) {
	h, err := New(DefaultPaths())
	if err != nil {
		t.Skip("no /proc")
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	defer signal.Stop(ch)
	if ok, err := h.CatchesSignal(os.Getpid(), syscall.SIGUSR2); err != nil || !ok {
		t.Errorf("this test process catches SIGUSR2: %v %v", ok, err)
	}
}

func FuzzParseSigCgt(f *testing.F) {
	f.Add([]byte("SigCgt:\t0000000000004003\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, sig int) {
		ParseSigCgt(b, syscall.Signal(sig)) // must not panic
	})
}
