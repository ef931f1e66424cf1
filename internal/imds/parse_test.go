package imds

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Document
	}{
		{
			name: "Azure's Linux article: RFC 1123 NotBefore",
			in: `{
  "DocumentIncarnation": 1,
  "Events": [
    {
      "EventId": "602d9444-d2cd-49c7-8624-8643e7171297",
      "EventType": "Freeze",
      "ResourceType": "VirtualMachine",
      "Resources": ["vm-0", "vm-1"],
      "EventStatus": "Scheduled",
      "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
      "Description": "Host server is undergoing maintenance.",
      "EventSource": "Platform",
      "DurationInSeconds": 9
    }
  ]
}`,
			want: Document{Incarnation: 1, Events: []Event{{
				ID: "602d9444-d2cd-49c7-8624-8643e7171297", Type: Freeze, Status: Scheduled,
				ResourceType: "VirtualMachine", Resources: []string{"vm-0", "vm-1"},
				NotBefore:    time.Date(2016, 9, 19, 18, 29, 47, 0, time.UTC),
				NotBeforeRaw: "Mon, 19 Sep 2016 18:29:47 GMT",
				Description:  "Host server is undergoing maintenance.", Source: "Platform", DurationSeconds: 9,
			}}},
		},
		{
			name: "RFC 3339 NotBefore, empty Description",
			in:   `{"DocumentIncarnation":7,"Events":[{"EventId":"a","EventType":"Reboot","Resources":["vm-0"],"EventStatus":"Scheduled","NotBefore":"2026-04-29T18:00:00Z","Description":"","DurationInSeconds":-1}]}`,
			want: Document{Incarnation: 7, Events: []Event{{
				ID: "a", Type: Reboot, Status: Scheduled, Resources: []string{"vm-0"},
				NotBefore: time.Date(2026, 4, 29, 18, 0, 0, 0, time.UTC), NotBeforeRaw: "2026-04-29T18:00:00Z",
				DurationSeconds: -1,
			}}},
		},
		{
			name: "Started: NotBefore empty",
			in:   `{"DocumentIncarnation":2,"Events":[{"EventId":"a","EventType":"Freeze","Resources":["vm-0"],"EventStatus":"Started","NotBefore":"","DurationInSeconds":0}]}`,
			want: Document{Incarnation: 2, Events: []Event{{ID: "a", Type: Freeze, Status: Started, Resources: []string{"vm-0"}}}},
		},
		{
			name: "no events",
			in:   `{"DocumentIncarnation":3,"Events":[]}`,
			want: Document{Incarnation: 3, Events: []Event{}},
		},
		{
			name: "Events null is an empty list",
			in:   `{"DocumentIncarnation":3,"Events":null}`,
			want: Document{Incarnation: 3, Events: []Event{}},
		},
		{
			name: "missing fields; no incarnation",
			in:   `{"Events":[{}]}`,
			want: Document{Incarnation: -1, Events: []Event{{DurationSeconds: -1}}},
		},
		{
			name: "unknown type and status kept",
			in:   `{"DocumentIncarnation":1,"Events":[{"EventId":"x","EventType":"Hibernate","EventStatus":"Completed","Resources":["vm-0"]}]}`,
			want: Document{Incarnation: 1, Events: []Event{{ID: "x", Type: "Hibernate", Status: "Completed", Resources: []string{"vm-0"}, DurationSeconds: -1}}},
		},
		{
			name: "other key case, numbers as strings, Resources as one string, odd NotBefore",
			in:   `{"documentIncarnation":"4","events":[{"eventId":12,"eventType":"Freeze","resources":"vm-0","eventStatus":"Started","notBefore":"soon","durationInSeconds":"30"}]}`,
			want: Document{Incarnation: 4, Events: []Event{{
				ID: "12", Type: Freeze, Status: Started, Resources: []string{"vm-0"}, NotBeforeRaw: "soon", DurationSeconds: 30,
			}}},
		},
		{
			name: "wrong types are dropped, not fatal",
			in:   `{"DocumentIncarnation":1.0,"Events":[{"EventId":{"x":1},"EventType":["Freeze"],"Resources":[1,"vm-0",null],"DurationInSeconds":"long"}, 5, "x", null]}`,
			want: Document{Incarnation: 1, Skipped: 3, Events: []Event{{Resources: []string{"vm-0"}, DurationSeconds: -1}}},
		},
		{
			name: "extra fields ignored",
			in:   `{"DocumentIncarnation":1,"Events":[],"Future":{"a":[1,2]}}`,
			want: Document{Incarnation: 1, Events: []Event{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		``,
		`garbage`,
		`<html><body>Proxy error</body></html>`,
		`{"DocumentIncarnation":1,"Events":[`,
		`null`,
		`[]`,
		`"Events"`,
		`{"error":"Bad request"}`,
		`{"DocumentIncarnation":1}`,
		`{"DocumentIncarnation":1,"Events":{}}`,
		`{"DocumentIncarnation":"x","Events":[]}`,
		`{"DocumentIncarnation":1.5,"Events":[]}`,
		`{"DocumentIncarnation":1e300,"Events":[]}`,
	} {
		_, err := Parse([]byte(in))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) error = %v, want a *ParseError", in, err)
		}
	}
}

