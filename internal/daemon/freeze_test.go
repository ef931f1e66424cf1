package daemon

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"testing/synctest"

	"github.com/nodekeeper/nodekeeper/internal/imds"
)

// The state file is rewritten when this VM's Freeze events as it records them
// change, not at every IMDS answer: a document that changes every poll in
// what the file does not keep must not rewrite it every poll.
func TestFreezeChangedWritesOnlyWhatChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		evs := []imds.Event{{ID: "a", Type: imds.Freeze, Status: imds.Scheduled, Description: "maintenance"}}
		r.d.d.FreezeActive = func() []imds.Event { return evs }
		r.d.freezeChanged()
		path := r.d.d.StatePath
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		// Same record (an attribute the file does not keep changed).
		evs = []imds.Event{{ID: "a", Type: imds.Freeze, Status: imds.Scheduled, Description: "maintenance", DurationSeconds: 9}}
		r.d.freezeChanged()
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("state file rewritten for an unchanged record: %v", err)
		}
		evs = []imds.Event{{ID: "a", Type: imds.Freeze, Status: imds.Started, Description: "maintenance"}}
		r.d.freezeChanged()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("state file not rewritten when the event started: %v", err)
		}
	})
}
