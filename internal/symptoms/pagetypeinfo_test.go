package symptoms

import (
	"context"
	"github.com/nodekeeper/nodekeeper/internal/testenv/opens"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

// TestNeverOpensPagetypeinfo runs the watcher through a saturation (with its
// ksoftirqd search of the proc root) and the one-shot Sample against a root
// whose pagetypeinfo is watched with inotify: no code path may open it.
func TestNeverOpensPagetypeinfo(t *testing.T) {
	h := newFakeHost(t, 4)
	h.withKsoftirqd()
	h.kubelet = &fakeProc{pid: 4321, comm: "kubelet", start: 1}
	h.write()
	pti := filepath.Join(h.root, "proc", "pagetypeinfo")
	h.put("pagetypeinfo", "Page block order: 9\n")
	opened := opens.Watch(t, pti)

	w := newTestWatcher(t, h.fs(), DefaultConfig(), Options{KubeletPID: 4321})
	for sec := 0; sec <= 20; sec += 2 {
		h.spend(1, 2*time.Second, 1)
		h.cpus[2].dropped++
		h.write()
		s := mustTick(t, w, t0.Add(time.Duration(sec)*time.Second))
		_ = s.Report()
	}
	if w.ksoftScans == 0 {
		t.Fatal("the ksoftirqd search did not run")
	}
	clk := clock.NewFake(t0)
	done := make(chan error, 1)
	go func() {
		_, err := Sample(context.Background(), h.fs(), DefaultConfig(), time.Second, SampleOptions{Clock: clk})
		done <- err
	}()
	clk.BlockUntil(1)
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if opened() {
		t.Fatal("a code path opened pagetypeinfo")
	}
	f, err := os.Open(pti)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !opened() {
		t.Fatal("inotify did not see an open: the test proves nothing")
	}
}
