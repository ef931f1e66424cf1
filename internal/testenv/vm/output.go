package vm

import (
	"strconv"
	"strings"
	"testing"
)

// Output is a payload's output read by the conventions of guest/lib.sh, the
// one way every VM test reads what its guest found:
//
//	KEY=VALUE          a result; a key may repeat (Values keeps every value)
//	problem=WHY        an expectation that failed in the guest (Report)
//	fail=WHY           the scenario could not go on (Report)
//	--- begin NAME     the lines up to "--- end NAME" are the block NAME
//	--- end NAME       (Block), verbatim and not read as results
//
// Any other line (a command's chatter) is ignored.
type Output struct {
	kv     map[string][]string
	blocks map[string]string
}

const (
	blockBegin = "--- begin "
	blockEnd   = "--- end "
)

// ParseOutput takes a payload's output (Result.Output) apart. A block
// without its end line runs to the end of the output.
func ParseOutput(out string) Output {
	o := Output{kv: map[string][]string{}, blocks: map[string]string{}}
	var block string
	var text strings.Builder
	inBlock := false
	for _, line := range strings.SplitAfter(out, "\n") {
		bare := strings.TrimRight(line, "\r\n")
		if inBlock {
			if bare == blockEnd+block {
				o.blocks[block] += text.String()
				inBlock = false
				continue
			}
			text.WriteString(line)
			continue
		}
		if name, ok := strings.CutPrefix(bare, blockBegin); ok && name != "" {
			block, inBlock = name, true
			text.Reset()
			continue
		}
		if k, v, ok := strings.Cut(bare, "="); ok && k != "" && !strings.ContainsAny(k, " \t") {
			o.kv[k] = append(o.kv[k], v)
		}
	}
	if inBlock {
		o.blocks[block] += text.String()
	}
	return o
}

// Values returns every value of key k, in the order printed.
func (o Output) Values(k string) []string { return o.kv[k] }

// One returns the only value of key k; when there is not exactly one, the
// test fails and One returns "".
func (o Output) One(t testing.TB, k string) string {
	t.Helper()
	if len(o.kv[k]) != 1 {
		t.Errorf("%s: got %q, want one value", k, o.kv[k])
		return ""
	}
	return o.kv[k][0]
}

// Float returns the only value of key k as a number (0 and a failed test
// when it is not one).
func (o Output) Float(t testing.TB, k string) float64 {
	t.Helper()
	s := o.One(t, k)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Errorf("%s = %q: not a number", k, s)
	}
	return f
}

// Want checks pairs of key and wanted value: each key has exactly that one
// value.
func (o Output) Want(t testing.TB, kvs ...string) {
	t.Helper()
	if len(kvs)%2 != 0 {
		t.Fatalf("Want(%q): want key, value pairs", kvs)
	}
	for i := 0; i+1 < len(kvs); i += 2 {
		if got := o.One(t, kvs[i]); got != kvs[i+1] {
			t.Errorf("%s = %q, want %q", kvs[i], got, kvs[i+1])
		}
	}
}

// Block returns the text of the block name ("" when there is none); a
// block printed twice is joined.
func (o Output) Block(name string) string { return o.blocks[name] }

// Report fails the test for what the guest said went wrong: an error for
// each problem= line and for a non-zero exit code, and the end of the test
// for a fail= line (what follows in the scenario did not run).
func (o Output) Report(t testing.TB, exitCode int) {
	t.Helper()
	for _, p := range o.kv["problem"] {
		t.Errorf("in the guest: %s", p)
	}
	if fails := o.kv["fail"]; len(fails) > 0 {
		t.Fatalf("the scenario stopped in the guest (exit code %d): %s", exitCode, strings.Join(fails, "; "))
	}
	if exitCode != 0 {
		t.Errorf("the payload's exit code is %d, want 0", exitCode)
	}
}
