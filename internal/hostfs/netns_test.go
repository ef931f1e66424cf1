package hostfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPIDsAndNetNSInode(t *testing.T) {
	proc := t.TempDir()
	for pid, link := range map[string]string{"1": "net:[4026531840]", "42": "net:[4026532001]", "7": "mnt:[1]", "self": "net:[4026531840]"} {
		if err := os.MkdirAll(filepath.Join(proc, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link, filepath.Join(proc, pid, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(proc, "stat"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := New(Paths{Proc: proc})
	if err != nil {
		t.Fatal(err)
	}
	pids, err := f.PIDs()
	if err != nil || !slices.Equal(pids, []int{1, 7, 42}) {
		t.Fatalf("PIDs = %v, %v; want [1 7 42]", pids, err)
	}
	if ino, err := f.NetNSInode("42"); err != nil || ino != 4026532001 {
		t.Errorf("NetNSInode(42) = %d, %v", ino, err)
	}
	if _, err := f.NetNSInode("7"); err == nil {
		t.Error("a link that is not net:[N] was accepted")
	}
	if _, err := f.NetNSInode("99"); err == nil {
		t.Error("a missing process was accepted")
	}
}
