// Package conntrack owns reading the kernel's connection tracking table over
// netlink: one dump, streamed — each flow is decoded into a reused Flow and
// handed to a callback as its message arrives, so the reader never holds the
// table (a node can have a million entries).
//
// Why not the libraries' list calls: vishvananda/netlink's ConntrackTableList
// and ti-mo/conntrack's Dump build the whole table in memory (hundreds of MB
// at 250 k entries). vishvananda/netlink already has the streaming loop —
// nl.NetlinkRequest.ExecuteIter hands over one message at a time and reports
// NLM_F_DUMP_INTR — so this package uses it and adds what is missing: its
// per-flow decoder is private (reachable only through the list call), so
// Decode reads the few attributes nodekeeper needs (tuples, protocol, ports,
// status) straight from the message, without allocating and with every
// length checked (the library's generic attribute walker, nl.ParseRouteAttr,
// allocates per nested attribute and panics on an unaligned last attribute).
// ti-mo/conntrack exports a decoder, but it would add three modules for the
// same few lines.
//
// The kernel can filter a dump on the status bits (CTA_STATUS +
// CTA_STATUS_MASK, kernels ≥ 5.15; older kernels ignore the attributes and
// send everything, so Dump checks the bits again).
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Status bits of a conntrack entry (include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	StatusSeenReply = 1 << 1
	StatusAssured   = 1 << 2
	StatusSrcNAT    = 1 << 4 // the original source was rewritten (masquerade)
	StatusDstNAT    = 1 << 5
)

// ctaStatusMask is CTA_STATUS_MASK of enum ctattr_type (not in the library).
const ctaStatusMask = 26

// Tuple is one direction of a flow.
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // 0 for protocols without ports
}

// Flow is the part of a conntrack entry nodekeeper reads.
type Flow struct {
	Proto  uint8 // IP protocol number: 6 TCP, 17 UDP
	Status uint32
	Orig   Tuple // as the first packet left its sender
	Reply  Tuple // as the answer is expected (after NAT)
}

// Filter selects entries in the kernel: those whose status ANDed with
// StatusMask equals Status. A zero StatusMask selects every entry.
type Filter struct {
	Status, StatusMask uint32
}

func (f Filter) match(s uint32) bool { return s&f.StatusMask == f.Status }

// Stats describe one dump.
type Stats struct {
	Entries int // entries decoded and handed to the callback
	Skipped int // messages without the attributes a flow needs
	// Unfiltered is the number of entries the kernel sent that the status
	// filter should have dropped: not zero on kernels older than 5.15.
	Unfiltered int
}

// Kind says why a dump failed, so a check can say unknown with the reason.
type Kind int

const (
	Failed      Kind = iota // anything else
	Unavailable             // no conntrack (nfnetlink or nf_conntrack_netlink missing)
	Permission              // not allowed (CAP_NET_ADMIN needed)
	Interrupted             // the table changed under the dump in a way the kernel flagged
)

// Error is a dump that did not complete.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string {
	switch e.Kind {
	case Unavailable:
		return "conntrack table not available (no conntrack module?): " + e.Err.Error()
	case Permission:
		return "no permission to read the conntrack table (needs CAP_NET_ADMIN): " + e.Err.Error()
	case Interrupted:
		return "conntrack table changed during the dump: " + e.Err.Error()
	}
	return "conntrack dump: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of a Dump error (Failed for foreign errors).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Failed
}

func classify(err error) error {
	k := Failed
	switch {
	case errors.Is(err, nl.ErrDumpInterrupted), errors.Is(err, syscall.EINTR):
		k = Interrupted
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		k = Permission
	case errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EAFNOSUPPORT),
		errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOENT):
		k = Unavailable
	}
	return &Error{Kind: k, Err: err}
}

// ctDumpReply is the type of every entry message of a dump
// (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW).
const ctDumpReply = unix.NFNL_SUBSYS_CTNETLINK<<8 | nl.IPCTNL_MSG_CT_NEW

// ctxCheckEvery is how many messages pass between looks at ctx.
const ctxCheckEvery = 1024

// Dump streams the conntrack table of the calling thread's network namespace
// (IPv4 and IPv6) through fn. fn must not keep f: it is reused for the next
// entry. A cancelled ctx stops the decoding (the kernel's remaining messages
// are drained) and Dump returns ctx's error; the kernel answers a dump
// without blocking, so the socket's own timeout bounds the rest.
func Dump(ctx context.Context, filter Filter, fn func(f *Flow)) (Stats, error) {
	var st Stats
	if err := ctx.Err(); err != nil {
		return st, err
	}
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_GET, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	if filter.StatusMask != 0 {
		req.AddData(nl.NewRtAttr(nl.CTA_STATUS, nl.BEUint32Attr(filter.Status)))
		req.AddData(nl.NewRtAttr(ctaStatusMask, nl.BEUint32Attr(filter.StatusMask)))
	}
	var f Flow
	n := 0
	var ctxErr error
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, ctDumpReply, func(msg []byte) bool {
		n++
		if n%ctxCheckEvery == 0 {
			if ctxErr = ctx.Err(); ctxErr != nil {
				return false
			}
		}
		if err := Decode(msg, &f); err != nil {
			st.Skipped++
			return true
		}
		if filter.StatusMask != 0 && !filter.match(f.Status) {
			st.Unfiltered++
			return true
		}
		st.Entries++
		fn(&f)
		return true
	})
	if ctxErr != nil {
		return st, ctxErr
	}
	if err != nil {
		return st, classify(err)
	}
	return st, nil
}

