package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/printable"
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

// TestTextAndJSONKeepOutsideBytes: outside the journal, a log line with a
// NIC name that is not UTF-8 and an IMDS description holding a newline and a
// terminal escape stays one line of valid, printable UTF-8; JSON keeps the
// bytes (escaped) instead of replacing them with U+FFFD.
func TestTextAndJSONKeepOutsideBytes(t *testing.T) {
	for _, format := range []string{FormatText, FormatJSON} {
		var buf bytes.Buffer
		log := New(&buf, format, slog.LevelInfo)
		log.Warn("IRQ spread problem on eth\xff0", KeyInterface, "eth\xff0", "description", "a\nb\x1b[2J\u202e",
			KeyError, errors.New("read eth\xff0: gone"))
		out := buf.String()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Errorf("%s: not one line: %q", format, out)
		}
		line := strings.TrimSuffix(out, "\n")
		if !utf8.ValidString(line) || printable.Escape(line) != strings.ReplaceAll(line, `\`, `\\`) {
			t.Errorf("%s: not printable UTF-8: %q", format, line)
		}
		if strings.ContainsRune(line, utf8.RuneError) {
			t.Errorf("%s: bytes lost to U+FFFD: %q", format, line)
		}
		if format == FormatJSON {
			var m map[string]string
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("json: %v: %q", err, line)
			}
			if m["msg"] != `IRQ spread problem on eth\xff0` || m[KeyInterface] != `eth\xff0` ||
				m["description"] != `a\x0ab\x1b[2J\u202e` || m[KeyError] != `read eth\xff0: gone` {
				t.Errorf("json fields: %q", m)
			}
		}
	}
}
