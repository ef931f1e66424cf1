package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

var validField = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

func TestFieldName(t *testing.T) {
	for _, tc := range []struct {
		groups []string
		key    string
		want   string
	}{
		{nil, "check", "CHECK"},
		{nil, "irq", "IRQ"},
		{nil, "cpus", "CPUS"},
		{nil, "event_type", "EVENT_TYPE"},
		{nil, "eventType", "EVENT_TYPE"},
		{nil, "pause_seconds", "PAUSE_SECONDS"},
		{nil, "pause.seconds", "PAUSE_SECONDS"},
		{nil, "vfMissingAfter", "VF_MISSING_AFTER"},
		{nil, "IRQCount", "IRQ_COUNT"},
		{nil, "nicIRQs", "NIC_IRQS"},
		{nil, "CPUsUsed", "CPUS_USED"},
		{nil, "IRQsOnCPU", "IRQS_ON_CPU"},
		{nil, "cpu2Mask", "CPU2_MASK"},
		{nil, "CHECK", "CHECK"},
		{nil, "_SYSTEMD_UNIT", "SYSTEMD_UNIT"},
		{nil, "__x", "X"},
		{nil, "a--b  c", "A_B_C"},
		{nil, "trailing-", "TRAILING"},
		{nil, "1st", "FIELD_1ST"},
		{nil, "", "FIELD"},
		{nil, "---", "FIELD"},
		{nil, "café", "CAF"},
		{[]string{"irq"}, "cpus", "IRQ_CPUS"},
		{[]string{"nic", "queue"}, "irq", "NIC_QUEUE_IRQ"},
		{[]string{"_hidden"}, "x", "HIDDEN_X"},
		{[]string{"9"}, "x", "FIELD_9_X"},
		{nil, strings.Repeat("a", 70), strings.Repeat("A", 64)},
		{nil, strings.Repeat("a", 63) + "_b", strings.Repeat("A", 63)},
	} {
		got := fieldName(tc.groups, tc.key)
		if got != tc.want {
			t.Errorf("fieldName(%q, %q) = %q, want %q", tc.groups, tc.key, got, tc.want)
		}
		if !validField.MatchString(got) || len(got) > 64 {
			t.Errorf("fieldName(%q, %q) = %q is not a valid journal field name", tc.groups, tc.key, got)
		}
	}
}

func FuzzFieldName(f *testing.F) {
	for _, s := range []string{"check", "eventType", "_x", "1", "", "a.b-c", "ÄÖÜ"} {
		f.Add("grp", s)
	}
	f.Fuzz(func(t *testing.T, group, key string) {
		var groups []string
		if group != "" {
			groups = []string{group}
		}
		got := fieldName(groups, key)
		if !validField.MatchString(got) || len(got) > 64 {
			t.Fatalf("fieldName(%q, %q) = %q", groups, key, got)
		}
	})
}

type stringer struct{}

func (stringer) String() string { return "4-5,8" }

type panicky struct{ p *int }

func (s panicky) String() string { return "x" + string(rune(*s.p)) }

type textual struct{}

func (textual) MarshalText() ([]byte, error) { return []byte("as-text"), nil }

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.IntValue(7) }

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    slog.Value
		want string
	}{
		{slog.StringValue("eth0"), "eth0"},
		{slog.StringValue("two\nlines"), "two\nlines"},
		{slog.IntValue(-24), "-24"},
		{slog.Uint64Value(math.MaxUint64), "18446744073709551615"},
		{slog.Float64Value(12.5), "12.5"},
		{slog.Float64Value(0.1), "0.1"},
		{slog.BoolValue(true), "true"},
		{slog.DurationValue(1500 * time.Millisecond), "1.5s"},
		{slog.TimeValue(time.Date(2026, 4, 29, 18, 0, 0, 5, time.UTC)), "2026-04-29T18:00:00.000000005Z"},
		{slog.AnyValue(errors.New("boom")), "boom"},
		{slog.AnyValue(stringer{}), "4-5,8"},
		{slog.AnyValue(textual{}), "as-text"},
		{slog.AnyValue([]int{4, 5, 9}), "4,5,9"},
		{slog.AnyValue([]string{"eth0", "eth1"}), "eth0,eth1"},
		{slog.AnyValue([]byte("raw")), "raw"},
		{slog.AnyValue(nil), ""},
		{slog.AnyValue(map[string]int{"a": 1}), "map[a:1]"},
		{slog.AnyValue(panicky{}), "!PANIC: runtime error: invalid memory address or nil pointer dereference"},
		{slog.AnyValue(lazy{}).Resolve(), "7"},
	} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestPriority(t *testing.T) {
	for _, tc := range []struct {
		l    slog.Level
		want journal.Priority
	}{
		{slog.LevelDebug - 4, journal.PriDebug},
		{slog.LevelDebug, journal.PriDebug},
		{slog.LevelInfo, journal.PriInfo},
		{slog.LevelInfo + 2, journal.PriNotice},
		{slog.LevelWarn, journal.PriWarning},
		{slog.LevelError, journal.PriErr},
		{slog.LevelError + 4, journal.PriCrit},
	} {
		if got := priority(tc.l); got != tc.want {
			t.Errorf("priority(%v) = %d, want %d", tc.l, got, tc.want)
		}
	}
}

