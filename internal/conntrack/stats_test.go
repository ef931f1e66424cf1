package conntrack

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// The three layouts of /proc/net/stat/nf_conntrack: 4.19 (searched,
// delete_list), 5.15 (clashres in column 2) and 6.x (chainlength in column 8).
func TestParseProcStatLayouts(t *testing.T) {
	for _, tc := range []struct {
		file         string
		clash, chain uint64
	}{
		{"nf_conntrack.4.19", 0, 0},
		{"nf_conntrack.5.15", 6, 0},
		{"nf_conntrack.6.x", 6, 2},
	} {
		f, err := os.Open("testdata/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		cpus, g, err := ParseProcStat(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		sum := Sum(cpus)
		if len(cpus) != 2 || g.Entries != 0x1a4 || sum.InsertFailed != 8 || sum.Drop != 2 || sum.EarlyDrop != 1 ||
			sum.Found != 0x30 || sum.Invalid != 4 || sum.SearchRestart != 4 {
			t.Errorf("%s: %d CPUs, %+v, sum %+v", tc.file, len(cpus), g, sum)
		}
		if sum.ClashResolve != tc.clash || sum.ChainTooLong != tc.chain {
			t.Errorf("%s: clash_resolve %d chaintoolong %d, want %d %d (by header name, not position)",
				tc.file, sum.ClashResolve, sum.ChainTooLong, tc.clash, tc.chain)
		}
	}
}

func TestParseProcStatRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"empty":           "",
		"no drop column":  "entries found\n0001 0002\n",
		"short row":       "entries insert_failed drop early_drop\n01 02 03\n",
		"long row":        "entries insert_failed drop early_drop\n01 02 03 04 05\n",
		"not hex":         "entries insert_failed drop early_drop\n01 02 zz 04\n",
		"header only":     "entries insert_failed drop early_drop\n",
		"binary":          "\x00\xff\x01",
		"one more column": "entries insert_failed drop early_drop newthing\n01 02 03 04 05\n",
	} {
		_, _, err := ParseProcStat(strings.NewReader(text))
		if (err == nil) != (name == "one more column") {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func attr(typ uint16, v uint32) []byte {
	b := make([]byte, 8)
	nl.NativeEndian().PutUint16(b[0:2], 8)
	nl.NativeEndian().PutUint16(b[2:4], typ)
	binary.BigEndian.PutUint32(b[4:8], v)
	return b
}

func TestDecodeCPUStats(t *testing.T) {
	msg := []byte{0, 0, 0, 3} // nfgenmsg: family, version, res_id = CPU 3
	for _, a := range [][]byte{attr(ctaStatsFound, 10), attr(ctaStatsInsertFailed, 7), attr(ctaStatsDrop, 2),
		attr(ctaStatsEarlyDrop, 1), attr(ctaStatsClashResolve, 5), attr(ctaStatsChainTooLong, 9), attr(99, 1)} {
		msg = append(msg, a...)
	}
	s, err := DecodeCPUStats(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := CPUStats{CPU: 3, Counters: Counters{Found: 10, InsertFailed: 7, Drop: 2, EarlyDrop: 1, ClashResolve: 5, ChainTooLong: 9}}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if _, err := DecodeCPUStats(append([]byte{0, 0, 0, 0}, 8, 0, 10, 0, 1)); err == nil {
		t.Error("a truncated attribute was accepted")
	}
	g, err := DecodeGlobal(append(append([]byte{0, 0, 0, 0}, attr(ctaStatsGlobalEntries, 42)...), attr(ctaStatsGlobalMaxEntries, 65536)...))
	if err != nil || g != (Global{Entries: 42, Max: 65536, HasMax: true}) {
		t.Errorf("global %+v %v", g, err)
	}
	if _, err := DecodeGlobal([]byte{0, 0, 0, 0}); err == nil {
		t.Error("a global answer without entries was accepted")
	}
}

func FuzzParseProcStat(f *testing.F) {
	for _, name := range []string{"nf_conntrack.4.19", "nf_conntrack.5.15", "nf_conntrack.6.x"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cpus, _, err := ParseProcStat(strings.NewReader(string(b)))
		if err == nil && len(cpus) == 0 {
			t.Error("no error and no CPUs")
		}
	})
}

func FuzzDecodeStats(f *testing.F) {
	f.Add(append([]byte{0, 0, 0, 1}, attr(ctaStatsDrop, 3)...))
	f.Add([]byte{0, 0, 0, 0, 4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeCPUStats(b)
		_, _ = DecodeGlobal(b)
	})
}
