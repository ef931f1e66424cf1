package daemon

import (
	"strings"
	"testing"
	"testing/synctest"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/state"
)

// TestIMDSTextIsPrintableAndClipped: event ids and descriptions with
// newlines, escape sequences, invalid UTF-8 or 100 KB reach the state file
// (hence status and check) and STATUS= escaped and clipped, and a document
// listing many events for this VM keeps the state file small.
func TestIMDSTextIsPrintableAndClipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, healthyHost(), nil, nil)
		hostile := imds.Event{ID: "id\n\x1b[2J" + strings.Repeat("x", 5000), Status: "Started",
			NotBeforeRaw: "\xff", Description: "desc\r\nnext" + strings.Repeat("é", 50000)}
		evs := make([]imds.Event, 100)
		for i := range evs {
			evs[i] = hostile
		}
		r.d.d.FreezeActive = func() []imds.Event { return evs }
		r.d.freezeChanged()
		st, err := state.Read(r.d.d.StatePath)
		if err != nil || st == nil {
			t.Fatal(err)
		}
		if len(st.Freeze) != maxFreezeShown {
			t.Fatalf("%d events in the state file, want %d", len(st.Freeze), maxFreezeShown)
		}
		for _, e := range st.Freeze {
			for _, s := range []string{e.EventID, e.Status, e.NotBefore, e.Description} {
				if len(s) > maxIMDSText || strings.ContainsAny(s, "\n\r\x1b") || !utf8.ValidString(s) {
					t.Fatalf("raw IMDS text in the state file: %q", s)
				}
			}
		}
		_, _, status := r.notify.get()
		if len(status) > 2000 || strings.ContainsAny(status, "\n\r\x1b") || !utf8.ValidString(status) {
			t.Fatalf("STATUS= %d bytes: %q", len(status), status[:min(len(status), 200)])
		}
	})
}