// entry is one captured journal entry.
type entry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

// capture is a sendFunc that records what would be sent.
type capture struct {
	mu      sync.Mutex
	entries []entry
	err     error
}

func (c *capture) send(msg string, pri journal.Priority, vars map[string]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	cp := make(map[string]string, len(vars))
	for k, v := range vars {
		cp[k] = v
	}
	c.entries = append(c.entries, entry{msg, pri, cp})
	return nil
}

func (c *capture) last(t *testing.T) entry {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) == 0 {
		t.Fatal("nothing was sent")
	}
	return c.entries[len(c.entries)-1]
}

func newCaptured(level slog.Level) (*slog.Logger, *capture, *bytes.Buffer) {
	c := &capture{}
	var stderr bytes.Buffer
	l := newForService(&stderr, FormatText, level,
		func() (bool, error) { return true, nil }, func() bool { return true }, c.send)
	return l, c, &stderr
}

func TestJournalHandlerFields(t *testing.T) {
	l, c, stderr := newCaptured(slog.LevelDebug)
	l = l.With(KeyCheck, "irq")
	l.Warn("9 NIC IRQs of eth0 on 2 of 8 CPUs (4,5)",
		Msg(MsgIRQSpreadProblem),
		KeyInterface, "eth0",
		KeyIRQ, 24,
		KeyCPUs, stringer{},
		KeyPauseSeconds, 12.5,
		"eventType", "Freeze",
		slog.Group("queue", "name", "comp0", slog.Group("", "cpu", 4)),
		slog.Group("empty"),
		"message", "an attribute that would clash",
		"priority", "likewise",
		KeyError, errors.New("boom"),
	) // the line number is checked below
	e := c.last(t)
	if e.msg != "9 NIC IRQs of eth0 on 2 of 8 CPUs (4,5)" {
		t.Errorf("MESSAGE = %q", e.msg)
	}
	if e.pri != journal.PriWarning {
		t.Errorf("PRIORITY = %d, want %d", e.pri, journal.PriWarning)
	}
	want := map[string]string{
		"CHECK":             "irq",
		"MESSAGE_ID":        MsgIRQSpreadProblem,
		"INTERFACE":         "eth0",
		"IRQ":               "24",
		"CPUS":              "4-5,8",
		"PAUSE_SECONDS":     "12.5",
		"EVENT_TYPE":        "Freeze",
		"QUEUE_NAME":        "comp0",
		"QUEUE_CPU":         "4",
		"ATTR_MESSAGE":      "an attribute that would clash",
		"ATTR_PRIORITY":     "likewise",
		"ERR":               "boom",
		"SYSLOG_IDENTIFIER": "nodekeeper",
		"CODE_FUNC":         "github.com/nodekeeper/nodekeeper/internal/logging.TestJournalHandlerFields",
	}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("%s = %q, want %q", k, e.vars[k], v)
		}
	}
	if !strings.HasSuffix(e.vars["CODE_FILE"], "journal_test.go") || e.vars["CODE_LINE"] == "" {
		t.Errorf("CODE_FILE:CODE_LINE = %s:%s", e.vars["CODE_FILE"], e.vars["CODE_LINE"])
	}
	for k := range e.vars {
		if !validField.MatchString(k) {
			t.Errorf("invalid field name %q", k)
		}
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "CODE_") {
			t.Errorf("unexpected field %s=%q", k, e.vars[k])
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q, want nothing", stderr.String())
	}
}

