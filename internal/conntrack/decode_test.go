package conntrack_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/conntrack/cttest"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var masqueraded = conntrack.Flow{
	Proto:  unix.IPPROTO_TCP,
	Status: conntrack.StatusSrcNAT | conntrack.StatusSeenReply | conntrack.StatusAssured,
	Orig: conntrack.Tuple{Src: netip.MustParseAddr("10.244.1.7"), Dst: netip.MustParseAddr("20.50.2.1"),
		SrcPort: 40001, DstPort: 443},
	Reply: conntrack.Tuple{Src: netip.MustParseAddr("20.50.2.1"), Dst: netip.MustParseAddr("10.224.0.4"),
		SrcPort: 443, DstPort: 1025},
}

func TestDecode(t *testing.T) {
	v6 := conntrack.Flow{
		Proto:  unix.IPPROTO_UDP,
		Status: conntrack.StatusSeenReply,
		Orig: conntrack.Tuple{Src: netip.MustParseAddr("fd00::7"), Dst: netip.MustParseAddr("2001:db8::1"),
			SrcPort: 5353, DstPort: 53},
		Reply: conntrack.Tuple{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("fd00::7"),
			SrcPort: 53, DstPort: 5353},
	}
	for _, want := range []conntrack.Flow{masqueraded, v6} {
		var got conntrack.Flow
		if err := conntrack.Decode(cttest.Encode(want), &got); err != nil {
			t.Fatalf("conntrack.Decode(%v): %v", want, err)
		}
		if got != want {
			t.Errorf("Decode:\n got %v\nwant %v", got, want)
		}
	}
}

func TestDecodeIncompleteAndMalformed(t *testing.T) {
	msg := cttest.Encode(masqueraded)
	hdr := nl.SizeofNfgenmsg
	origLen := int(binary.NativeEndian.Uint16(msg[hdr:]))
	noOrig := append(append([]byte{}, msg[:hdr]...), msg[hdr+origLen:]...)
	var f conntrack.Flow
	if err := conntrack.Decode(noOrig, &f); !errors.Is(err, conntrack.ErrIncomplete) {
		t.Errorf("entry without the original tuple: err = %v, want conntrack.ErrIncomplete", err)
	}
	for _, b := range [][]byte{nil, {1, 2}, msg[:hdr+3], msg[:len(msg)-2]} {
		if err := conntrack.Decode(b, &f); err == nil {
			t.Errorf("conntrack.Decode(%x) accepted a cut message", b)
		}
	}
	// An attribute claiming more bytes than the message has.
	bad := append([]byte{}, msg...)
	binary.NativeEndian.PutUint16(bad[hdr:], uint16(len(bad)))
	if err := conntrack.Decode(bad, &f); !errors.Is(err, conntrack.ErrMalformed) {
		t.Errorf("overlong attribute: err = %v, want conntrack.ErrMalformed", err)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	msg := cttest.Encode(masqueraded)
	var f conntrack.Flow
	if n := testing.AllocsPerRun(100, func() { _ = conntrack.Decode(msg, &f) }); n != 0 {
		t.Errorf("Decode allocates %v times per entry; the dump decodes a million", n)
	}
}

func TestErrorKinds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want conntrack.Kind
	}{
		{nl.ErrDumpInterrupted, conntrack.Interrupted},
		{unix.EINTR, conntrack.Interrupted},
		{unix.EPERM, conntrack.Permission},
		{unix.EPROTONOSUPPORT, conntrack.Unavailable},
		{unix.EOPNOTSUPP, conntrack.Unavailable},
		{unix.ENOBUFS, conntrack.Failed},
	} {
		err := conntrack.Classify(c.err)
		if conntrack.KindOf(err) != c.want || !errors.Is(err, c.err) {
			t.Errorf("conntrack.Classify(%v) = kind %v (%v), want %v wrapping it", c.err, conntrack.KindOf(err), err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(cttest.Encode(masqueraded))
	f.Add([]byte{2, 0, 0, 0, 5, 0, 1, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fl conntrack.Flow
		err := conntrack.Decode(b, &fl)
		if err == nil && (!fl.Orig.Src.IsValid() || !fl.Reply.Dst.IsValid() || fl.Proto == 0) {
			t.Fatalf("Decode accepted an entry without addresses: %v", fl)
		}
		// Exact capacity: a walker reading past len(b) would panic here.
		_ = conntrack.Decode(b[:len(b):len(b)], &fl)
	})
}

func BenchmarkDecode(b *testing.B) {
	msg := cttest.Encode(masqueraded)
	var f conntrack.Flow
	b.ReportAllocs()
	for b.Loop() {
		if err := conntrack.Decode(msg, &f); err != nil {
			b.Fatal(err)
		}
	}
}
