package printable

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"eth0", "eth0"},
		{"", ""},
		{"enP12345s1", "enP12345s1"},
		{"eth\xff0", `eth\xff0`},
		{"a\nb\tc", `a\x0ab\x09c`},
		{"\x1b[31mred", `\x1b[31mred`},
		{`back\slash`, `back\\slash`},
		{"Wartung für VM", "Wartung für VM"},
		{"line\u2028sep", `line\u2028sep`},
		{"\U000e0001tag", `\U000e0001tag`},
		{"\ufffd", "\ufffd"}, // U+FFFD itself is printable
		{"\x7f", `\x7f`},
		{"\xc3", `\xc3`},                 // a truncated 2-byte sequence
		{"\xed\xa0\x80", `\xed\xa0\x80`}, // a UTF-16 surrogate is not UTF-8
		{"ok space", "ok space"},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := Clip(long, 21)
	if len(got) > 21 || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Fatalf("Clip = %q (%d bytes)", got, len(got))
	}
	if got := Clip("short", 80); got != "short" {
		t.Fatalf("Clip short = %q", got)
	}
	if got := Clip("a\nb", 80); got != `a\x0ab` {
		t.Fatalf("Clip escapes first: %q", got)
	}
	if got := Clip("abcdef", 2); got != "ab" {
		t.Fatalf("Clip tiny = %q", got)
	}
}

// FuzzEscape: whatever the bytes, the result is valid UTF-8 with only
// printable runes, and clean input comes back unchanged.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"eth0", "eth\xff0", "a\nb", `\`, "\u2028", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q: not UTF-8", s, e)
		}
		for _, r := range e {
			if r != ' ' && !unicode.IsGraphic(r) {
				t.Fatalf("Escape(%q) = %q: rune %U not printable", s, e, r)
			}
		}
		if clean(s) && e != s {
			t.Fatalf("clean %q changed to %q", s, e)
		}
		if c := Clip(s, 40); len(c) > 40 || !utf8.ValidString(c) {
			t.Fatalf("Clip(%q, 40) = %q", s, c)
		}
	})
}

func BenchmarkEscapeClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Escape("enP12345s1")
	}
}
