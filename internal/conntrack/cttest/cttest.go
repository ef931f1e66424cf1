// Package cttest puts entries into a conntrack table for tests: it encodes
// flows as the kernel lays out dump messages and creates them through
// ctnetlink inside a network namespace the test owns.
package cttest

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

type (
	Flow  = conntrack.Flow
	Tuple = conntrack.Tuple
)

const (
	StatusSrcNAT    = conntrack.StatusSrcNAT
	StatusSeenReply = conntrack.StatusSeenReply
)

// Encode builds a dump message payload for f as the kernel lays it out.
func Encode(f Flow) []byte {
	tuple := func(typ int, t Tuple) *nl.RtAttr {
		a := nl.NewRtAttr(typ|int(nl.NLA_F_NESTED), nil)
		ip := a.AddRtAttr(nl.CTA_TUPLE_IP|int(nl.NLA_F_NESTED), nil)
		if t.Src.Is4() {
			s, d := t.Src.As4(), t.Dst.As4()
			ip.AddRtAttr(nl.CTA_IP_V4_SRC, s[:])
			ip.AddRtAttr(nl.CTA_IP_V4_DST, d[:])
		} else {
			s, d := t.Src.As16(), t.Dst.As16()
			ip.AddRtAttr(nl.CTA_IP_V6_SRC, s[:])
			ip.AddRtAttr(nl.CTA_IP_V6_DST, d[:])
		}
		p := a.AddRtAttr(nl.CTA_TUPLE_PROTO|int(nl.NLA_F_NESTED), nil)
		p.AddRtAttr(nl.CTA_PROTO_NUM, []byte{f.Proto})
		p.AddRtAttr(nl.CTA_PROTO_SRC_PORT, nl.BEUint16Attr(t.SrcPort))
		p.AddRtAttr(nl.CTA_PROTO_DST_PORT, nl.BEUint16Attr(t.DstPort))
		return a
	}
	out := (&nl.Nfgenmsg{NfgenFamily: unix.AF_INET}).Serialize()
	out = append(out, tuple(nl.CTA_TUPLE_ORIG, f.Orig).Serialize()...)
	out = append(out, tuple(nl.CTA_TUPLE_REPLY, f.Reply).Serialize()...)
	out = append(out, nl.NewRtAttr(nl.CTA_STATUS, nl.BEUint32Attr(f.Status)).Serialize()...)
	out = append(out, nl.NewRtAttr(nl.CTA_TIMEOUT, nl.BEUint32Attr(120)).Serialize()...)
	out = append(out, nl.NewRtAttr(nl.CTA_MARK, nl.BEUint32Attr(0)).Serialize()...)
	return out
}

// InNewNetNS runs fn on a locked OS thread inside a network namespace of its
// own (so the table it sees holds only what the test puts there), and
// returns the thread to the test's namespace afterwards.
func InNewNetNS(t testing.TB, fn func()) {
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

// Create inserts entries into the calling thread's conntrack table
// through ctnetlink, many messages per write. An entry with StatusSrcNAT
// gets a source NAT to its reply tuple's destination (address and port),
// so the kernel sets the bit itself as masquerade would.
func Create(flows []Flow) error {
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
		body := Encode(f)
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

// LabFlows returns n TCP flows from pods to public addresses, every third one
// masqueraded, plus n/10 UDP flows that are not.
func LabFlows(n int) []Flow {
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
