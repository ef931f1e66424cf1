// Package printable owns how nodekeeper shows a string it did not write — a
// NIC name from the kernel, an IMDS event id or description — to a person or
// to another program: metric label values, journal fields, STATUS= lines,
// `status` and `check` output.
//
// The kernel allows any bytes but '/', ':' and white space in an interface
// name, and IMDS can send anything. Escape makes such a string valid UTF-8
// and printable, reversibly: a byte that is not part of valid UTF-8 becomes
// \xHH, a non-printable rune becomes \xHH, \uHHHH or \UHHHHHHHH, and a
// backslash becomes \\. Everything else is kept as it is, so "eth0" stays
// "eth0" and "eth\xff0" (the raw byte 0xff) is shown as `eth\xff0`.
package printable

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// Escape returns s as valid, printable UTF-8 (see the package doc). It
// allocates only when s needs escaping.
func Escape(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			writeHex(&b, 'x', uint32(s[i]), 2)
		case r == '\\':
			b.WriteString(`\\`)
		case r < utf8.RuneSelf && !unicode.IsPrint(r) && r != ' ':
			writeHex(&b, 'x', uint32(r), 2)
		case r >= utf8.RuneSelf && !unicode.IsGraphic(r):
			if r <= 0xffff {
				writeHex(&b, 'u', uint32(r), 4)
			} else {
				writeHex(&b, 'U', uint32(r), 8)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Clip escapes s and cuts the result to at most max bytes on a rune
// boundary, ending a cut string with "…" (max < 4: no mark).
func Clip(s string, max int) string {
	s = Escape(s)
	if max < 0 || len(s) <= max {
		return s
	}
	mark := "…"
	if max < len(mark)+1 {
		mark = ""
	}
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// clean reports whether s needs no escaping.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return cleanSlow(s[i:])
		}
		if c == '\\' || c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func cleanSlow(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '\\' {
			return false
		}
		if r < utf8.RuneSelf {
			if r < ' ' || r == 0x7f {
				return false
			}
		} else if !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}

func writeHex(b *strings.Builder, kind byte, v uint32, digits int) {
	b.WriteByte('\\')
	b.WriteByte(kind)
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		b.WriteByte(hexDigits[(v>>uint(shift))&0xf])
	}
}