// ErrIncomplete is returned by Decode for a message without the original and
// reply tuples' addresses or without a protocol.
var ErrIncomplete = errors.New("conntrack entry without addresses or protocol")

// ErrMalformed is returned by Decode for a message whose attribute lengths do
// not add up.
var ErrMalformed = errors.New("malformed conntrack message")

// Attribute numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h),
// beyond those the library names.
const (
	ctaIPv4Src = nl.CTA_IP_V4_SRC
	ctaIPv4Dst = nl.CTA_IP_V4_DST
	ctaIPv6Src = nl.CTA_IP_V6_SRC
	ctaIPv6Dst = nl.CTA_IP_V6_DST
)

// Decode decodes one dump message's payload (the nfgenmsg header and the
// entry's attributes) into f, overwriting it. It never allocates.
func Decode(msg []byte, f *Flow) error {
	*f = Flow{}
	if len(msg) < nl.SizeofNfgenmsg {
		return ErrMalformed
	}
	var haveStatus bool
	err := walk(msg[nl.SizeofNfgenmsg:], func(typ uint16, v []byte) error {
		switch typ {
		case nl.CTA_TUPLE_ORIG:
			return decodeTuple(v, &f.Orig, &f.Proto)
		case nl.CTA_TUPLE_REPLY:
			var p uint8
			return decodeTuple(v, &f.Reply, &p)
		case nl.CTA_STATUS:
			if len(v) < 4 {
				return ErrMalformed
			}
			f.Status = uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
			haveStatus = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !f.Orig.Src.IsValid() || !f.Orig.Dst.IsValid() || !f.Reply.Src.IsValid() || !f.Reply.Dst.IsValid() ||
		f.Proto == 0 || !haveStatus {
		return ErrIncomplete
	}
	return nil
}

func decodeTuple(b []byte, t *Tuple, proto *uint8) error {
	return walk(b, func(typ uint16, v []byte) error {
		switch typ {
		case nl.CTA_TUPLE_IP:
			return walk(v, func(typ uint16, v []byte) error {
				switch typ {
				case ctaIPv4Src, ctaIPv4Dst:
					if len(v) != 4 {
						return ErrMalformed
					}
					a := netip.AddrFrom4([4]byte(v))
					if typ == ctaIPv4Src {
						t.Src = a
					} else {
						t.Dst = a
					}
				case ctaIPv6Src, ctaIPv6Dst:
					if len(v) != 16 {
						return ErrMalformed
					}
					a := netip.AddrFrom16([16]byte(v))
					if typ == ctaIPv6Src {
						t.Src = a
					} else {
						t.Dst = a
					}
				}
				return nil
			})
		case nl.CTA_TUPLE_PROTO:
			return walk(v, func(typ uint16, v []byte) error {
				switch typ {
				case nl.CTA_PROTO_NUM:
					if len(v) < 1 {
						return ErrMalformed
					}
					*proto = v[0]
				case nl.CTA_PROTO_SRC_PORT, nl.CTA_PROTO_DST_PORT:
					if len(v) < 2 {
						return ErrMalformed
					}
					p := uint16(v[0])<<8 | uint16(v[1])
					if typ == nl.CTA_PROTO_SRC_PORT {
						t.SrcPort = p
					} else {
						t.DstPort = p
					}
				}
				return nil
			})
		}
		return nil
	})
}

// walk calls fn for each netlink attribute in b (type without the nested and
// byte-order flags, value without padding). Lengths are checked against b.
func walk(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.SizeofRtAttr {
			return ErrMalformed
		}
		l := int(nl.NativeEndian().Uint16(b[0:2]))
		typ := nl.NativeEndian().Uint16(b[2:4]) & nl.NLA_TYPE_MASK
		if l < unix.SizeofRtAttr || l > len(b) {
			return ErrMalformed
		}
		if err := fn(typ, b[unix.SizeofRtAttr:l]); err != nil {
			return err
		}
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next >= len(b) {
			return nil
		}
		b = b[next:]
	}
	return nil
}

// String shows a flow as conntrack -L does, roughly (for test failures).
func (f Flow) String() string {
	return fmt.Sprintf("proto=%d status=%#x orig %s:%d→%s:%d reply %s:%d→%s:%d", f.Proto, f.Status,
		f.Orig.Src, f.Orig.SrcPort, f.Orig.Dst, f.Orig.DstPort,
		f.Reply.Src, f.Reply.SrcPort, f.Reply.Dst, f.Reply.DstPort)
}
