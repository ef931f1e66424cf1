package latency

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

func TestLoadRaisingMemlock(t *testing.T) {
	for _, c := range []struct {
		name      string
		errs      []error // what each load returns
		raiseErr  error
		wantLoads int
		wantRaise bool
		wantErr   string
	}{
		{"loads at once", []error{nil}, nil, 1, false, ""},
		{"another error is not retried", []error{unix.EINVAL}, nil, 1, false, "invalid argument"},
		{"EPERM: raise and load again", []error{fmt.Errorf("map create: %w", unix.EPERM), nil}, nil, 2, true, ""},
		{"EPERM twice: the second error", []error{unix.EPERM, fmt.Errorf("still: %w", unix.EPERM)}, nil, 2, true, "still"},
		{"EPERM and the raise fails", []error{unix.EPERM}, errors.New("it is already unlimited"), 1, true,
			"raising the locked-memory limit failed: it is already unlimited"},
	} {
		t.Run(c.name, func(t *testing.T) {
			loads, raised := 0, false
			_, err := loadRaisingMemlock(func() (int, error) {
				loads++
				return 0, c.errs[loads-1]
			}, func() error { raised = true; return c.raiseErr })
			if loads != c.wantLoads || raised != c.wantRaise {
				t.Errorf("loads %d raised %v, want %d %v", loads, raised, c.wantLoads, c.wantRaise)
			}
			if (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
		})
	}
}

// TestNoBPFCallBeforeMain: no package in the binary may touch eBPF or
// RLIMIT_MEMLOCK at initialisation (cilium/ebpf's rlimit package does: a
// bpf() map creation in every process, `nodekeeper version` included).
func TestNoBPFCallBeforeMain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/nodekeeper/nodekeeper/cmd/nodekeeper").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/cilium/ebpf/rlimit" {
			t.Errorf("the binary links %s, whose init() creates a BPF map in every process", p)
		}
	}
}

// TestOpenWithMemlockAtZero: the programs load with the soft locked-memory
// limit at zero, as a unit with LimitMEMLOCK=0 or an old default gives them;
// the limit is put back afterwards.
func TestOpenWithMemlockAtZero(t *testing.T) {
	layer.Root(t)
	p, err := Open()
	if err != nil {
		layer.Unavailable(t, "root", "cannot attach the eBPF programs: %v", err)
	}
	p.Close()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
			t.Errorf("restoring RLIMIT_MEMLOCK: %v", err)
		}
	})
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 0, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	p, err = Open()
	if err != nil {
		t.Fatalf("with RLIMIT_MEMLOCK 0: %v", err)
	}
	p.Close()
}
