// Package cpuset owns the CPU set value and its four spellings: the kernel's CPU
// list ("0-3,8"), the kernel's hex mask with comma-separated 32-bit groups
// ("ffffffff,00000001"), systemd's AllowedCPUs byte array (CPU i at byte i/8,
// bit i%8, least significant first), and a JSON array of CPU numbers.
//
// A Set is an immutable value: every operation returns a new Set.
package cpuset

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// MaxCPU is the largest CPU number accepted by the parsers. Linux's NR_CPUS is at
// most 8192; a larger number in input is a parse error, not an allocation.
const MaxCPU = 8191

// Set is a set of CPU numbers. The zero value is the empty set.
type Set struct {
	w []uint64 // bit i%64 of w[i/64]; no trailing zero words
}

// New returns the set of the given CPUs. Negative numbers and numbers above
// MaxCPU are ignored.
func New(cpus ...int) Set {
	var w []uint64
	for _, c := range cpus {
		if c < 0 || c > MaxCPU {
			continue
		}
		for len(w) <= c/64 {
			w = append(w, 0)
		}
		w[c/64] |= 1 << (c % 64)
	}
	return Set{w: trim(w)}
}

// Range returns the set lo..hi inclusive (empty when hi < lo).
func Range(lo, hi int) Set {
	var w []uint64
	for c := max(lo, 0); c <= hi && c <= MaxCPU; c++ {
		for len(w) <= c/64 {
			w = append(w, 0)
		}
		w[c/64] |= 1 << (c % 64)
	}
	return Set{w: trim(w)}
}

func trim(w []uint64) []uint64 {
	for len(w) > 0 && w[len(w)-1] == 0 {
		w = w[:len(w)-1]
	}
	if len(w) == 0 {
		return nil
	}
	return w
}

// Contains reports whether cpu is in s.
func (s Set) Contains(cpu int) bool {
	if cpu < 0 || cpu/64 >= len(s.w) {
		return false
	}
	return s.w[cpu/64]&(1<<(cpu%64)) != 0
}

// Len is the number of CPUs in s.
func (s Set) Len() int {
	n := 0
	for _, x := range s.w {
		n += bits.OnesCount64(x)
	}
	return n
}

// IsEmpty reports whether s has no CPU.
func (s Set) IsEmpty() bool { return len(s.w) == 0 }