func TestJournalHandlerGroupsAndLevels(t *testing.T) {
	l, c, _ := newCaptured(slog.LevelInfo)
	l.Debug("not sent")
	if len(c.entries) != 0 {
		t.Fatalf("a debug entry was sent below level info")
	}
	g := l.WithGroup("irq").With("cpus", "4").WithGroup("nested")
	// A MESSAGE_ID inside groups is still the entry's MESSAGE_ID.
	g.Error("repair failed", "n", 3, Msg(MsgRepairFailed))
	e := c.last(t)
	if e.pri != journal.PriErr {
		t.Errorf("PRIORITY = %d, want %d", e.pri, journal.PriErr)
	}
	for k, v := range map[string]string{
		"IRQ_CPUS":     "4",
		"IRQ_NESTED_N": "3",
		"MESSAGE_ID":   MsgRepairFailed,
	} {
		if e.vars[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, e.vars[k], v, e.vars)
		}
	}
	// Derived loggers do not share attributes with their parent or siblings.
	l.Info("plain")
	if e := c.last(t); e.vars["IRQ_CPUS"] != "" || e.vars["MESSAGE_ID"] != "" {
		t.Errorf("attributes leaked into the parent logger: %v", e.vars)
	}
	a := l.With("x", 1)
	b := l.With("x", 2)
	a.Info("a")
	if e := c.last(t); e.vars["X"] != "1" {
		t.Errorf("X = %q, want 1", e.vars["X"])
	}
	b.Info("b")
	if e := c.last(t); e.vars["X"] != "2" {
		t.Errorf("X = %q, want 2", e.vars["X"])
	}
}

func TestJournalHandlerFallsBackOnSendFailure(t *testing.T) {
	l, c, stderr := newCaptured(slog.LevelInfo)
	c.err = errors.New("connection refused")
	l = l.With(KeyCheck, "irq")
	l.Info("first", Msg(MsgRepairStarted))
	l.Info("second")
	out := stderr.String()
	if n := strings.Count(out, "cannot send to the journal"); n != 1 {
		t.Errorf("fall-back notice written %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{
		`level=WARN msg="cannot send to the journal; writing entries that fail as text to stderr" err="connection refused"`,
		"level=INFO msg=first check=irq message_id=" + MsgRepairStarted,
		"level=INFO msg=second check=irq",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "time=") {
		t.Errorf("the journal stream stamps lines itself; got time=:\n%s", out)
	}
	// When the journal answers again, entries go there again.
	c.err = nil
	l.Info("third")
	if e := c.last(t); e.msg != "third" {
		t.Errorf("after recovery MESSAGE = %q, want third", e.msg)
	}
}

func TestJournalHandlerConcurrent(t *testing.T) {
	l, c, _ := newCaptured(slog.LevelInfo)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := l.With("worker", i)
			for j := range 50 {
				cl.Info("tick", "j", j)
			}
		}()
	}
	wg.Wait()
	if len(c.entries) != 8*50 {
		t.Errorf("sent %d entries, want %d", len(c.entries), 8*50)
	}
}

func TestNewForServiceChoosesHandler(t *testing.T) {
	c := &capture{}
	yes := func() (bool, error) { return true, nil }
	no := func() (bool, error) { return false, nil }
	broken := func() (bool, error) { return false, errors.New("bad JOURNAL_STREAM") }
	up := func() bool { return true }
	down := func() bool { return false }
	for _, tc := range []struct {
		name      string
		stream    func() (bool, error)
		reachable func() bool
		journal   bool
		stderr    string
	}{
		{"journal", yes, up, true, ""},
		{"not a journal stream", no, up, false, "msg=hello"},
		{"journald unreachable", yes, down, false, "msg=hello"},
		{"bad JOURNAL_STREAM", broken, up, false, "cannot tell whether stderr is the journal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.entries = nil
			var stderr bytes.Buffer
			l := newForService(&stderr, FormatText, slog.LevelInfo, tc.stream, tc.reachable, c.send)
			l.Info("hello")
			if got := len(c.entries) == 1; got != tc.journal {
				t.Errorf("sent to journal = %v, want %v", got, tc.journal)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.stderr)
			}
		})
	}
}

func TestJournalHandlerEnabled(t *testing.T) {
	h := newJournalHandler((&capture{}).send, slog.DiscardHandler, slog.LevelWarn)
	ctx := context.Background()
	if h.Enabled(ctx, slog.LevelInfo) || !h.Enabled(ctx, slog.LevelWarn) {
		t.Error("Enabled does not follow the level")
	}
	if h.WithGroup("") != slog.Handler(h) || h.WithAttrs(nil) != slog.Handler(h) {
		t.Error("an empty group or no attributes should return the same handler")
	}
}
