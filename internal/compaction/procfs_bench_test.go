package compaction

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// buddyinfo192 is a two-node buddyinfo of the size a 192-CPU node prints.
const buddyinfo192 = `Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
Node 0, zone    DMA32   1442   1007    870    611    433    261    122     59     22      9    601
Node 0, zone   Normal 583920 371120 190032  60331  17121   4410   1203    345    102     33  40112
Node 1, zone   Normal 612002 401233 170021  52019  15002   3921   1100    301     99     28  39002
`

// The compaction watcher's hand parser next to procfs's BuddyInfo on the
// 192-CPU fixture, both reading the file each iteration:
//
//	go test -run '^$' -bench 'Buddyinfo192' -benchmem ./internal/compaction/
func buddyFS(b *testing.B) *hostfs.FS {
	b.Helper()
	h := hostfixture.Host{CPUs: 192, OtherIRQs: 900, Buddyinfo: buddyinfo192,
		NICs: []hostfixture.NIC{{Name: "eth0", Driver: "hv_netvsc",
			VF: &hostfixture.NIC{Name: "enP1s1", Driver: "mlx5_core", Queues: 64, NUMANode: -1}}}}
	p, err := h.Build(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	fsys, err := hostfs.New(p)
	if err != nil {
		b.Fatal(err)
	}
	return fsys
}

func BenchmarkBuddyinfo192Hand(b *testing.B) {
	fsys := buddyFS(b)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		z, err := readBuddyinfo(fsys, &buf)
		if err != nil || len(z) != 4 {
			b.Fatal(err, len(z))
		}
	}
}

func BenchmarkBuddyinfo192Procfs(b *testing.B) {
	pfs := buddyFS(b).Procfs()
	b.ReportAllocs()
	for b.Loop() {
		z, err := pfs.BuddyInfo()
		if err != nil || len(z) != 4 {
			b.Fatal(err, len(z))
		}
	}
}

// TestProcfsBuddyinfoTooLenient pins why the hand parser stays: procfs's
// BuddyInfo reads a file that is not buddyinfo as zones (an empty file as no
// zones at all), which ParseBuddyinfo refuses so that a wrong file is never
// read as "no free memory".
func TestProcfsBuddyinfoTooLenient(t *testing.T) {
	for _, in := range []string{
		"",
		"MemTotal: 1 kB x\n",
		"Node 0, zone Normal\n",
		"Node x, zone Normal 1 2 3\n",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "buddyinfo"), []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		fsys, err := hostfs.New(hostfs.Paths{Proc: dir, Sys: dir, Cgroup: dir, Root: dir})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fsys.Procfs().BuddyInfo(); err != nil {
			t.Logf("procfs now rejects %q (%v): the hand parser may no longer be needed", in, err)
			continue
		}
		if _, err := ParseBuddyinfo([]byte(in)); err == nil {
			t.Errorf("ParseBuddyinfo(%q) accepted what is not buddyinfo", strings.TrimSpace(in))
		}
	}
}
