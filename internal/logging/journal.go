package logging

import (
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/nodekeeper/nodekeeper/internal/printable"
)

// maxFieldName is journald's limit on the length of a field name.
const maxFieldName = 64

// reservedFields are set by the journal handler itself (or by the journal
// protocol's sender); an attribute that would map onto one is renamed with the
// attrPrefix so it can neither clash nor override them.
var reservedFields = map[string]bool{
	"MESSAGE":           true,
	"PRIORITY":          true,
	"SYSLOG_IDENTIFIER": true,
	"CODE_FILE":         true,
	"CODE_LINE":         true,
	"CODE_FUNC":         true,
}

const attrPrefix = "ATTR_"

// journalHandler sends every record as one native journal entry.
type journalHandler struct {
	shared   *journalShared
	level    slog.Leveler
	groups   []string     // open groups, outermost first
	fields   []field      // from WithAttrs, already converted
	fallback slog.Handler // the same attributes and groups, as text on stderr
}

// journalShared is what all handlers derived from one root share.
type journalShared struct {
	send         sendFunc
	rootFallback slog.Handler // without attributes or groups: for the notice
	warned       atomic.Bool  // the fall-back notice has been written
}

type field struct{ key, value string }

func newJournalHandler(send sendFunc, fallback slog.Handler, level slog.Leveler) *journalHandler {
	return &journalHandler{
		shared:   &journalShared{send: send, rootFallback: fallback},
		level:    level,
		fallback: fallback,
	}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.fields = append(h.fields[:len(h.fields):len(h.fields)], convertAttrs(h.groups, as)...)
	c.fallback = h.fallback.WithAttrs(as)
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(h.groups[:len(h.groups):len(h.groups)], name)
	c.fallback = h.fallback.WithGroup(name)
	return &c
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.fields)+r.NumAttrs()+4)
	for _, f := range h.fields {
		vars[f.key] = f.value
	}
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(func(k, v string) { vars[k] = v }, h.groups, a)
		return true
	})
	vars["SYSLOG_IDENTIFIER"] = SyslogIdentifier
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		if f.File != "" {
			vars["CODE_FILE"] = f.File
			vars["CODE_LINE"] = strconv.Itoa(f.Line)
		}
		if f.Function != "" {
			vars["CODE_FUNC"] = f.Function
		}
	}
	err := h.shared.send(printable.Escape(r.Message), priority(r.Level), vars)
	if err == nil {
		return nil
	}
	if h.shared.warned.CompareAndSwap(false, true) {
		n := slog.NewRecord(r.Time, slog.LevelWarn,
			"cannot send to the journal; writing entries that fail as text to stderr", 0)
		n.AddAttrs(slog.String(KeyError, err.Error()))
		_ = h.shared.rootFallback.Handle(ctx, n)
	}
	return h.fallback.Handle(ctx, r)
}

// priority maps a slog level onto a syslog priority: below Info is debug,
// Info is info, between Info and Warn is notice, Warn is warning, Error is
// err, and Error+4 (or more) is crit.
func priority(l slog.Level) journal.Priority {
	switch {
	case l < slog.LevelInfo:
		return journal.PriDebug
	case l == slog.LevelInfo:
		return journal.PriInfo
	case l < slog.LevelWarn:
		return journal.PriNotice
	case l < slog.LevelError:
		return journal.PriWarning
	case l < slog.LevelError+4:
		return journal.PriErr
	default:
		return journal.PriCrit
	}
}

func convertAttrs(groups []string, as []slog.Attr) []field {
	var fs []field
	for _, a := range as {
		appendAttr(func(k, v string) { fs = append(fs, field{k, v}) }, groups, a)
	}
	return fs
}

