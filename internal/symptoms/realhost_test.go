package symptoms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

func liveFS(t testing.TB) *hostfs.FS {
	t.Helper()
	fsys, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// checkSane fails on a snapshot with impossible values.
func checkSane(t *testing.T, s Snapshot, ncpu int) {
	t.Helper()
	for _, c := range s.CPUs {
		if c.SoftirqShare < 0 || c.SoftirqShare > 1 || c.NetRxPerSecond < 0 || c.SqueezePerSecond < 0 || c.DropsPerSecond < 0 {
			t.Errorf("CPU %d: %+v", c.CPU, c)
		}
		if k := c.Ksoftirqd; k != nil && (k.CPUShare < 0 || k.CPUShare > 1.5 || k.RunqWaitShare < 0 || k.RunqWaitShare > 1.5) {
			t.Errorf("ksoftirqd/%d: %+v", c.CPU, k)
		}
	}
	if len(s.CPUs) != ncpu {
		t.Errorf("%d CPUs in the snapshot, %d online", len(s.CPUs), ncpu)
	}
	if k := s.Kubelet; k.Known && (k.SystemShare < 0 || k.UserShare < 0 || k.SystemShare > float64(runtime.NumCPU())+0.5) {
		t.Errorf("process shares %+v", k)
	}
}

// TestLiveWatcher runs the watcher on this machine's /proc for a few seconds
// (this test process standing in for kubelet).
func TestLiveWatcher(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	fsys := liveFS(t)
	online, err := fsys.OnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Window = 2 * time.Second
	w := newTestWatcher(t, fsys, cfg, Options{KubeletPID: os.Getpid()})
	deadline := time.Now().Add(5 * time.Second)
	ticks := 0
	var last Snapshot
	for time.Now().Before(deadline) {
		// Some system time of our own to measure.
		for range 2000 {
			_, _ = os.Stat(fsys.Proc("self", "stat"))
		}
		s, err := w.Tick(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Errors) > 0 {
			t.Errorf("tick errors: %v", s.Errors)
		}
		if ticks > 0 && !s.Ready {
			t.Error("not ready after the first tick")
		}
		checkSane(t, s, online.Len())
		last = s
		ticks++
		time.Sleep(500 * time.Millisecond)
	}
	if !last.Kubelet.Known || !last.Cgroups.Known {
		t.Errorf("process %+v, cgroups %+v", last.Kubelet, last.Cgroups)
	}
	for _, c := range last.CPUs {
		t.Logf("CPU %d: softirq %.3f, NET_RX %.1f/s, squeeze %.1f/s, drops %.1f/s", c.CPU, c.SoftirqShare, c.NetRxPerSecond, c.SqueezePerSecond, c.DropsPerSecond)
	}
	t.Logf("span %v; cgroups %+v; this process: system %.3f user %.3f of a CPU; verdict %+v",
		last.Span, last.Cgroups, last.Kubelet.SystemShare, last.Kubelet.UserShare, last.Report().Verdict)

	s, err := Sample(context.Background(), fsys, DefaultConfig(), time.Second, SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, s, online.Len())
	if !s.Ready || s.Span < time.Second || s.Report().Status == check.Unknown {
		t.Errorf("one-shot sample: %+v", s)
	}
}

// floodNet is a veth pair between two network namespaces that exist only for
// the test: UDP senders in one, a receiver in the other.
type floodNet struct {
	nsA, nsB int // namespace file descriptors
	rx       *net.UDPConn
	tx       []*net.UDPConn
}

const (
	floodLinkA = "nkflood0"
	floodLinkB = "nkflood1"
)

var (
	floodIPA = net.IPv4(10, 211, 7, 1)
	floodIPB = net.IPv4(10, 211, 7, 2)
)

// onNewThread runs fn on a locked OS thread that is thrown away afterwards,
// so whatever namespace fn leaves it in never reaches another goroutine.
func onNewThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	return <-errc
}

func linkUp(name string, ip net.IP) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if ip != nil {
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(30, 32)}}); err != nil {
			return fmt.Errorf("address on %s: %w", name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("up %s: %w", name, err)
	}
	return nil
}

// steerRx sets the RPS CPUs of link's first receive queue: the link is in
// the calling thread's network namespace, so a sysfs of that namespace is
// mounted in a private mount namespace of the thread (gone with the thread).
func steerRx(link string, cpus cpuset.Set) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private mounts: %w", err)
	}
	dir, err := os.MkdirTemp("", "nkflood-sysfs")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount("sysfs", dir, "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	return hostfs.WriteFile(filepath.Join(dir, "class", "net", link, "queues", "rx-0", "rps_cpus"), []byte(cpus.Mask()))
}

