package conntrack_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/conntrack/cttest"
	"golang.org/x/sys/unix"
)

func TestDumpRealTable(t *testing.T) {
	cttest.InNewNetNS(t, func() {
		flows := cttest.LabFlows(3000)
		if err := cttest.Create(flows); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var all, nat, tcp, udp int
		st, err := conntrack.Dump(ctx, conntrack.Filter{}, func(f *conntrack.Flow) {
			all++
			if f.Status&conntrack.StatusSrcNAT != 0 {
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
		st, err = conntrack.Dump(ctx, conntrack.Filter{Status: conntrack.StatusSrcNAT, StatusMask: conntrack.StatusSrcNAT}, func(f *conntrack.Flow) {
			if f.Status&conntrack.StatusSrcNAT == 0 {
				t.Errorf("filtered dump passed a flow without SRC_NAT: %v", f)
			}
			onlyNAT++
		})
		if err != nil || onlyNAT != 1000 {
			t.Fatalf("SRC_NAT dump: %d entries, %+v, %v; want 1000", onlyNAT, st, err)
		}
		t.Logf("SRC_NAT dump: %+v (Unfiltered > 0: the kernel ignored the status filter)", st)
		var notNAT int
		if _, err = conntrack.Dump(ctx, conntrack.Filter{Status: 0, StatusMask: conntrack.StatusSrcNAT}, func(*conntrack.Flow) { notNAT++ }); err != nil || notNAT != 2300 {
			t.Fatalf("non-SRC_NAT dump: %d entries, %v; want 2300", notNAT, err)
		}
	})
}

func TestDumpCancelled(t *testing.T) {
	cttest.InNewNetNS(t, func() {
		if err := cttest.Create(cttest.LabFlows(3000)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		_, err := conntrack.Dump(ctx, conntrack.Filter{}, func(*conntrack.Flow) {
			if n++; n == 10 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) || n >= 3300 {
			t.Fatalf("cancelled dump: %d entries, err %v; want it cut short with context.Canceled", n, err)
		}
	})
}
