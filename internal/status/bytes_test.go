package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/state"
)

// hostile is what IMDS, the kernel or a damaged state file could hand over:
// bytes that are not UTF-8, a newline, terminal escapes, a bidi override and
// far more text than a screen holds.
var hostile = "eth\xff0\n\x1b[2J\x1b]0;pwned\a\u202e" + strings.Repeat("x", 100_000)

// TestOutsideStringsArePrintableAndClipped: whatever the state file holds,
// the picture is lines of at most 80 printable columns, and the JSON view
// holds the same strings escaped (no U+FFFD, no control characters).
func TestOutsideStringsArePrintableAndClipped(t *testing.T) {
	in := scenarioInputs(t, 8, true)
	in.State = &state.State{PID: 812, Version: hostile, Updated: now.Add(-time.Second),
		Irqbalance: state.Irqbalance{Version: hostile, ActiveState: hostile, Why: hostile, Source: hostile},
		Pauses:     []state.Pause{{At: now.Add(-time.Minute), Seconds: 5, Source: hostile, EventID: hostile, Description: hostile, Outcome: hostile}},
		Freeze:     []state.FreezeEvent{{EventID: hostile, Status: hostile, NotBefore: hostile, Description: hostile}},
		Actions:    []state.Action{{Time: now, Action: hostile, Result: hostile, Detail: hostile, Trigger: hostile}},
		Checks: map[check.Name]state.Check{"compaction": {Status: hostile, Message: hostile},
			"snat": {Status: hostile, Message: hostile, Report: hostileSNAT(t)},
			"dns":  {Status: hostile, Message: hostile}}}
	in.Kubelet.Mode, in.Kubelet.Note = hostile, hostile
	got := Build(in)

	var b strings.Builder
	if err := Render(&b, got, Style{}); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if w := utf8.RuneCountInString(line); w > 80 {
			t.Errorf("line %d is %d columns: %q", i+1, w, line)
		}
		if !printableLine(line) {
			t.Errorf("line %d is not printable: %q", i+1, line)
		}
	}
	if !strings.Contains(b.String(), `eth\xff0\x0a\x1b[2J`) {
		t.Errorf("the escaped name is not shown:\n%s", b.String())
	}

	js, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), `\ufffd`) || strings.Contains(string(js), `\u001b`) || strings.Contains(string(js), `\n`) {
		t.Errorf("JSON view carries raw outside bytes: %.300s", js)
	}
	if len(js) > 8<<10 {
		t.Errorf("JSON view is %d bytes: outside strings are not clipped", len(js))
	}
}

func printableLine(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}

// FuzzOutsideStrings: any bytes in the state file's strings give a picture
// of printable lines of at most 80 columns.
func FuzzOutsideStrings(f *testing.F) {
	f.Add("eth\xff0", "a\nb\x1b[2J", `back\slash`)
	f.Add("", "", "")
	f.Add("\u202e\u200b\ufeff", strings.Repeat("\xe2\x82", 50), "界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界")
	in := scenarioInputs(f, 8, true)
	f.Fuzz(func(t *testing.T, a, b, c string) {
		in := in
		in.State = &state.State{PID: 1, Version: a, Updated: now,
			Irqbalance: state.Irqbalance{Version: b, ActiveState: c, MainPID: 4294967295, KnownBuggy: true},
			Pauses:     []state.Pause{{At: now, Source: a, EventID: b, Description: c, Outcome: a}},
			Freeze:     []state.FreezeEvent{{EventID: a, Status: b, Description: c}},
			Actions:    []state.Action{{Time: now, Action: a, Result: b, Detail: c}},
			Checks:     map[check.Name]state.Check{"compaction": {Status: a, Message: c}}}
		in.Kubelet.Mode, in.Kubelet.Note = b, c
		var out strings.Builder
		if err := Render(&out, Build(in), Style{}); err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			if utf8.RuneCountInString(line) > 80 || !printableLine(line) {
				t.Fatalf("line %d: %q", i+1, line)
			}
		}
	})
}

// hostileSNAT is a SNAT report whose pod names are hostile.
func hostileSNAT(t *testing.T) json.RawMessage {
	b, err := json.Marshal(snat.Report{Sources: []snat.Source{{Kind: snat.KindPod, Namespace: hostile, Pod: hostile, Flows: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
