package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

func TestWriteReadAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "run", "nodekeeper", "state.json")
	if s, err := Read(p); s != nil || err != nil {
		t.Fatalf("missing file: %v %v", s, err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := &State{Version: "v1", Checks: map[check.Name]Check{"irq": {Time: now, Interval: Duration(time.Minute), Status: "ok"}}}
	for i := 0; i < 30; i++ {
		s.AddAction(Action{Time: now, Action: "irq_spread", Result: "success"})
	}
	if len(s.Actions) != MaxActions {
		t.Errorf("kept %d actions", len(s.Actions))
	}
	if err := Write(p, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil || got.Version != "v1" || time.Duration(got.Checks["irq"].Interval) != time.Minute {
		t.Fatalf("read back %+v %v", got, err)
	}
	if !got.Checks["irq"].Fresh(now.Add(119*time.Second)) || got.Checks["irq"].Fresh(now.Add(2*time.Minute)) {
		t.Error("fresh means younger than twice the interval")
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	os.WriteFile(p, []byte("{not json"), 0o644)
	if _, err := Read(p); err == nil {
		t.Error("a corrupt file must be an error")
	}
}

// What nodekeeper stored on kubelet's unit survives a write and a read apart
// from what it enforced; a file from before the record counts its enforced
// pin as stored.
func TestKubeletStoredPin(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	s := &State{Kubelet: Kubelet{Stored: &StoredPin{Unit: "kubelet-x.service", AllowedCPUs: "6-7"}}}
	if err := Write(p, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if sp, ok := got.Kubelet.StoredPin(); !ok || sp.Unit != "kubelet-x.service" || sp.AllowedCPUs != "6-7" || got.Kubelet.Pinned {
		t.Errorf("read back %+v: stored %+v %v", got.Kubelet, sp, ok)
	}
	old := Kubelet{Pinned: true, Unit: "kubelet.service", CPUs: "0-3"}
	if sp, ok := old.StoredPin(); !ok || sp.Unit != "kubelet.service" || sp.AllowedCPUs != "0-3" {
		t.Errorf("an older file's pin: %+v %v", sp, ok)
	}
	if (Kubelet{}).Ours() {
		t.Error("an empty record owns nothing")
	}
}
