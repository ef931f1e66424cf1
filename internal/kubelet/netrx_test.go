package kubelet

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// NetRxCounts goes through the one /proc/softirqs parser (the symptoms
// package's) and indexes the counts by the CPU numbers of the header.
func TestNetRxCounts(t *testing.T) {
	p := hostfixture.Host{CPUs: 8, NetRx: func(cpu int) uint64 { return uint64(cpu) * 10 }}.MustBuild(t)
	fsys, err := hostfs.New(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NetRxCounts(fsys)
	if err != nil || len(got) != 8 || got[0] != 0 || got[7] != 70 {
		t.Fatalf("NetRxCounts = %v, %v", got, err)
	}
	// A header with a hole: the counts land on the CPUs it names.
	sparse := "       CPU0       CPU4\n     NET_TX:     1    2\n     NET_RX:     5    9\n"
	if err := os.WriteFile(filepath.Join(p.Proc, "softirqs"), []byte(sparse), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = NetRxCounts(fsys); err != nil || len(got) != 5 || got[0] != 5 || got[4] != 9 || got[1] != 0 {
		t.Fatalf("sparse header: NetRxCounts = %v, %v", got, err)
	}
	// No NET_RX row is an error, not "no traffic".
	if err := os.WriteFile(filepath.Join(p.Proc, "softirqs"), []byte("  CPU0\n  NET_TX: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = NetRxCounts(fsys); err == nil {
		t.Fatalf("no NET_RX row: NetRxCounts = %v, want an error", got)
	}
}
