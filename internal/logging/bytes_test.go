package logging

import (
	"context"
	"log/slog"
	"testing"
)

// TestJournalEscapesOutsideBytes: a NIC name or an IMDS description may hold
// any bytes; the journal entry shows them escaped (valid, printable UTF-8 on
// one line) in the message and in every field.
func TestJournalEscapesOutsideBytes(t *testing.T) {
	c := &capture{}
	log := slog.New(newJournalHandler(c.send, slog.DiscardHandler, slog.LevelDebug))
	log.Warn("IRQ spread problem: 4 NIC IRQs of eth\xff0", "interface", "eth\xff0", "description", "a\nb\x1b[2J")
	log.InfoContext(context.Background(), "ok")
	if len(c.entries) != 2 {
		t.Fatalf("entries: %+v", c.entries)
	}
	e := c.entries[0]
	if e.msg != `IRQ spread problem: 4 NIC IRQs of eth\xff0` {
		t.Errorf("MESSAGE %q", e.msg)
	}
	if e.vars["INTERFACE"] != `eth\xff0` || e.vars["DESCRIPTION"] != `a\x0ab\x1b[2J` {
		t.Errorf("fields %q", e.vars)
	}
}
