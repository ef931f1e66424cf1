package cpuset

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/quick"
)

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"", nil},
		{"\n", nil},
		{"0", []int{0}},
		{"0-3,8\n", []int{0, 1, 2, 3, 8}},
		{" 4,5 ", []int{4, 5}},
		{"63-65", []int{63, 64, 65}},
		{"8191", []int{8191}},
	} {
		s, err := ParseList(tc.in)
		if err != nil {
			t.Fatalf("ParseList(%q): %v", tc.in, err)
		}
		if got := s.CPUs(); !equalInts(got, tc.want) {
			t.Errorf("ParseList(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"a", "1-", "-1", "3-1", "1,,2", "8192", "1 2", "0-99999", "1-2-3", "١"} {
		if _, err := ParseList(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseList(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		out  string
	}{
		{"0", nil, "0"},
		{"10", []int{4}, "10"},
		{"20\n", []int{5}, "20"},
		{"3", []int{0, 1}, "3"},
		{"00000000,00000001", []int{0}, "1"},
		{"1,00000000", []int{32}, "1,00000000"},
		{"ffffffff,ffffffff", rangeInts(0, 63), "ffffffff,ffffffff"},
		{"80000000,00000000,00000000", []int{95}, "80000000,00000000,00000000"},
		{"1,0", []int{32}, "1,00000000"},
		{"0x0F", []int{0, 1, 2, 3}, "f"},
		{"100000000", []int{32}, "1,00000000"},
	} {
		s, err := ParseMask(tc.in)
		if err != nil {
			t.Fatalf("ParseMask(%q): %v", tc.in, err)
		}
		if got := s.CPUs(); !equalInts(got, tc.want) {
			t.Errorf("ParseMask(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if got := s.Mask(); got != tc.out {
			t.Errorf("Mask(%v) = %q, want %q", tc.want, got, tc.out)
		}
	}
	for _, bad := range []string{"", "g", "1,", ",1", "123456789,0", "1 2"} {
		if _, err := ParseMask(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseMask(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}

// The vectors of systemd's AllowedCPUs= byte layout: CPU i at byte i/8, bit i%8.
func TestBytesVectors(t *testing.T) {
	for _, tc := range []struct {
		list string
		b    []byte
	}{
		{"0-15", []byte{0xff, 0xff}},
		{"16", []byte{0x00, 0x00, 0x01}},
		{"0-3,32-33", []byte{0x0f, 0x00, 0x00, 0x00, 0x03}},
		{"10-23", []byte{0x00, 0xfc, 0xff}},
		{"", []byte{}},
	} {
		s, err := ParseList(tc.list)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Bytes(); !bytes.Equal(got, tc.b) || got == nil {
			t.Errorf("Bytes(%q) = % x, want % x", tc.list, got, tc.b)
		}
		if got := FromBytes(tc.b); !got.Equal(s) {
			t.Errorf("FromBytes(% x) = %q, want %q", tc.b, got, tc.list)
		}
	}
}

func TestSetOps(t *testing.T) {
	a, b := New(0, 1, 2, 64), New(2, 3, 64)
	if got := a.Union(b).List(); got != "0-3,64" {
		t.Errorf("union = %q", got)
	}
	if got := a.Intersect(b).List(); got != "2,64" {
		t.Errorf("intersect = %q", got)
	}
	if got := a.Difference(b).List(); got != "0-1" {
		t.Errorf("difference = %q", got)
	}
	if d := New(64).Difference(New(64)); !d.IsEmpty() || !d.Equal(Set{}) {
		t.Errorf("difference should trim to the empty set, got %#v", d)
	}
	if a.First() != 0 || a.Max() != 64 || a.Len() != 4 || (Set{}).First() != -1 || (Set{}).Max() != -1 {
		t.Errorf("First/Max/Len wrong")
	}
	if !New(1).IsSubsetOf(a) || New(5).IsSubsetOf(a) {
		t.Errorf("IsSubsetOf wrong")
	}
	if !Range(2, 4).Equal(New(2, 3, 4)) || !Range(4, 2).IsEmpty() {
		t.Errorf("Range wrong")
	}
	j, _ := json.Marshal(New(4, 5))
	if string(j) != "[4,5]" {
		t.Errorf("json = %s", j)
	}
	var back Set
	if err := json.Unmarshal(j, &back); err != nil || !back.Equal(New(4, 5)) {
		t.Errorf("json round trip: %v %v", back, err)
	}
	if string(mustJSON(Set{})) != "[]" {
		t.Errorf("empty set must encode as [], got %s", mustJSON(Set{}))
	}
}

func mustJSON(s Set) []byte { b, _ := json.Marshal(s); return b }

// randomSet is a quick.Generator-friendly wrapper producing sets up to 512 CPUs.
type randomSet struct{ S Set }

func (randomSet) Generate(r *rand.Rand) randomSet {
	n := r.IntN(40)
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = r.IntN(512)
	}
	return randomSet{New(cpus...)}
}

func TestRoundTripProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		s := randomSet{}.Generate(r).S
		if got, err := ParseList(s.List()); err != nil || !got.Equal(s) {
			t.Fatalf("list round trip of %v: %v %v", s.CPUs(), got.CPUs(), err)
		}
		if got, err := ParseMask(s.Mask()); err != nil || !got.Equal(s) {
			t.Fatalf("mask round trip of %v: %v %v", s.CPUs(), got.CPUs(), err)
		}
		if got := FromBytes(s.Bytes()); !got.Equal(s) {
			t.Fatalf("bytes round trip of %v: %v", s.CPUs(), got.CPUs())
		}
	}
	// Set algebra laws, with testing/quick driving the inputs.
	law := func(a, b []uint16) bool {
		x, y := fromU16(a), fromU16(b)
		u, in := x.Union(y), x.Intersect(y)
		return u.Len() == x.Len()+y.Len()-in.Len() &&
			x.Difference(y).Union(in).Equal(x) &&
			in.IsSubsetOf(x) && x.IsSubsetOf(u)
	}
	if err := quick.Check(law, nil); err != nil {
		t.Error(err)
	}
}

func fromU16(a []uint16) Set {
	cpus := make([]int, len(a))
	for i, v := range a {
		cpus[i] = int(v % 1024)
	}
	return New(cpus...)
}

func FuzzParseList(f *testing.F) {
	for _, s := range []string{"0-3,8", "", "1,2", "0-8191", "5-1", "a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseList(in)
		if err != nil {
			return
		}
		back, err := ParseList(s.List())
		if err != nil || !back.Equal(s) {
			t.Fatalf("%q parsed to %q which does not round trip: %v", in, s.List(), err)
		}
	})
}

func FuzzParseMask(f *testing.F) {
	for _, s := range []string{"ff", "1,00000000", "0", "ffffffff,ffffffff", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseMask(in)
		if err != nil {
			return
		}
		if s.Max() > MaxCPU {
			t.Fatalf("%q gave CPU %d above MaxCPU", in, s.Max())
		}
		back, err := ParseMask(s.Mask())
		if err != nil || !back.Equal(s) {
			t.Fatalf("%q parsed to %q which does not round trip: %v", in, s.Mask(), err)
		}
	})
}

func FuzzFromBytes(f *testing.F) {
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1024 {
			return
		}
		s := FromBytes(b)
		if got := FromBytes(s.Bytes()); !got.Equal(s) {
			t.Fatalf("bytes round trip of % x failed", b)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func rangeInts(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}
