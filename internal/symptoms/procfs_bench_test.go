package symptoms

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/prometheus/procfs"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// The benchmarks below put each hand parser of this package next to
// prometheus/procfs's parser of the same file, on the 192-CPU Azure node of
// the CLI's large-node test (hostfixture: 192 CPUs, 900 other IRQs, a
// 64-queue VF). Both sides read the file from the tree each iteration. The
// watcher's budget is 500 µs for a whole tick on this node.
//
//	go test -run '^$' -bench 'Parse192' -benchmem ./internal/symptoms/

func fixture192(b *testing.B) hostfs.Paths {
	b.Helper()
	h := hostfixture.Host{CPUs: 192, OtherIRQs: 900, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "hv_netvsc",
		VF: &hostfixture.NIC{Name: "enP1s1", Driver: "mlx5_core", Queues: 64, NUMANode: -1}}},
		NetRx: func(cpu int) uint64 { return uint64(cpu)*1_000_003 + 7 }}
	p, err := h.Build(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	// The fixture's /proc/stat is all zeros with a one-number softirq line;
	// give it a kernel's shape (counters of a node up for days, the full
	// softirq line) so that neither parser is measured on short numbers or
	// fails on a line no kernel prints.
	var st []byte
	st = append(st, "cpu  1 2 3 4 5 6 7 8 9 10\n"...)
	for cpu := range 192 {
		st = append(st, "cpu"+strconv.Itoa(cpu)+" 18443210 3321 9923110 731234567 231234 0 8123456 112233 0 0\n"...)
	}
	st = append(st, "intr 1 2 3\nctxt 123456789\nbtime 1700000000\nprocesses 99999\nprocs_running 3\nprocs_blocked 0\n"+
		"softirq 11 1 2 3 4 5 6 7 8 9 10\n"...)
	if err := os.WriteFile(filepath.Join(p.Proc, "stat"), st, 0o644); err != nil {
		b.Fatal(err)
	}
	pid := "4321"
	if err := os.MkdirAll(filepath.Join(p.Proc, pid), 0o755); err != nil {
		b.Fatal(err)
	}
	line := "4321 (kubelet) S 1 4321 4321 0 -1 1077936384 2372310 0 0 0 1234567 765432 0 0 20 0 52 0 5000 " +
		"2305699840 37821 18446744073709551615 1 1 0 0 0 0 1002060288 0 2143420159 0 0 0 17 7 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	if err := os.WriteFile(filepath.Join(p.Proc, pid, "stat"), []byte(line), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

func benchFS(b *testing.B) (*hostfs.FS, procfs.FS) {
	fsys, err := hostfs.New(fixture192(b))
	if err != nil {
		b.Fatal(err)
	}
	return fsys, fsys.Procfs()
}

func BenchmarkParse192StatHand(b *testing.B) {
	fsys, _ := benchFS(b)
	path := fsys.Proc("stat")
	var buf []byte
	var dst []CPUStat
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = hostfs.ReadFile(path, buf); err != nil {
			b.Fatal(err)
		}
		if dst, err = ParseStat(buf, dst); err != nil || len(dst) != 192 {
			b.Fatal(err, len(dst))
		}
	}
}

func BenchmarkParse192StatProcfs(b *testing.B) {
	_, pfs := benchFS(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := pfs.Stat()
		if err != nil || len(s.CPU) != 192 {
			b.Fatal(err, len(s.CPU))
		}
	}
}

func BenchmarkParse192SoftnetHand(b *testing.B) {
	fsys, _ := benchFS(b)
	path := fsys.Proc("net", "softnet_stat")
	var buf []byte
	var dst []SoftnetStat
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = hostfs.ReadFile(path, buf); err != nil {
			b.Fatal(err)
		}
		if dst, err = ParseSoftnet(buf, nil, dst); err != nil || len(dst) != 192 {
			b.Fatal(err, len(dst))
		}
	}
}

func BenchmarkParse192SoftnetProcfs(b *testing.B) {
	_, pfs := benchFS(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := pfs.NetSoftnetStat()
		if err != nil || len(s) != 192 {
			b.Fatal(err, len(s))
		}
	}
}

func BenchmarkParse192SoftirqsHand(b *testing.B) {
	fsys, _ := benchFS(b)
	path := fsys.Proc("softirqs")
	var buf []byte
	var dst []IRQCount
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = hostfs.ReadFile(path, buf); err != nil {
			b.Fatal(err)
		}
		if dst, err = ParseSoftirqs(buf, "NET_RX", dst); err != nil || len(dst) != 192 {
			b.Fatal(err, len(dst))
		}
	}
}

func BenchmarkParse192SoftirqsProcfs(b *testing.B) {
	_, pfs := benchFS(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := pfs.Softirqs()
		if err != nil || len(s.NetRx) != 192 {
			b.Fatal(err, len(s.NetRx))
		}
	}
}

func BenchmarkParse192PidStatHand(b *testing.B) {
	fsys, _ := benchFS(b)
	path := fsys.Proc("4321", "stat")
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = hostfs.ReadFile(path, buf); err != nil {
			b.Fatal(err)
		}
		if st, err := ParsePidStat(buf); err != nil || st.STime != 765432 {
			b.Fatal(err, st)
		}
	}
}

func BenchmarkParse192PidStatProcfs(b *testing.B) {
	_, pfs := benchFS(b)
	b.ReportAllocs()
	for b.Loop() {
		p, err := pfs.Proc(4321)
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Stat()
		if err != nil || st.STime != 765432 {
			b.Fatal(err, st)
		}
	}
}
