package conntrack

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// encode builds a dump message payload for f as the kernel lays it out.
func encode(f Flow) []byte {
	tuple := func(typ int, t Tuple) *nl.RtAttr {
		a := nl.NewRtAttr(typ|int(nl.NLA_F_NESTED), nil)
		ip := a.AddRtAttr(nl.CTA_TUPLE_IP|int(nl.NLA_F_NESTED), nil)
		if t.Src.Is4() {
			s, d := t.Src.As4(), t.Dst.As4()
			ip.AddRtAttr(ctaIPv4Src, s[:])
			ip.AddRtAttr(ctaIPv4Dst, d[:])
		} else {
			s, d := t.Src.As16(), t.Dst.As16()
			ip.AddRtAttr(ctaIPv6Src, s[:])
			ip.AddRtAttr(ctaIPv6Dst, d[:])
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

var masqueraded = Flow{
	Proto:  unix.IPPROTO_TCP,
	Status: StatusSrcNAT | StatusSeenReply | StatusAssured,
	Orig: Tuple{Src: netip.MustParseAddr("10.244.1.7"), Dst: netip.MustParseAddr("20.50.2.1"),
		SrcPort: 40001, DstPort: 443},
	Reply: Tuple{Src: netip.MustParseAddr("20.50.2.1"), Dst: netip.MustParseAddr("10.224.0.4"),
		SrcPort: 443, DstPort: 1025},
}

func TestDecode(t *testing.T) {
	v6 := Flow{
		Proto:  unix.IPPROTO_UDP,
		Status: StatusSeenReply,
		Orig: Tuple{Src: netip.MustParseAddr("fd00::7"), Dst: netip.MustParseAddr("2001:db8::1"),
			SrcPort: 5353, DstPort: 53},
		Reply: Tuple{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("fd00::7"),
			SrcPort: 53, DstPort: 5353},
	}
	for _, want := range []Flow{masqueraded, v6} {
		var got Flow
		if err := Decode(encode(want), &got); err != nil {
			t.Fatalf("Decode(%v): %v", want, err)
		}
		if got != want {
			t.Errorf("Decode:\n got %v\nwant %v", got, want)
		}
	}
}

func TestDecodeIncompleteAndMalformed(t *testing.T) {
	msg := encode(masqueraded)
	hdr := nl.SizeofNfgenmsg
	origLen := int(binary.NativeEndian.Uint16(msg[hdr:]))
	noOrig := append(append([]byte{}, msg[:hdr]...), msg[hdr+origLen:]...)
	var f Flow
	if err := Decode(noOrig, &f); !errors.Is(err, ErrIncomplete) {
		t.Errorf("entry without the original tuple: err = %v, want ErrIncomplete", err)
	}
	for _, b := range [][]byte{nil, {1, 2}, msg[:hdr+3], msg[:len(msg)-2]} {
		if err := Decode(b, &f); err == nil {
			t.Errorf("Decode(%x) accepted a cut message", b)
		}
	}
	// An attribute claiming more bytes than the message has.
	bad := append([]byte{}, msg...)
	binary.NativeEndian.PutUint16(bad[hdr:], uint16(len(bad)))
	if err := Decode(bad, &f); !errors.Is(err, ErrMalformed) {
		t.Errorf("overlong attribute: err = %v, want ErrMalformed", err)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	msg := encode(masqueraded)
	var f Flow
	if n := testing.AllocsPerRun(100, func() { _ = Decode(msg, &f) }); n != 0 {
		t.Errorf("Decode allocates %v times per entry; the dump decodes a million", n)
	}
}

func TestErrorKinds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{nl.ErrDumpInterrupted, Interrupted},
		{unix.EINTR, Interrupted},
		{unix.EPERM, Permission},
		{unix.EPROTONOSUPPORT, Unavailable},
		{unix.EOPNOTSUPP, Unavailable},
		{unix.ENOBUFS, Failed},
	} {
		err := classify(c.err)
		if KindOf(err) != c.want || !errors.Is(err, c.err) {
			t.Errorf("classify(%v) = kind %v (%v), want %v wrapping it", c.err, KindOf(err), err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(masqueraded))
	f.Add([]byte{2, 0, 0, 0, 5, 0, 1, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fl Flow
		err := Decode(b, &fl)
		if err == nil && (!fl.Orig.Src.IsValid() || !fl.Reply.Dst.IsValid() || fl.Proto == 0) {
			t.Fatalf("Decode accepted an entry without addresses: %v", fl)
		}
		// Exact capacity: a walker reading past len(b) would panic here.
		_ = Decode(b[:len(b):len(b)], &fl)
	})
}

func BenchmarkDecode(b *testing.B) {
	msg := encode(masqueraded)
	var f Flow
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(msg, &f); err != nil {
			b.Fatal(err)
		}
	}
}
