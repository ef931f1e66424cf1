package compaction

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, rel ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, rel...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

// The expected values below are worked out by hand from the counts in the
// files (n_k blocks of order k; order 3 unless said otherwise):
//
//	free pages  = Σ n_k·2^k
//	unusable    = pages in blocks of order < 3 / free pages
//	frag index  = 1 − (1 + free/8) / Σ n_k   when no block of order ≥ 3 exists
func TestIndicesFromFiles(t *testing.T) {
	type zoneWant struct {
		zone     string
		free     uint64
		unusable float64
		frag     float64
	}
	type nodeWant struct {
		node     int
		zone     string // the zone that sets the node's numbers
		free     uint64
		unusable float64
		frag     float64
		zones    []zoneWant
	}
	tests := []struct {
		file  []string
		order int
		want  []nodeWant
	}{{
		// DMA: 256+512+3·1024 = 3840 pages, all in order ≥ 8 blocks.
		// DMA32: 1+4+16 = 21 unusable pages of 772789.
		// Normal: 2343+2·2037+4·1316 = 11681 unusable pages of 726297.
		file: []string{"ci-vm-2cpu-6.18", "proc", "buddyinfo"}, order: 3,
		want: []nodeWant{{node: 0, zone: "Normal", free: 726297, unusable: 11681.0 / 726297, frag: -1, zones: []zoneWant{
			{"DMA", 3840, 0, -1},
			{"DMA32", 772789, 21.0 / 772789, -1},
			{"Normal", 726297, 11681.0 / 726297, -1},
		}}},
	}, {
		// DMA32: 2+4+12 = 18 of 771674. Normal: 1+212+492 = 705 of 54705.
		file: []string{"h100-vm-16cpu-6.18", "proc", "buddyinfo"}, order: 3,
		want: []nodeWant{{node: 0, zone: "Normal", free: 54705, unusable: 705.0 / 54705, frag: -1, zones: []zoneWant{
			{"DMA", 3840, 0, -1},
			{"DMA32", 771674, 18.0 / 771674, -1},
			{"Normal", 54705, 705.0 / 54705, -1},
		}}},
	}, {
		// Normal: 10·(1+2+…+512) + 100·1024 = 112630 pages, 10·(1+2+4) = 70 unusable.
		file: []string{"buddyinfo", "healthy"}, order: 3,
		want: []nodeWant{{node: 0, zone: "Normal", free: 112630, unusable: 70.0 / 112630, frag: -1, zones: []zoneWant{
			{"DMA", 3840, 0, -1},
			{"Normal", 112630, 70.0 / 112630, -1},
		}}},
	}, {
		// Normal: 40000+2·20000+4·5000 = 100000 pages in 65000 blocks, none of
		// order ≥ 3: unusable 1, fragmentation 1 − (1+12500)/65000 = 52499/65000.
		file: []string{"buddyinfo", "fragmented"}, order: 3,
		want: []nodeWant{{node: 0, zone: "Normal", free: 100000, unusable: 1, frag: 52499.0 / 65000, zones: []zoneWant{
			{"DMA", 3840, 0, -1},
			{"Normal", 100000, 1, 52499.0 / 65000},
		}}},
	}, {
		// 14 order columns: 5+8+12+16+16+2·8192 = 16441 pages; 5+8+12 = 25 unusable.
		file: []string{"buddyinfo", "many-order"}, order: 3,
		want: []nodeWant{{node: 0, zone: "Normal", free: 16441, unusable: 25.0 / 16441, frag: -1, zones: []zoneWant{
			{"Normal", 16441, 25.0 / 16441, -1},
		}}},
	}, {
		// At order 13 only the two order-13 blocks (16384 pages) are usable.
		file: []string{"buddyinfo", "many-order"}, order: 13,
		want: []nodeWant{{node: 0, zone: "Normal", free: 16441, unusable: 57.0 / 16441, frag: -1, zones: []zoneWant{
			{"Normal", 16441, 57.0 / 16441, -1},
		}}},
	}, {
		// Beyond the last column nothing is usable: 17 blocks,
		// 1 − (1 + 16441/16384)/17 = 245703/278528.
		file: []string{"buddyinfo", "many-order"}, order: 14,
		want: []nodeWant{{node: 0, zone: "Normal", free: 16441, unusable: 1, frag: 245703.0 / 278528, zones: []zoneWant{
			{"Normal", 16441, 1, 245703.0 / 278528},
		}}},
	}, {
		// Node 0: DMA32 10·1024 = 10240 usable; Normal 100 unusable + 1024.
		// Node 1: 8000+8000+4000 = 20000 pages in 13000 blocks, none usable:
		// 1 − (1+2500)/13000 = 10499/13000.
		file: []string{"buddyinfo", "two-node"}, order: 3,
		want: []nodeWant{
			{node: 0, zone: "Normal", free: 1124, unusable: 100.0 / 1124, frag: -1, zones: []zoneWant{
				{"DMA32", 10240, 0, -1},
				{"Normal", 1124, 100.0 / 1124, -1},
			}},
			{node: 1, zone: "Normal", free: 20000, unusable: 1, frag: 10499.0 / 13000, zones: []zoneWant{
				{"Normal", 20000, 1, 10499.0 / 13000},
			}},
		},
	}, {
		// A fragmented DMA zone (500+400+4 = 904 pages in 701 blocks, none of
		// order ≥ 3: 1 − (1+113)/701 = 587/701) does not make node 0
		// fragmented; on a node with nothing else it is all there is.
		file: []string{"buddyinfo", "dma-fragmented"}, order: 3,
		want: []nodeWant{
			{node: 0, zone: "Normal", free: 112630, unusable: 70.0 / 112630, frag: -1, zones: []zoneWant{
				{"DMA", 904, 1, 587.0 / 701},
				{"DMA32", 10240, 0, -1},
				{"Normal", 112630, 70.0 / 112630, -1},
			}},
			{node: 1, zone: "DMA", free: 904, unusable: 1, frag: 587.0 / 701, zones: []zoneWant{
				{"DMA", 904, 1, 587.0 / 701},
			}},
		},
	}}
	for _, tc := range tests {
		zones, err := ParseBuddyinfo(readTestdata(t, tc.file...))
		if err != nil {
			t.Fatalf("%v: %v", tc.file, err)
		}
		got := Indices(zones, tc.order)
		if len(got) != len(tc.want) {
			t.Fatalf("%v: %d nodes, want %d", tc.file, len(got), len(tc.want))
		}
		for i, w := range tc.want {
			g := got[i]
			if g.Node != w.node || g.Zone != w.zone || g.FreePages != w.free || !near(g.Unusable, w.unusable) || !near(g.Index, w.frag) || g.Order != tc.order {
				t.Errorf("%v order %d: node %d = {%s free %d unusable %v frag %v}, want node %d {%s free %d unusable %v frag %v}",
					tc.file, tc.order, g.Node, g.Zone, g.FreePages, g.Unusable, g.Index, w.node, w.zone, w.free, w.unusable, w.frag)
			}
			if len(g.Zones) != len(w.zones) {
				t.Fatalf("%v: node %d has %d zones, want %d", tc.file, g.Node, len(g.Zones), len(w.zones))
			}
			for j, wz := range w.zones {
				gz := g.Zones[j]
				if gz.Zone != wz.zone || gz.FreePages != wz.free || !near(gz.Unusable, wz.unusable) || !near(gz.Index, wz.frag) {
					t.Errorf("%v order %d: node %d zone %s = {free %d unusable %v frag %v}, want %s {free %d unusable %v frag %v}",
						tc.file, tc.order, g.Node, gz.Zone, gz.FreePages, gz.Unusable, gz.Index, wz.zone, wz.free, wz.unusable, wz.frag)
				}
			}
		}
	}
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name  string
		free  []uint64
		order int
		want  Fragmentation
	}{
		// 8+8+8+8+16 = 48 pages; blocks of order ≥ 3: 1 + 1·2 = 3 (24 pages).
		{"half usable", []uint64{8, 4, 2, 1, 1}, 3, Fragmentation{Order: 3, FreePages: 48, FreeBlocks: 16, SuitableBlocks: 3, Unusable: 0.5, Index: -1}},
		// 100 + 2·50 = 200 pages in 150 blocks: 1 − (1 + 25)/150 = 124/150.
		{"all small", []uint64{100, 50}, 3, Fragmentation{Order: 3, FreePages: 200, FreeBlocks: 150, Unusable: 1, Index: 124.0 / 150}},
		// One order-2 block and nothing else: 1 − (1 + 0.5)/1 = −0.5 (the kernel's −500).
		{"lack of memory", []uint64{0, 0, 1}, 3, Fragmentation{Order: 3, FreePages: 4, FreeBlocks: 1, Unusable: 1, Index: -0.5}},
		{"no free memory", []uint64{0, 0, 0}, 3, Fragmentation{Order: 3, Unusable: 1, Index: 0}},
		{"no columns", nil, 0, Fragmentation{Unusable: 1}},
		{"order 0", []uint64{3, 1}, 0, Fragmentation{FreePages: 5, FreeBlocks: 4, SuitableBlocks: 5, Unusable: 0, Index: -1}},
		{"negative order", []uint64{3}, -2, Fragmentation{FreePages: 3, FreeBlocks: 3, SuitableBlocks: 3, Unusable: 0, Index: -1}},
		{"saturates", []uint64{0, math.MaxUint64, math.MaxUint64}, 1,
			Fragmentation{Order: 1, FreePages: math.MaxUint64, FreeBlocks: math.MaxUint64, SuitableBlocks: math.MaxUint64, Unusable: 0, Index: -1}},
	}
	for _, tc := range tests {
		got := Compute(tc.free, tc.order)
		if got.Order != tc.want.Order || got.FreePages != tc.want.FreePages || got.FreeBlocks != tc.want.FreeBlocks ||
			got.SuitableBlocks != tc.want.SuitableBlocks || !near(got.Unusable, tc.want.Unusable) || !near(got.Index, tc.want.Index) {
			t.Errorf("%s: Compute(%v, %d) = %+v, want %+v", tc.name, tc.free, tc.order, got, tc.want)
		}
	}
}

