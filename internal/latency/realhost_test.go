package latency

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/check"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// onCPU runs f on a thread bound to cpu and restores the thread's mask.
func onCPU(t *testing.T, cpu int, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Error(err)
		return
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = unix.SchedSetaffinity(0, &old) }()
	f()
}

// udpFlood sends datagrams over loopback from a thread on cpu until stop;
// loopback delivers them through the sending CPU's NET_RX softirq.
func udpFlood(t *testing.T, cpu int, stop *atomic.Bool) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Error(err)
		return
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Error(err)
		return
	}
	defer tx.Close()
	msg := make([]byte, 64)
	onCPU(t, cpu, func() {
		for !stop.Load() {
			_, _ = tx.Write(msg) // a full receive buffer drops: fine, the softirq ran
		}
	})
}

// TestProbeMeasuresLoopbackNetRx: with the programs attached to the real
// kernel, NET_RX softirqs raised by loopback traffic on one CPU are counted
// on that CPU, with sane latencies.
func TestProbeMeasuresLoopbackNetRx(t *testing.T) {
	layer.Root(t)
	p, err := Open()
	if err != nil {
		layer.Unavailable(t, "root", "cannot attach the eBPF programs: %v", err)
	}
	defer p.Close()
	m, err := NewMeter(p)
	if err != nil {
		t.Fatal(err)
	}
	cpu := runtime.NumCPU() - 1
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); udpFlood(t, cpu, &stop) }()
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	st, err := m.Next()
	if err != nil {
		t.Fatal(err)
	}
	var got *Stat
	for i := range st {
		if st[i].CPU == cpu {
			got = &st[i]
		}
	}
	if got == nil || got.Samples < 100 {
		t.Fatalf("want NET_RX samples on CPU %d after a loopback flood there: %+v", cpu, st)
	}
	if got.P50us > got.P99us || got.P99us > got.MaxUs || got.MaxUs > 5e6 {
		t.Fatalf("implausible statistics on CPU %d: %+v", cpu, *got)
	}
	t.Logf("CPU %d over 0.5 s of loopback flood: %+v", cpu, *got)
	r := Judge(st, 500*time.Millisecond, DefaultConfig())
	if r.Source != SourceEBPF || r.Status == check.Unknown {
		t.Fatalf("report %+v", r)
	}
}
