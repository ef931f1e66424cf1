package symptoms

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// procfsOver returns procfs's view of a proc root holding the named files.
func procfsOver(t *testing.T, files map[string][]byte) *hostfs.FS {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fsys, err := hostfs.New(hostfs.Paths{Proc: dir, Sys: dir, Cgroup: dir, Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// TestProcfsSoftnetRowIsNotCPU pins why ParseSoftnet stays: on an 11-column
// kernel with CPU 2 offline, procfs numbers the third row CPU 2 while it is
// CPU 3's.
func TestProcfsSoftnetRowIsNotCPU(t *testing.T) {
	b := readTestdata(t, "softnet", "11col-cpu2-offline")
	rows, err := procfsOver(t, map[string][]byte{"net/softnet_stat": b}).Procfs().NetSoftnetStat()
	if err != nil || len(rows) != 3 {
		t.Fatalf("procfs: %v, %v", rows, err)
	}
	if rows[2].Index != 2 {
		t.Logf("procfs now numbers the row CPU %d: ParseSoftnet may no longer be needed", rows[2].Index)
	}
	got, err := ParseSoftnet(b, []int{0, 1, 3}, nil)
	if err != nil || got[2].CPU != 3 {
		t.Fatalf("ParseSoftnet: %+v, %v", got, err)
	}
}

// TestProcfsSoftirqsIgnoresHeader pins why ParseSoftirqs stays: procfs
// indexes counts by column (CPU4's count lands at index 1) and reads a file
// without a NET_RX row as no traffic.
func TestProcfsSoftirqsIgnoresHeader(t *testing.T) {
	sparse := []byte("       CPU0       CPU4\n     NET_RX:     5    9\n")
	s, err := procfsOver(t, map[string][]byte{"softirqs": sparse}).Procfs().Softirqs()
	if err != nil || len(s.NetRx) != 2 || s.NetRx[1] != 9 {
		t.Logf("procfs now reads %v, %v: ParseSoftirqs may no longer be needed", s.NetRx, err)
	}
	got, err := ParseSoftirqs(sparse, "NET_RX", nil)
	if err != nil || len(got) != 2 || got[1] != (IRQCount{CPU: 4, Count: 9}) {
		t.Fatalf("ParseSoftirqs: %+v, %v", got, err)
	}
	noRow := []byte("       CPU0\n     NET_TX:     5\n")
	if s, err := procfsOver(t, map[string][]byte{"softirqs": noRow}).Procfs().Softirqs(); err != nil || s.NetRx != nil {
		t.Logf("procfs now reads %v, %v", s.NetRx, err)
	}
	if _, err := ParseSoftirqs(noRow, "NET_RX", nil); err == nil {
		t.Fatal("ParseSoftirqs read a file without NET_RX")
	}
}