func TestParseBuddyinfoErrors(t *testing.T) {
	bad := []string{
		"",
		"\n\n",
		"Node 0, zone Normal\n",
		"Node 0 zone Normal 1 2 3\n",
		"Node x, zone Normal 1 2 3\n",
		"Node -1, zone Normal 1 2 3\n",
		"Node 0, zone Normal 1 two 3\n",
		"Node 0, zone Normal 1 -2 3\n",
		"Node 0, zone Normal 1 2 3\ngarbage here\n",
		"Node 0, zone Normal" + strings.Repeat(" 1", MaxOrders+1) + "\n",
		"Order 0, zone Normal 1 2 3\n",
	}
	for _, in := range bad {
		if _, err := ParseBuddyinfo([]byte(in)); !errors.Is(err, ErrBuddyinfo) {
			t.Errorf("ParseBuddyinfo(%q) error = %v, want ErrBuddyinfo", in, err)
		}
	}
	// No trailing newline, tabs, a trailing blank line: fine.
	zs, err := ParseBuddyinfo([]byte("Node 2,\tzone\tMovable\t7 0 1\n\nNode 2, zone Normal 1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 2 || zs[0].Node != 2 || zs[0].Zone != "Movable" || len(zs[0].Free) != 3 || zs[0].Free[2] != 1 || len(zs[1].Free) != 1 {
		t.Errorf("parsed %+v", zs)
	}
}

func TestParseVMStatCompact(t *testing.T) {
	m := ParseVMStatCompact(readTestdata(t, "ci-vm-2cpu-6.18", "proc", "vmstat"))
	want := map[string]uint64{
		"compact_migrate_scanned": 3956733, "compact_free_scanned": 402074, "compact_isolated": 211047,
		"compact_stall": 0, "compact_fail": 0, "compact_success": 0, "compact_daemon_wake": 0,
		"compact_daemon_migrate_scanned": 0, "compact_daemon_free_scanned": 0,
	}
	if len(m) != len(want) {
		t.Errorf("got %d counters %v, want %d", len(m), m, len(want))
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %d, want %d", k, m[k], v)
		}
	}
	d := vmstatDelta(map[string]uint64{"a": 5, "b": 9, "c": 1}, map[string]uint64{"a": 7, "b": 3, "d": 1})
	if len(d) != 2 || d["a"] != 2 || d["b"] != 0 {
		t.Errorf("vmstatDelta = %v", d)
	}
}