// appendAttr hands add the journal field(s) for one attribute: groups (slog
// groups and group-valued attributes) are flattened into the name with "_".
func appendAttr(add func(k, v string), groups []string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		sub := a.Value.Group()
		if len(sub) == 0 {
			return
		}
		if a.Key != "" {
			groups = append(groups[:len(groups):len(groups)], a.Key)
		}
		for _, s := range sub {
			appendAttr(add, groups, s)
		}
		return
	}
	if isMessageIDKey(a.Key) {
		add("MESSAGE_ID", printable.Escape(formatValue(a.Value)))
		return
	}
	name := fieldName(groups, a.Key)
	if reservedFields[name] {
		name = attrPrefix + name
	}
	add(name, printable.Escape(formatValue(a.Value)))
}

// fieldName converts a slog key, inside groups, to a journal field name
// matching ^[A-Z_][A-Z0-9_]*$ that does not start with "_" (journald's
// trusted fields): check → CHECK, eventType → EVENT_TYPE, pause.seconds →
// PAUSE_SECONDS, group irq + key cpus → IRQ_CPUS. Runs of other characters
// become one "_"; a name that would start with a digit or be empty gets
// "FIELD" in front; names are cut at journald's 64 characters.
func fieldName(groups []string, key string) string {
	var b strings.Builder
	for _, g := range groups {
		writeSnake(&b, g)
		b.WriteByte('_')
	}
	writeSnake(&b, key)
	name := collapseUnderscores(b.String())
	switch {
	case name == "":
		name = "FIELD"
	case name[0] >= '0' && name[0] <= '9':
		name = "FIELD_" + name
	}
	if len(name) > maxFieldName {
		name = strings.TrimRight(name[:maxFieldName], "_")
	}
	return name
}

// writeSnake writes s in upper case, with "_" at lower→upper case changes
// (nicQueue → NIC_QUEUE, IRQCount → IRQ_COUNT, nicIRQs → NIC_IRQS) and for every character that
// is not an ASCII letter or digit.
func writeSnake(b *strings.Builder, s string) {
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				p := rs[i-1]
				lowerOrDigitBefore := (p >= 'a' && p <= 'z') || (p >= '0' && p <= '9')
				upperBefore := p >= 'A' && p <= 'Z'
				// IRQCount → IRQ_COUNT, but CPUs → CPUS: a lone "s" after
				// an acronym is its plural, not a new word.
				wordAfter := isLower(rs, i+1) && !(rs[i+1] == 's' && !isLower(rs, i+2))
				if lowerOrDigitBefore || (upperBefore && wordAfter) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
}

func isLower(rs []rune, i int) bool { return i < len(rs) && rs[i] >= 'a' && rs[i] <= 'z' }

// collapseUnderscores joins runs of "_" into one and trims them at both ends.
func collapseUnderscores(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	under := false
	for i := 0; i < len(s); i++ {
		if s[i] == '_' {
			under = true
			continue
		}
		if under && b.Len() > 0 {
			b.WriteByte('_')
		}
		under = false
		b.WriteByte(s[i])
	}
	return b.String()
}

// formatValue renders a value the plain way: strings as they are, numbers in
// Go's shortest form, durations as 1.5s, times in RFC 3339, errors by their
// text, Stringers and TextMarshalers by their text, []int and []string as
// comma lists.
func formatValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return strconv.FormatInt(v.Int64(), 10)
	case slog.KindUint64:
		return strconv.FormatUint(v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.FormatFloat(v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.FormatBool(v.Bool())
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		return formatAny(v.Any())
	default:
		return v.String()
	}
}

func formatAny(x any) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("!PANIC: %v", p)
		}
	}()
	switch t := x.(type) {
	case nil:
		return ""
	case error:
		return t.Error()
	case fmt.Stringer:
		return t.String()
	case encoding.TextMarshaler:
		b, err := t.MarshalText()
		if err != nil {
			return "!ERROR: " + err.Error()
		}
		return string(b)
	case []byte:
		return string(t)
	case []int:
		parts := make([]string, len(t))
		for i, n := range t {
			parts[i] = strconv.Itoa(n)
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(t, ",")
	default:
		return fmt.Sprint(t)
	}
}