// First is the lowest CPU in s, or -1 when s is empty.
func (s Set) First() int {
	for i, x := range s.w {
		if x != 0 {
			return i*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

// Max is the highest CPU in s, or -1 when s is empty.
func (s Set) Max() int {
	if len(s.w) == 0 {
		return -1
	}
	i := len(s.w) - 1
	return i*64 + 63 - bits.LeadingZeros64(s.w[i])
}

// CPUs returns the CPUs of s in ascending order.
func (s Set) CPUs() []int {
	out := make([]int, 0, s.Len())
	for i, x := range s.w {
		for x != 0 {
			b := bits.TrailingZeros64(x)
			out = append(out, i*64+b)
			x &^= 1 << b
		}
	}
	return out
}

// Equal reports whether s and o hold the same CPUs.
func (s Set) Equal(o Set) bool {
	if len(s.w) != len(o.w) {
		return false
	}
	for i := range s.w {
		if s.w[i] != o.w[i] {
			return false
		}
	}
	return true
}

func combine(a, b Set, f func(x, y uint64) uint64) Set {
	n := max(len(a.w), len(b.w))
	w := make([]uint64, n)
	for i := range w {
		var x, y uint64
		if i < len(a.w) {
			x = a.w[i]
		}
		if i < len(b.w) {
			y = b.w[i]
		}
		w[i] = f(x, y)
	}
	return Set{w: trim(w)}
}

// Union is s ∪ o.
func (s Set) Union(o Set) Set { return combine(s, o, func(x, y uint64) uint64 { return x | y }) }

// Intersect is s ∩ o.
func (s Set) Intersect(o Set) Set { return combine(s, o, func(x, y uint64) uint64 { return x & y }) }

// Difference is s − o.
func (s Set) Difference(o Set) Set { return combine(s, o, func(x, y uint64) uint64 { return x &^ y }) }

// IsSubsetOf reports whether every CPU of s is in o.
func (s Set) IsSubsetOf(o Set) bool { return s.Difference(o).IsEmpty() }

// String is the CPU list form, e.g. "0-3,8"; "" for the empty set.
func (s Set) String() string { return s.List() }

// List formats s as a kernel CPU list ("0-3,8").
func (s Set) List() string {
	var b strings.Builder
	cpus := s.CPUs()
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// Mask formats s as a kernel hex mask: 32-bit groups separated by commas, most
// significant group first, every group but the first zero-padded to 8 digits
// ("1,00000000" is CPU 32). The empty set is "0".
func (s Set) Mask() string {
	if s.IsEmpty() {
		return "0"
	}
	groups := s.Max()/32 + 1
	var b strings.Builder
	for g := groups - 1; g >= 0; g-- {
		v := uint32(s.w[g/2] >> (32 * (g % 2)))
		if g == groups-1 {
			b.WriteString(strconv.FormatUint(uint64(v), 16))
		} else {
			fmt.Fprintf(&b, ",%08x", v)
		}
	}
	return b.String()
}

// Bytes returns systemd's AllowedCPUs= byte form: CPU i at byte i/8, bit i%8.
// The empty set is an empty (non-nil) slice, which systemd reads as "reset".
func (s Set) Bytes() []byte {
	if s.IsEmpty() {
		return []byte{}
	}
	out := make([]byte, s.Max()/8+1)
	for i := range out {
		out[i] = byte(s.w[i/8] >> (8 * (i % 8)))
	}
	return out
}

// FromBytes reads systemd's AllowedCPUs=/EffectiveCPUs= byte form.
func FromBytes(b []byte) Set {
	w := make([]uint64, (len(b)+7)/8)
	for i, x := range b {
		w[i/8] |= uint64(x) << (8 * (i % 8))
	}
	return Set{w: trim(w)}
}

// MarshalJSON encodes s as an array of CPU numbers.
func (s Set) MarshalJSON() ([]byte, error) { return json.Marshal(s.CPUs()) }

// UnmarshalJSON decodes an array of CPU numbers.
func (s *Set) UnmarshalJSON(b []byte) error {
	var cpus []int
	if err := json.Unmarshal(b, &cpus); err != nil {
		return err
	}
	for _, c := range cpus {
		if c < 0 || c > MaxCPU {
			return fmt.Errorf("cpu %d out of range 0-%d", c, MaxCPU)
		}
	}
	*s = New(cpus...)
	return nil
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("invalid CPU set")

func syntaxErr(in, why string) error {
	if len(in) > 64 {
		in = in[:64] + "…"
	}
	return fmt.Errorf("%w %q: %s", ErrSyntax, in, why)
}

// ParseList parses a kernel CPU list such as "0-3,8\n". Surrounding white space
// is ignored; an empty list is the empty set.
func ParseList(in string) (Set, error) { return parseList(in) }

// ParseListBytes is ParseList for a byte slice, without converting it.
func ParseListBytes(in []byte) (Set, error) { return parseList(in) }

func parseList[T string | []byte](in T) (Set, error) {
	s := trimSpace(in)
	if len(s) == 0 {
		return Set{}, nil
	}
	var w []uint64
	for len(s) > 0 {
		end := 0
		for end < len(s) && s[end] != ',' {
			end++
		}
		part := s[:end]
		if end < len(s) {
			s = s[end+1:]
			if len(s) == 0 {
				return Set{}, syntaxErr(string(in), "trailing comma")
			}
		} else {
			s = s[end:]
		}
		dash := -1
		for i := 0; i < len(part); i++ {
			if part[i] == '-' {
				dash = i
				break
			}
		}
		var a, b int
		var err error
		if dash < 0 {
			a, err = parseCPU(part)
			b = a
		} else if a, err = parseCPU(part[:dash]); err == nil {
			if b, err = parseCPU(part[dash+1:]); err == nil && b < a {
				err = fmt.Errorf("range %d-%d is reversed", a, b)
			}
		}
		if err != nil {
			return Set{}, syntaxErr(string(in), err.Error())
		}
		if w == nil {
			w = make([]uint64, 0, b/64+1)
		}
		for len(w) <= b/64 {
			w = append(w, 0)
		}
		for c := a; c <= b; c++ {
			w[c/64] |= 1 << (c % 64)
		}
	}
	return Set{w: trim(w)}, nil
}

func trimSpace[T string | []byte](s T) T {
	isSpace := func(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func parseCPU[T string | []byte](s T) (int, error) {
	if len(s) == 0 || len(s) > 5 {
		return 0, fmt.Errorf("%q is not a CPU number", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a CPU number", s)
		}
		n = n*10 + int(c-'0')
	}
	if n > MaxCPU {
		return 0, fmt.Errorf("CPU %d is above %d", n, MaxCPU)
	}
	return n, nil
}

// ParseMask parses a kernel hex mask ("f", "00000000,00000010\n"). Groups are
// separated by commas, most significant first, each at most 8 hex digits; a
// mask without commas may be of any length. A "0x" prefix is accepted.
func ParseMask(in string) (Set, error) { return parseMask(in) }

// ParseMaskBytes is ParseMask for a byte slice, without converting it.
func ParseMaskBytes(in []byte) (Set, error) { return parseMask(in) }

func parseMask[T string | []byte](in T) (Set, error) {
	s := trimSpace(in)
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	if len(s) == 0 {
		return Set{}, syntaxErr(string(in), "empty mask")
	}
	hasComma := false
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			hasComma = true
			break
		}
	}
	var w []uint64
	bit := 0 // bit position of the next nibble, counting from the right
	end := len(s)
	for end > 0 {
		start := end
		for start > 0 && s[start-1] != ',' {
			start--
		}
		group := s[start:end]
		if hasComma && (len(group) == 0 || len(group) > 8) {
			return Set{}, syntaxErr(string(in), "each comma-separated group must have 1 to 8 hex digits")
		}
		for i := len(group) - 1; i >= 0; i-- {
			d := group[i]
			var v uint64
			switch {
			case d >= '0' && d <= '9':
				v = uint64(d - '0')
			case d >= 'a' && d <= 'f':
				v = uint64(d-'a') + 10
			case d >= 'A' && d <= 'F':
				v = uint64(d-'A') + 10
			default:
				return Set{}, syntaxErr(string(in), fmt.Sprintf("%q is not a hex digit", d))
			}
			if v != 0 {
				if bit+3 > MaxCPU {
					return Set{}, syntaxErr(string(in), fmt.Sprintf("mask names CPUs above %d", MaxCPU))
				}
				for len(w) <= bit/64 {
					w = append(w, 0)
				}
				w[bit/64] |= v << (bit % 64)
			}
			bit += 4
		}
		if hasComma {
			bit = (bit + 31) / 32 * 32 // a short group still fills 32 bits
		}
		if start == 0 {
			break
		}
		end = start - 1
		if end == 0 {
			return Set{}, syntaxErr(string(in), "each comma-separated group must have 1 to 8 hex digits")
		}
	}
	return Set{w: trim(w)}, nil
}
