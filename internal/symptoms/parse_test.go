package symptoms

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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

func TestParseStat(t *testing.T) {
	got, err := ParseStat(readTestdata(t, "ci-vm-2cpu-6.18", "proc", "stat"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []CPUStat{
		{CPU: 0, User: 26568, System: 26324, Idle: 159825, IOWait: 99, SoftIRQ: 49, Steal: 30, Guest: 4},
		{CPU: 1, User: 26393, System: 20804, Idle: 164468, IOWait: 918, SoftIRQ: 153, Steal: 52, Guest: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if tot := got[0].Total(); tot != 26568+26324+159825+99+49 {
		t.Errorf("Total = %d", tot)
	}

	// An old kernel's four columns, an offline CPU 1, the dst reused.
	got, err = ParseStat([]byte("cpu  1 2 3 4\ncpu0 1 0 0 4\ncpu2 0 2 3 0\nintr 5 6\ncpu9 1 1 1 1\n"), got)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].CPU != 0 || got[1].CPU != 2 || got[1].Idle != 0 || got[1].Nice != 2 || got[1].System != 3 {
		t.Errorf("old kernel: %+v", got)
	}

	for _, bad := range []string{
		"", "cpu  1 2 3 4\n", "intr 1\n", "cpu0 1 2 3\n", "cpu0 1 2 x 4\n", "cpux 1 2 3 4\n",
		"cpu1 1 2 3 4\ncpu0 1 2 3 4\n", "cpu0 1 2 3 4\ncpu0 1 2 3 4\n", "cpu99999 1 2 3 4\n",
		"cpu0 1 2 3 99999999999999999999999\n", "cpu0 -1 2 3 4\n",
	} {
		if _, err := ParseStat([]byte(bad), nil); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseStat(%q) error = %v", bad, err)
		}
	}
}

func TestParseSoftnet(t *testing.T) {
	tests := []struct {
		file   []string
		online []int
		want   []SoftnetStat
	}{{
		file:   []string{"ci-vm-2cpu-6.18", "proc", "net", "softnet_stat"},
		online: []int{0, 1},
		want:   []SoftnetStat{{CPU: 0, Processed: 0x3c, Columns: 15}, {CPU: 1, Processed: 0x1603, Columns: 15}},
	}, {
		// 15 columns, CPU 1 offline: the CPU number column says so.
		file: []string{"softnet", "15col-cpu1-offline"},
		want: []SoftnetStat{{CPU: 0, Processed: 0xffffffff, Columns: 15},
			{CPU: 2, Processed: 0x10, Dropped: 10, TimeSqueeze: 0x20, Columns: 15}},
	}, {
		file:   []string{"softnet", "13col-cpu1-offline"},
		online: []int{0, 2, 3}, // not needed with a CPU column, and not used
		want: []SoftnetStat{{CPU: 0, Processed: 0x1000, TimeSqueeze: 1, Columns: 13},
			{CPU: 2, Processed: 0x2000, Dropped: 3, Columns: 13},
			{CPU: 3, Processed: 0x3000, TimeSqueeze: 7, Columns: 13}},
	}, {
		// 11 columns: no CPU number, rows are the online CPUs 0, 1, 3.
		file:   []string{"softnet", "11col-cpu2-offline"},
		online: []int{0, 1, 3},
		want: []SoftnetStat{{CPU: 0, Processed: 0xa000, TimeSqueeze: 0x10, Columns: 11},
			{CPU: 1, Processed: 0xb000, Dropped: 2, Columns: 11},
			{CPU: 3, Processed: 0xc000, TimeSqueeze: 0xff, Columns: 11}},
	}, {
		file: []string{"softnet", "11col-cpu2-offline"},
		want: []SoftnetStat{{CPU: 0, Processed: 0xa000, TimeSqueeze: 0x10, Columns: 11},
			{CPU: 1, Processed: 0xb000, Dropped: 2, Columns: 11},
			{CPU: 2, Processed: 0xc000, TimeSqueeze: 0xff, Columns: 11}},
	}}
	for _, tc := range tests {
		got, err := ParseSoftnet(readTestdata(t, tc.file...), tc.online, nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.file, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v:\ngot  %+v\nwant %+v", tc.file, got, tc.want)
		}
	}
	h100, err := ParseSoftnet(readTestdata(t, "h100-vm-16cpu-6.18", "proc", "net", "softnet_stat"), nil, nil)
	if err != nil || len(h100) != 16 || h100[15].CPU != 15 || h100[14].Processed != 0x16 {
		t.Errorf("h100: %+v %v", h100, err)
	}

	// 11 columns whose rows do not match the online CPUs cannot be mapped.
	if _, err := ParseSoftnet(readTestdata(t, "softnet", "11col-cpu2-offline"), []int{0, 1}, nil); !errors.Is(err, ErrFormat) {
		t.Errorf("row/online mismatch: %v", err)
	}
	for _, bad := range []string{
		"00000001 00000002\n",
		"0000000g 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n",
		"100000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n",
		strings.Repeat("00000000 ", 17) + "\n",
		"00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000ffff\n",
	} {
		if _, err := ParseSoftnet([]byte(bad), nil, nil); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseSoftnet(%q) error = %v", bad, err)
		}
	}
	if got, err := ParseSoftnet(nil, nil, nil); err != nil || len(got) != 0 {
		t.Errorf("empty file: %v %v", got, err)
	}
}

func TestParseSoftirqs(t *testing.T) {
	got, err := ParseSoftirqs(readTestdata(t, "ci-vm-2cpu-6.18", "proc", "softirqs"), "NET_RX", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []IRQCount{{0, 3232}, {1, 3772}}; !reflect.DeepEqual(got, want) {
		t.Errorf("ci-vm NET_RX %v, want %v", got, want)
	}
	got, err = ParseSoftirqs(readTestdata(t, "h100-vm-16cpu-6.18", "proc", "softirqs"), "NET_RX", got)
	if err != nil {
		t.Fatal(err)
	}
	wantH := []uint64{8, 5, 5, 0, 0, 0, 0, 12, 17, 0, 0, 0, 0, 3, 12, 7}
	if len(got) != 16 {
		t.Fatalf("h100: %d CPUs", len(got))
	}
	for i, w := range wantH {
		if got[i].CPU != i || got[i].Count != w {
			t.Errorf("h100 CPU%d = %+v, want %d", i, got[i], w)
		}
	}
	if tm, err := ParseSoftirqs(readTestdata(t, "h100-vm-16cpu-6.18", "proc", "softirqs"), "TIMER", nil); err != nil || tm[15].Count != 300 {
		t.Errorf("TIMER: %v %v", tm, err)
	}
	// Possible CPUs with a gap (CPU numbers come from the header).
	got, err = ParseSoftirqs([]byte("    CPU0  CPU4\n  NET_RX:  1  2\n"), "NET_RX", nil)
	if err != nil || !reflect.DeepEqual(got, []IRQCount{{0, 1}, {4, 2}}) {
		t.Errorf("gap: %v %v", got, err)
	}
	for _, bad := range []string{
		"", "\n NET_RX: 1\n", "  CPU0 CPUx\n NET_RX: 1 2\n", "  CPU0 CPU1\n NET_RX: 1\n",
		"  CPU0 CPU1\n NET_RX: 1 2 3\n", "  CPU0 CPU1\n TIMER: 1 2\n", "  CPU1 CPU0\n NET_RX: 1 2\n",
		"  CPU0\n NET_RX: -1\n", "  CPU0 XYZ\n NET_RX: 1 2\n",
	} {
		if _, err := ParseSoftirqs([]byte(bad), "NET_RX", nil); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseSoftirqs(%q) error = %v", bad, err)
		}
	}
}

func TestParsePidStat(t *testing.T) {
	st, err := ParsePidStat(readTestdata(t, "ci-vm-2cpu-6.18", "proc", "22", "stat"))
	if err != nil {
		t.Fatal(err)
	}
	want := PidStat{PID: 22, Comm: "ksoftirqd/1", State: 'S', PPID: 2, UTime: 19, STime: 0, StartTime: 25, Processor: 1}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	// A command name with spaces and parentheses; a kernel without field 39.
	line := "4242 (a) b (c)) R 1 4242 4242 0 -1 4194560 10 0 0 0 700 1300 0 0 20 0 12 0 98765\n"
	st, err = ParsePidStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "a) b (c)" || st.UTime != 700 || st.STime != 1300 || st.StartTime != 98765 || st.Processor != -1 || st.PPID != 1 {
		t.Errorf("got %+v", st)
	}
	for _, bad := range []string{
		"", "12 kubelet S 1", "x (k) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
		"12 (k) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18",
		"12 (k) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
		"12 (k) S 1 2 3 4 5 6 7 8 9 10 x 12 13 14 15 16 17 18 19 20",
		"12 )k( S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
	} {
		if _, err := ParsePidStat([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParsePidStat(%q) error = %v", bad, err)
		}
	}
}

func TestParseSmallFiles(t *testing.T) {
	ss, err := ParseSchedstat(readTestdata(t, "ci-vm-2cpu-6.18", "proc", "14", "schedstat"))
	if err != nil || ss != (Schedstat{RunNs: 137256191, WaitNs: 300280514, Slices: 3428}) {
		t.Errorf("schedstat %+v %v", ss, err)
	}
	if _, err := ParseSchedstat([]byte("1 2\n")); !errors.Is(err, ErrFormat) {
		t.Errorf("short schedstat: %v", err)
	}

	cs, err := ParseCgroupStat([]byte("nr_descendants 182000\nnr_subsys_cpu 12\nnr_dying_descendants 311\n"))
	if err != nil || cs != (CgroupStat{Descendants: 182000, DyingDescendants: 311}) {
		t.Errorf("cgroup.stat %+v %v", cs, err)
	}
	for _, bad := range []string{"", "nr_dying_descendants 1\n", "nr_descendants x\n"} {
		if _, err := ParseCgroupStat([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseCgroupStat(%q) error = %v", bad, err)
		}
	}

	n, err := ParseProcCgroups(readTestdata(t, "ci-vm-2cpu-6.18", "proc", "cgroups"))
	if err != nil || n != 25 {
		t.Errorf("ParseProcCgroups(ci-vm) = %d %v, want 25 (memory)", n, err)
	}
	if n, _ := ParseProcCgroups([]byte("#h\ncpu 1 9 0\nmemory 2 4 1\n")); n != 4 {
		t.Errorf("disabled controller counted: %d", n)
	}
	for _, bad := range []string{"", "#only a header\n", "cpu 1 x 1\n", "cpu 1 2\n"} {
		if _, err := ParseProcCgroups([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseProcCgroups(%q) error = %v", bad, err)
		}
	}
}

func FuzzStat(f *testing.F) {
	f.Add(readTestdata(f, "ci-vm-2cpu-6.18", "proc", "stat"))
	f.Add([]byte("cpu  1 2 3 4\ncpu0 1 0 0 4\ncpu2 0 2 3 0\nintr 5 6\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseStat(b, nil)
		if err != nil {
			if len(got) != 0 {
				t.Fatal("rows with an error")
			}
			return
		}
		for i, c := range got {
			if c.CPU < 0 || (i > 0 && c.CPU <= got[i-1].CPU) {
				t.Fatalf("CPU numbers %v", got)
			}
		}
	})
}

func FuzzSoftnet(f *testing.F) {
	for _, p := range [][]string{
		{"ci-vm-2cpu-6.18", "proc", "net", "softnet_stat"}, {"h100-vm-16cpu-6.18", "proc", "net", "softnet_stat"},
		{"softnet", "11col-cpu2-offline"}, {"softnet", "13col-cpu1-offline"}, {"softnet", "15col-cpu1-offline"},
	} {
		f.Add(readTestdata(f, p...), uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, nOnline uint8) {
		online := make([]int, nOnline)
		for i := range online {
			online[i] = 2 * i
		}
		got, err := ParseSoftnet(b, online, nil)
		if err != nil {
			if len(got) != 0 {
				t.Fatal("rows with an error")
			}
			return
		}
		for _, s := range got {
			if s.CPU < 0 || s.Columns < 9 || s.Columns > 16 {
				t.Fatalf("row %+v", s)
			}
			if s.Columns < 13 && s.CPU%2 != 0 {
				t.Fatalf("row without CPU column not mapped to an online CPU: %+v", s)
			}
		}
	})
}

func FuzzSoftirqs(f *testing.F) {
	f.Add(readTestdata(f, "ci-vm-2cpu-6.18", "proc", "softirqs"))
	f.Add(readTestdata(f, "h100-vm-16cpu-6.18", "proc", "softirqs"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseSoftirqs(b, "NET_RX", nil)
		if err != nil {
			if len(got) != 0 {
				t.Fatal("counts with an error")
			}
			return
		}
		for i, c := range got {
			if c.CPU < 0 || (i > 0 && c.CPU <= got[i-1].CPU) {
				t.Fatalf("CPU numbers %v", got)
			}
		}
	})
}

func FuzzPidStat(f *testing.F) {
	f.Add(readTestdata(f, "ci-vm-2cpu-6.18", "proc", "14", "stat"))
	f.Add([]byte("4242 (a) b (c)) R 1 4242 4242 0 -1 4194560 10 0 0 0 700 1300 0 0 20 0 12 0 98765\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParsePidStat(b)
		if err != nil {
			return
		}
		if st.PID < 0 || st.PPID < 0 || st.Processor < -1 || strings.ContainsRune(st.Comm, '\n') {
			t.Fatalf("parsed %+v", st)
		}
	})
}
