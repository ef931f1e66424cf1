package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNewNetNS runs fn on a locked OS thread inside a network namespace of its
// own (so the table it sees holds only what the test puts there), and
// returns the thread to the test's namespace afterwards.
func inNewNetNS(t testing.TB, fn func()) {
	t.Helper()
	layer.Root(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Error("new network namespace:", err)
			return
		}
		defer ns.Close()
		defer func() {
			if err := netns.Set(orig); err != nil {
				// A thread stuck in the test's namespace must not run
				// anything else: leaving it locked makes Go end it.
				t.Error("back to the original namespace:", err)
				return
			}
			runtime.UnlockOSThread()
		}()
		fn()
	}()
	<-done
}

// createFlows inserts entries into the calling thread's conntrack table
// through ctnetlink, many messages per write. An entry with StatusSrcNAT
// gets a source NAT to its reply tuple's destination (address and port),
// so the kernel sets the bit itself as masquerade would.
func createFlows(flows []Flow) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	var batch []byte
	sent := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		// One ack per message: read them all, fail on the first error.
		buf := make([]byte, 1<<16)
		for acked := 0; acked < sent; {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return err
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				return err
			}
			for _, m := range msgs {
				acked++
				if m.Header.Type == unix.NLMSG_ERROR {
					if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
						return fmt.Errorf("create entry: %w", unix.Errno(-errno))
					}
				}
			}
		}
		batch, sent = batch[:0], 0
		return nil
	}
	for i, f := range flows {
		nat := f.Status&StatusSrcNAT != 0
		// The kernel marks a created entry confirmed before it applies
		// CTA_STATUS, and refuses a status that would clear the bit; the
		// NAT bits are its own to set.
		f.Status = f.Status&^StatusSrcNAT | statusConfirmed
		natTo := f.Reply
		if nat {
			// The reply as it would be without NAT; the kernel rewrites it.
			f.Reply = Tuple{Src: f.Orig.Dst, Dst: f.Orig.Src, SrcPort: f.Orig.DstPort, DstPort: f.Orig.SrcPort}
		}
		body := encode(f)
		if nat {
			ip := natTo.Dst.As4()
			nat := nl.NewRtAttr(ctaNATSrc|int(nl.NLA_F_NESTED), nil)
			nat.AddRtAttr(ctaNATV4MinIP, ip[:])
			nat.AddRtAttr(ctaNATV4MaxIP, ip[:])
			p := nat.AddRtAttr(ctaNATProto|int(nl.NLA_F_NESTED), nil)
			p.AddRtAttr(ctaProtoNATPortMin, nl.BEUint16Attr(natTo.DstPort))
			p.AddRtAttr(ctaProtoNATPortMax, nl.BEUint16Attr(natTo.DstPort))
			body = append(body, nat.Serialize()...)
		}
		req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_NEW,
			unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
		req.Seq = uint32(i + 1)
		req.AddRawData(body)
		batch = append(batch, req.Serialize()...)
		sent++
		if len(batch) > 32<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// NAT setup attributes (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	statusConfirmed    = 1 << 3
	ctaNATSrc          = 6
	ctaNATV4MinIP      = 1
	ctaNATV4MaxIP      = 2
	ctaNATProto        = 3
	ctaProtoNATPortMin = 1
	ctaProtoNATPortMax = 2
)

// labFlows returns n TCP flows from pods to public addresses, every third one
// masqueraded, plus n/10 UDP flows that are not.
func labFlows(n int) []Flow {
	var out []Flow
	node := netip.MustParseAddr("10.224.0.4")
	for i := range n {
		src := netip.AddrFrom4([4]byte{10, 244, byte(i >> 16), byte(i >> 8)})
		dst := netip.AddrFrom4([4]byte{20, 50, byte(i % 7), 1})
		f := Flow{Proto: unix.IPPROTO_TCP, Status: StatusSeenReply,
			Orig:  Tuple{Src: src, Dst: dst, SrcPort: uint16(1024 + i%60000), DstPort: 443},
			Reply: Tuple{Src: dst, Dst: src, SrcPort: 443, DstPort: uint16(1024 + i%60000)}}
		if i%3 == 0 {
			f.Status |= StatusSrcNAT
			f.Reply.Dst, f.Reply.DstPort = node, uint16(1024+i%60000)
		}
		out = append(out, f)
		if i%10 == 0 {
			u := Flow{Proto: unix.IPPROTO_UDP,
				Orig:  Tuple{Src: src, Dst: dst, SrcPort: uint16(2000 + i%60000), DstPort: 53},
				Reply: Tuple{Src: dst, Dst: src, SrcPort: 53, DstPort: uint16(2000 + i%60000)}}
			out = append(out, u)
		}
	}
	return out
}

func TestDumpRealTable(t *testing.T) {
	inNewNetNS(t, func() {
		flows := labFlows(3000)
		if err := createFlows(flows); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var all, nat, tcp, udp int
		st, err := Dump(ctx, Filter{}, func(f *Flow) {
			all++
			if f.Status&StatusSrcNAT != 0 {
				nat++
			}
			switch f.Proto {
			case unix.IPPROTO_TCP:
				tcp++
			case unix.IPPROTO_UDP:
				udp++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if all != len(flows) || st.Entries != all || st.Skipped != 0 || tcp != 3000 || udp != 300 || nat != 1000 {
			t.Fatalf("full dump: %d entries (%+v), %d tcp, %d udp, %d masqueraded; want %d, 3000, 300, 1000",
				all, st, tcp, udp, nat, len(flows))
		}
		var onlyNAT int
		st, err = Dump(ctx, Filter{Status: StatusSrcNAT, StatusMask: StatusSrcNAT}, func(f *Flow) {
			if f.Status&StatusSrcNAT == 0 {
				t.Errorf("filtered dump passed a flow without SRC_NAT: %v", f)
			}
			onlyNAT++
		})
		if err != nil || onlyNAT != 1000 {
			t.Fatalf("SRC_NAT dump: %d entries, %+v, %v; want 1000", onlyNAT, st, err)
		}
		t.Logf("SRC_NAT dump: %+v (Unfiltered > 0: the kernel ignored the status filter)", st)
		var notNAT int
		if _, err = Dump(ctx, Filter{Status: 0, StatusMask: StatusSrcNAT}, func(*Flow) { notNAT++ }); err != nil || notNAT != 2300 {
			t.Fatalf("non-SRC_NAT dump: %d entries, %v; want 2300", notNAT, err)
		}
	})
}

func TestDumpCancelled(t *testing.T) {
	inNewNetNS(t, func() {
		if err := createFlows(labFlows(3000)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		_, err := Dump(ctx, Filter{}, func(*Flow) {
			if n++; n == 10 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) || n >= 3300 {
			t.Fatalf("cancelled dump: %d entries, err %v; want it cut short with context.Canceled", n, err)
		}
	})
}