func TestEventNames(t *testing.T) {
	e := Event{Resources: []string{"vmss_3", " VM-0 "}}
	for name, want := range map[string]bool{"vm-0": true, "VMSS_3": true, "vm-1": false, "vmss": false} {
		if got := e.Names(name); got != want {
			t.Errorf("Names(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestEventTypeLabel(t *testing.T) {
	for in, want := range map[EventType]string{Freeze: "Freeze", Terminate: "Terminate", "": "Unknown", "freeze": "Unknown", "Hibernate": "Unknown"} {
		if got := in.Label(); got != want {
			t.Errorf("%q.Label() = %q, want %q", in, got, want)
		}
	}
}

func TestParseInstanceName(t *testing.T) {
	good := map[string]string{
		`{"compute":{"name":"vm-0","location":"westeurope"},"network":{}}`: "vm-0",
		`{"Compute":{"Name":" aks-nodepool1-12345678-vmss_3 "}}`:           "aks-nodepool1-12345678-vmss_3",
	}
	for in, want := range good {
		if got, err := parseInstanceName([]byte(in)); err != nil || got != want {
			t.Errorf("parseInstanceName(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{``, `[]`, `{}`, `{"compute":null}`, `{"compute":{"name":""}}`, `{"compute":{"name":{}}}`, `{"compute":[]}`} {
		if got, err := parseInstanceName([]byte(in)); err == nil {
			t.Errorf("parseInstanceName(%s) = %q, want an error", in, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"DocumentIncarnation":1,"Events":[{"EventId":"a","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["vm-0"],"EventStatus":"Scheduled","NotBefore":"Mon, 19 Sep 2016 18:29:47 GMT","Description":"","EventSource":"Platform","DurationInSeconds":9}]}`,
		`{"DocumentIncarnation":2,"Events":[{"EventId":"a","EventType":"Freeze","Resources":["vm-0"],"EventStatus":"Started","NotBefore":"2026-04-29T18:00:00Z"}]}`,
		`{"events":[{"eventid":1,"resources":"x","durationinseconds":"7"}, 3, null]}`,
		`{"DocumentIncarnation":"9","Events":null}`,
		`{"DocumentIncarnation":1e308,"Events":[]}`,
		`garbage`,
		`{"Events":[`,
		strings.Repeat(`[`, 10000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := Parse(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if doc.Events == nil || doc.Skipped < 0 {
			t.Fatalf("document %+v", doc)
		}
		for _, e := range doc.Events {
			for _, r := range e.Resources {
				if r == "" {
					t.Fatalf("empty resource in %+v", e)
				}
			}
			_ = e.Key()
			_ = e.Type.Label()
			if e.NotBefore.IsZero() != (parseNotBefore(e.NotBeforeRaw).IsZero()) {
				t.Fatalf("NotBefore %v from %q", e.NotBefore, e.NotBeforeRaw)
			}
		}
		// Parsing is deterministic.
		again, err := Parse(b)
		if err != nil || !reflect.DeepEqual(doc, again) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}

// plainString is a shortcut for encoding/json: whenever it answers, it must
// answer what encoding/json would.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"\u00e9"`, `"é"`, "\"\xff\"", `""`, `"`, `12`, ` "x" `, "\f\"\"", "\"a\tb\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := plainString(b)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("plainString(%q) = %q, but it is not a JSON string: %v", b, got, err)
		}
		if got != want {
			t.Fatalf("plainString(%q) = %q, encoding/json says %q", b, got, want)
		}
	})
}