func newFloodNet(fsys *hostfs.FS, senders int, rps cpuset.Set) (*floodNet, error) {
	f := &floodNet{nsA: -1, nsB: -1}
	selfNS := fsys.Proc("thread-self", "ns", "net")
	err := onNewThread(func() error {
		var err error
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("new netns: %w", err)
		}
		if f.nsA, err = unix.Open(selfNS, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		if err = linkUp("lo", nil); err != nil {
			return err
		}
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("new netns: %w", err)
		}
		if f.nsB, err = unix.Open(selfNS, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		if err = linkUp("lo", nil); err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: floodLinkB, TxQLen: 1000}, PeerName: floodLinkA}
		if err = netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth pair: %w", err)
		}
		peer, err := netlink.LinkByName(floodLinkA)
		if err != nil {
			return err
		}
		if err = netlink.LinkSetNsFd(peer, f.nsA); err != nil {
			return fmt.Errorf("move %s: %w", floodLinkA, err)
		}
		if err = linkUp(floodLinkB, floodIPB); err != nil {
			return err
		}
		if !rps.IsEmpty() {
			if err = steerRx(floodLinkB, rps); err != nil {
				return fmt.Errorf("RPS on %s: %w", floodLinkB, err)
			}
		}
		if f.rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: floodIPB, Port: 9}); err != nil {
			return err
		}
		if err = unix.Setns(f.nsA, unix.CLONE_NEWNET); err != nil {
			return err
		}
		if err = linkUp(floodLinkA, floodIPA); err != nil {
			return err
		}
		for range senders {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: floodIPA}, &net.UDPAddr{IP: floodIPB, Port: 9})
			if err != nil {
				return err
			}
			f.tx = append(f.tx, c)
		}
		return nil
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close closes the sockets, deletes the veth pair and lets both namespaces go.
func (f *floodNet) Close() error {
	var errs []error
	for _, c := range f.tx {
		errs = append(errs, c.Close())
	}
	if f.rx != nil {
		errs = append(errs, f.rx.Close())
	}
	if f.nsB >= 0 {
		errs = append(errs, onNewThread(func() error {
			if err := unix.Setns(f.nsB, unix.CLONE_NEWNET); err != nil {
				return err
			}
			l, err := netlink.LinkByName(floodLinkB)
			if err != nil {
				var nf netlink.LinkNotFoundError
				if errors.As(err, &nf) {
					return nil
				}
				return err
			}
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("delete veth pair: %w", err)
			}
			_, err = netlink.LinkByName(floodLinkB)
			if err == nil {
				return errors.New("veth pair still there after delete")
			}
			return nil
		}))
	}
	for _, fd := range []int{f.nsA, f.nsB} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	f.nsA, f.nsB, f.rx, f.tx = -1, -1, nil, nil
	return errors.Join(errs...)
}

// TestSoftirqFlood makes real NET_RX work: a UDP flood over a veth pair
// between two network namespaces the test creates (traffic never leaves
// them), bounded in time, while the watcher ticks. It checks the watcher sees
// the NET_RX load and records whether it judged any CPU saturated with the
// default thresholds.
func TestSoftirqFlood(t *testing.T) {
	layer.Root(t)
	if testing.Short() {
		t.Skip("short mode")
	}
	fsys := liveFS(t)
	online, err := fsys.OnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	// Senders (and the reader) run on the first online CPU; the receive
	// path is steered (RPS) to the last one, which then does nothing but
	// NET_RX work for all of them — when there are two CPUs.
	cpus := online.CPUs()
	senderCPU, rxCPU := cpus[0], cpuset.Set{}
	if len(cpus) > 1 {
		rxCPU = cpuset.New(cpus[len(cpus)-1])
	}
	senders := 2 * runtime.NumCPU()
	fn, err := newFloodNet(fsys, senders, rxCPU)
	if err != nil {
		t.Fatalf("network namespaces: %v", err)
	}
	t.Cleanup(func() {
		if err := fn.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	cfg := DefaultConfig()
	cfg.Window = 2 * time.Second
	w := newTestWatcher(t, fsys, cfg, Options{})
	if _, err := w.Tick(time.Now()); err != nil {
		t.Fatal(err)
	}

	const floodFor = 6 * time.Second
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, received [64]uint64
	wg.Add(1)
	pin := func() {
		runtime.LockOSThread() // not unlocked: the pinned thread exits with the goroutine
		var set unix.CPUSet
		set.Set(senderCPU)
		_ = unix.SchedSetaffinity(0, &set)
	}
	go func() {
		defer wg.Done()
		pin()
		buf := make([]byte, 2048)
		for {
			if _, _, err := fn.rx.ReadFromUDP(buf); err != nil {
				return
			}
			received[0]++
		}
	}()
	payload := make([]byte, 64)
	for i, c := range fn.tx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pin()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range 256 {
					if _, err := c.Write(payload); err == nil {
						sent[i%len(sent)]++
					}
				}
			}
		}()
	}

	var maxShare, maxNetRx, maxSqueeze, maxDrops float64
	var seen []string
	deadline := time.Now().Add(floodFor)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		s, err := w.Tick(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		checkSane(t, s, online.Len())
		for _, c := range s.CPUs {
			maxShare = max(maxShare, c.SoftirqShare)
			maxNetRx = max(maxNetRx, c.NetRxPerSecond)
			maxSqueeze = max(maxSqueeze, c.SqueezePerSecond)
			maxDrops = max(maxDrops, c.DropsPerSecond)
			if c.Ksoftirqd != nil && c.Ksoftirqd.Measured {
				t.Logf("  ksoftirqd/%d (pid %d): %.2f of a CPU, %.2f waiting", c.CPU, c.Ksoftirqd.PID, c.Ksoftirqd.CPUShare, c.Ksoftirqd.RunqWaitShare)
			}
		}
		if s.Active() {
			seen = append(seen, s.Report().Message)
		}
	}
	close(stop)
	fn.rx.SetReadDeadline(time.Now()) // ends the reader
	wg.Wait()
	var total uint64
	for _, n := range sent {
		total += n
	}
	t.Logf("flood: %d senders on CPU %d, receive steered to CPU %v, %d datagrams sent in %v, %d received",
		senders, senderCPU, rxCPU, total, floodFor, received[0])
	t.Logf("max over CPUs: softirq share %.3f, NET_RX %.0f/s, time_squeeze %.1f/s, drops %.1f/s", maxShare, maxNetRx, maxSqueeze, maxDrops)
	if len(seen) > 0 {
		t.Logf("saturation seen (default thresholds) on %d ticks, e.g. %q", len(seen), seen[len(seen)-1])
	} else {
		t.Logf("saturation not seen with the default thresholds")
	}
	if maxNetRx < 1000 {
		t.Errorf("the watcher saw at most %.0f NET_RX/s during the flood", maxNetRx)
	}
}
