package imds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// EventType is a scheduled event's EventType. Values other than the constants
// are kept as IMDS sent them.
type EventType string

// Event types documented by Azure.
const (
	Freeze    EventType = "Freeze"
	Reboot    EventType = "Reboot"
	Redeploy  EventType = "Redeploy"
	Preempt   EventType = "Preempt"
	Terminate EventType = "Terminate"
)

// Known reports whether t is one of the documented event types.
func (t EventType) Known() bool {
	switch t {
	case Freeze, Reboot, Redeploy, Preempt, Terminate:
		return true
	}
	return false
}

// Label is t as a bounded metric label value: the type itself when it is known,
// "Unknown" otherwise.
func (t EventType) Label() string {
	if t.Known() {
		return string(t)
	}
	return "Unknown"
}

// EventStatus is a scheduled event's EventStatus.
type EventStatus string

// Event statuses documented by Azure. There is no "Completed": an event that is
// over leaves the list.
const (
	Scheduled EventStatus = "Scheduled"
	Started   EventStatus = "Started"
)

// Known reports whether s is one of the documented statuses.
func (s EventStatus) Known() bool { return s == Scheduled || s == Started }

// Event is one scheduled event. Missing fields are left at their zero value,
// except DurationSeconds, which is -1 (unknown) when absent.
type Event struct {
	ID           string
	Type         EventType
	Status       EventStatus
	ResourceType string
	Resources    []string
	// NotBefore is zero when IMDS left it empty (it is, once Started) or sent
	// something that is neither RFC 1123 nor RFC 3339; NotBeforeRaw keeps the
	// text.
	NotBefore       time.Time
	NotBeforeRaw    string
	Description     string
	Source          string // EventSource: "Platform" or "User"
	DurationSeconds int64  // -1 unknown, 0 no impact
}

// Key identifies an event across polls: its id, or when IMDS sent none, what
// else is stable about it.
func (e Event) Key() string {
	if e.ID != "" {
		return e.ID
	}
	return "\x00" + string(e.Type) + "\x00" + strings.Join(e.Resources, ",")
}

// Names reports whether name is one of e's Resources (VM names are not case
// sensitive on Azure).
func (e Event) Names(name string) bool {
	for _, r := range e.Resources {
		if strings.EqualFold(strings.TrimSpace(r), name) {
			return true
		}
	}
	return false
}

// Document is the scheduled events document.
type Document struct {
	// Incarnation is DocumentIncarnation, which grows on every change of the
	// list; -1 when the document has none.
	Incarnation int64
	Events      []Event
	// Skipped counts entries of Events that were not JSON objects.
	Skipped int
}

// ParseError says a body could not be read as a scheduled events document.
type ParseError struct{ Reason string }

func (e *ParseError) Error() string { return "scheduled events document: " + e.Reason }

// Parse reads a scheduled events document. It is lenient where IMDS has been
// seen to vary (field name case, NotBefore format, numbers sent as strings,
// missing fields) and strict where a mistake would be costly: a body that is
// not a JSON object, or has no Events list, is an error rather than an empty
// list, so a broken answer never reads as "every event is over".
func Parse(b []byte) (Document, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return Document{}, &ParseError{Reason: "not a JSON object" + syntaxHint(err)}
	}
	doc := Document{Incarnation: -1}
	if raw, ok := field(top, "DocumentIncarnation"); ok {
		n, ok := asInt(raw)
		if !ok {
			return Document{}, &ParseError{Reason: "DocumentIncarnation is not a number"}
		}
		doc.Incarnation = n
	}
	raw, ok := field(top, "Events")
	if !ok {
		return Document{}, &ParseError{Reason: "no Events list"}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return Document{}, &ParseError{Reason: "Events is not a list"}
	}
	doc.Events = make([]Event, 0, len(items))
	for _, it := range items {
		e, ok := parseEvent(it)
		if !ok {
			doc.Skipped++
			continue
		}
		doc.Events = append(doc.Events, e)
	}
	return doc, nil
}

func syntaxHint(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf(" (syntax error at byte %d)", se.Offset)
	}
	return ""
}

func parseEvent(raw json.RawMessage) (Event, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return Event{}, false
	}
	e := Event{DurationSeconds: -1}
	e.ID = str(m, "EventId")
	e.Type = EventType(str(m, "EventType"))
	e.Status = EventStatus(str(m, "EventStatus"))
	e.ResourceType = str(m, "ResourceType")
	e.Description = str(m, "Description")
	e.Source = str(m, "EventSource")
	e.NotBeforeRaw = str(m, "NotBefore")
	e.NotBefore = parseNotBefore(e.NotBeforeRaw)
	if r, ok := field(m, "Resources"); ok {
		e.Resources = strList(r)
	}
	if r, ok := field(m, "DurationInSeconds"); ok {
		if n, ok := asInt(r); ok {
			e.DurationSeconds = n
		}
	}
	return e, true
}

// notBeforeLayouts: RFC 1123 as in Azure's Linux article, RFC 3339 as in its
// other article, and their close relatives.
var notBeforeLayouts = []string{
	time.RFC1123,
	time.RFC1123Z,
	time.RFC3339Nano,
	"Mon, 2 Jan 2006 15:04:05 MST",
	"2006-01-02T15:04:05",
}

func parseNotBefore(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}
	}
	for _, l := range notBeforeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// field looks key up exactly, then case-insensitively (encoding/json's own
// rule for struct fields).
func field(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// str returns a string field; a number or boolean is kept as its JSON text,
// anything else (null, object, list) is "".
func str(m map[string]json.RawMessage, key string) string {
	raw, ok := field(m, key)
	if !ok {
		return ""
	}
	if s, ok := plainString(raw); ok {
		return s
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	t := bytes.TrimSpace(raw)
	if len(t) > 0 && (t[0] == '-' || (t[0] >= '0' && t[0] <= '9') || t[0] == 't' || t[0] == 'f') {
		return string(t)
	}
	return ""
}

// plainString is the common case of a JSON string value without escapes
// (ids, statuses, names, dates), read without decoding it again: a document
// may list thousands of events. It says false for anything else, which then
// goes through encoding/json.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	for _, c := range in {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}

// strList accepts a list of strings (non-strings are dropped) or one string.
func strList(raw json.RawMessage) []string {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err == nil {
		out := make([]string, 0, len(list))
		for _, it := range list {
			s, ok := plainString(it)
			if !ok && json.Unmarshal(it, &s) != nil {
				continue
			}
			if s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return []string{s}
	}
	return nil
}

// asInt accepts a JSON integer, an integral float, or a string holding one.
func asInt(raw json.RawMessage) (int64, bool) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		n = json.Number(strings.TrimSpace(s))
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < -9e18 || f > 9e18 || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

// parseInstanceName reads compute.name from an instance metadata document.
func parseInstanceName(b []byte) (string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return "", &ParseError{Reason: "instance metadata is not a JSON object"}
	}
	raw, ok := field(top, "compute")
	if !ok {
		return "", &ParseError{Reason: "instance metadata has no compute section"}
	}
	var compute map[string]json.RawMessage
	if err := json.Unmarshal(raw, &compute); err != nil || compute == nil {
		return "", &ParseError{Reason: "instance metadata compute is not an object"}
	}
	name := strings.TrimSpace(str(compute, "name"))
	if name == "" {
		return "", &ParseError{Reason: "instance metadata has no compute.name"}
	}
	return name, nil
}
