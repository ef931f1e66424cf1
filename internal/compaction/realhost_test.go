package compaction

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRealCompaction compacts this machine's memory for real, once directly
// and once through Start, and checks that it was measured.
func TestRealCompaction(t *testing.T) {
	layer.Root(t)
	if testing.Short() {
		t.Skip("short mode")
	}
	fsys, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(fsys, DefaultConfig(), Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := m.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) == 0 {
		t.Fatal("no nodes in buddyinfo")
	}
	for _, ni := range nodes {
		t.Logf("node %d: %d free pages, unusable %.4f, fragmentation index %.3f at order %d",
			ni.Node, ni.FreePages, ni.Unusable, ni.Index, ni.Order)
		for _, z := range ni.Zones {
			t.Logf("  zone %-8s %10d free pages, unusable %.4f", z.Zone, z.FreePages, z.Unusable)
		}
	}
	node := nodes[0].Node
	if _, ok := CompactPath(fsys, node); !ok {
		t.Skip("this kernel cannot compact (no compaction file)")
	}

	check := func(r Result) {
		t.Helper()
		if r.Err != nil {
			t.Fatalf("compaction: %v", r.Err)
		}
		work := r.VMStatDelta["compact_migrate_scanned"] + r.VMStatDelta["compact_free_scanned"] + r.VMStatDelta["compact_isolated"]
		t.Logf("compacted node %d via %s in %v: index %.4f → %.4f, vmstat deltas %v",
			r.Node, r.Target, r.Duration, r.IndexBefore, r.IndexAfter, r.VMStatDelta)
		if r.Duration <= 0 {
			t.Error("no wall time measured")
		}
		if work == 0 {
			t.Error("compact_migrate_scanned, compact_free_scanned and compact_isolated did not rise")
		}
		if r.IndexBefore < 0 || r.IndexBefore > 1 || r.IndexAfter < 0 || r.IndexAfter > 1 {
			t.Errorf("index before %v after %v", r.IndexBefore, r.IndexAfter)
		}
	}
	check(m.Compact(context.Background(), node, ReasonSafety))

	// Through Start: the caller gets control back at once.
	begin := time.Now()
	ch, started := m.Start(context.Background(), []Decision{{Node: node, Reason: ReasonSafety}})
	if el := time.Since(begin); el > 20*time.Millisecond {
		t.Errorf("Start blocked the caller for %v", el)
	}
	if !started {
		t.Fatal("Start did not start")
	}
	for r := range ch {
		check(r)
	}
}