func FuzzBuddyinfo(f *testing.F) {
	for _, p := range [][]string{
		{"ci-vm-2cpu-6.18", "proc", "buddyinfo"}, {"h100-vm-16cpu-6.18", "proc", "buddyinfo"},
		{"buddyinfo", "healthy"}, {"buddyinfo", "fragmented"}, {"buddyinfo", "many-order"}, {"buddyinfo", "two-node"},
		{"buddyinfo", "dma-fragmented"},
	} {
		f.Add(readTestdata(f, p...), 3)
	}
	f.Add([]byte("Node 0, zone Normal 18446744073709551615 18446744073709551615\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, order int) {
		zones, err := ParseBuddyinfo(b)
		if err != nil {
			if zones != nil {
				t.Fatal("zones with an error")
			}
			return
		}
		order = order % (MaxOrders + 4)
		for _, ni := range Indices(zones, order) {
			check := func(fr Fragmentation) {
				if math.IsNaN(fr.Unusable) || fr.Unusable < 0 || fr.Unusable > 1 {
					t.Fatalf("unusable %v out of [0,1] for %q", fr.Unusable, b)
				}
				if math.IsNaN(fr.Index) || math.IsInf(fr.Index, 0) || fr.Index > 1 {
					t.Fatalf("fragmentation index %v for %q", fr.Index, b)
				}
				if fr.SuitableBlocks > 0 && fr.Index != -1 {
					t.Fatalf("suitable blocks but index %v", fr.Index)
				}
			}
			check(ni.Fragmentation)
			for _, z := range ni.Zones {
				check(z.Fragmentation)
				if z.Zone != zoneDMA && z.Unusable > ni.Unusable {
					t.Fatalf("zone %s is worse than its node", z.Zone)
				}
			}
		}
	})
}
