package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The value types below decode one key's YAML value through yaml.v3's own
// machinery (yaml.Unmarshaler): the schema walk in load.go finds the node of
// each key and hands it to the key's value with Node.Decode. A value refuses
// what it cannot hold with a *valueError, which the walk reports at the key's
// FILE:LINE; yaml.v3 returns an Unmarshaler's error as is, so no message of
// yaml.v3 is ever parsed.

// valueError is why a value was refused. line and index are set for an
// element of a list.
type valueError struct {
	line   int
	index  int // the element's index, or -1 for the value as a whole
	reason string
}

func (e *valueError) Error() string { return e.reason }

func refuse(format string, args ...any) error {
	return &valueError{index: -1, reason: fmt.Sprintf(format, args...)}
}

// value returns the decoder of the field's value in c.
func (f *field) value(c *Config) yaml.Unmarshaler {
	switch p := f.ptr(c).(type) {
	case *bool:
		return &boolValue{p}
	case *string:
		return &textValue{p: p, tristate: f.kind == kindTristate, what: article(f)}
	case *time.Duration:
		return &durationValue{p}
	case *int:
		return &intValue{p}
	case *float64:
		return &floatValue{p}
	case *[]string:
		return &listValue{p}
	}
	panic(fmt.Sprintf("config: field %s has an unsupported type %T", f.path, f.ptr(c)))
}

// scalar checks that n is a scalar of the core schema, and returns its tag,
// its text, and the text shortened for a message.
func scalar(n *yaml.Node, what string) (tag, text, q string, err error) {
	if n.Kind != yaml.ScalarNode {
		return "", "", "", refuse("must be %s, not %s", what, describe(n))
	}
	tag = n.ShortTag()
	if !scalarTags[tag] {
		return "", "", "", refuse("unsupported YAML tag %q", shorten(tag))
	}
	return tag, n.Value, shorten(n.Value), nil
}

// boolValue is true or false, written as a YAML bool.
type boolValue struct{ p *bool }

func (v boolValue) UnmarshalYAML(n *yaml.Node) error {
	tag, text, q, err := scalar(n, "true or false")
	if err != nil {
		return err
	}
	b, ok := yamlBool(tag, text)
	switch {
	case ok:
		*v.p = b
		return nil
	case tag == "!!str" && isBoolWord(text):
		return refuse("%q is a string here, not true or false; remove the quotes", q)
	}
	return refuse("%q is not true or false", q)
}

// textValue is any scalar, taken as written; a tristate also takes a YAML
// bool, normalised to "true" or "false".
type textValue struct {
	p        *string
	tristate bool
	what     string
}

func (v textValue) UnmarshalYAML(n *yaml.Node) error {
	tag, text, q, err := scalar(n, v.what)
	if err != nil {
		return err
	}
	if v.tristate && tag == "!!bool" {
		b, ok := yamlBool(tag, text)
		if !ok {
			return refuse("%q is not true or false", q)
		}
		text = strconv.FormatBool(b)
	}
	*v.p = text
	return nil
}

// durationValue is a Go duration string with a unit.
type durationValue struct{ p *time.Duration }

func (v durationValue) UnmarshalYAML(n *yaml.Node) error {
	tag, text, q, err := scalar(n, "a duration (e.g. 90s, 2m)")
	if err != nil {
		return err
	}
	if isNumber(text) {
		return refuse("%q has no unit (e.g. %ss or %sms)", q, q, q)
	}
	d, err := time.ParseDuration(text)
	if err != nil || tag != "!!str" {
		return refuse("%q is not a duration (e.g. 90s, 2m)", q)
	}
	*v.p = d
	return nil
}

// intValue is a whole number; 1e3 and 6.0 are whole numbers too.
type intValue struct{ p *int }

func (v intValue) UnmarshalYAML(n *yaml.Node) error {
	tag, text, q, err := scalar(n, "a whole number")
	if err != nil {
		return err
	}
	var i int64
	switch {
	case tag == "!!int":
		i, err = strconv.ParseInt(text, 0, strconv.IntSize)
	case tag == "!!float": // 1e3, 6.0, or an integer too large for int64
		var x float64
		if x, err = strconv.ParseFloat(text, 64); err == nil {
			switch {
			case x != math.Trunc(x):
				err = strconv.ErrSyntax
			case math.Abs(x) > math.MaxInt32 && strconv.IntSize == 32 || math.Abs(x) >= math.MaxInt64:
				err = strconv.ErrRange
			default:
				i = int64(x)
			}
		}
	case tag == "!!str" && isNumber(text):
		return refuse("%q is a string here, not a number; remove the quotes", q)
	default:
		err = strconv.ErrSyntax
	}
	switch {
	case errors.Is(err, strconv.ErrRange):
		return refuse("%q is too large", q)
	case err != nil:
		return refuse("%q is not a whole number", q)
	}
	*v.p = int(i)
	return nil
}

// floatValue is a finite number.
type floatValue struct{ p *float64 }

func (v floatValue) UnmarshalYAML(n *yaml.Node) error {
	tag, text, q, err := scalar(n, "a number")
	if err != nil {
		return err
	}
	var x float64
	switch tag {
	case "!!int":
		var u uint64
		u, err = strconv.ParseUint(strings.TrimPrefix(text, "+"), 0, 64)
		x = float64(u)
		if strings.HasPrefix(text, "-") {
			var m int64
			m, err = strconv.ParseInt(text, 0, 64)
			x = float64(m)
		}
	case "!!float":
		x, err = strconv.ParseFloat(text, 64)
		if lower := strings.ToLower(strings.TrimLeft(text, "+-")); lower == ".inf" || lower == ".nan" {
			x, err = math.NaN(), nil
		}
	case "!!str":
		if isNumber(text) {
			return refuse("%q is a string here, not a number; remove the quotes", q)
		}
		err = strconv.ErrSyntax
	default:
		err = strconv.ErrSyntax
	}
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && (math.IsInf(x, 0) || math.IsNaN(x)):
		return refuse("%q is not a finite number", q)
	case err != nil:
		return refuse("%q is not a number", q)
	}
	*v.p = x
	return nil
}

// listValue is a sequence of strings. It is replaced only when every
// element is good; each bad element is refused at its own line.
type listValue struct{ p *[]string }

func (v listValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return refuse(`must be a list (e.g. ["eth*"]), not %s`, describe(n))
	}
	var items []string
	var errs []error
	for i, e := range n.Content {
		e = deref(e)
		var s string
		switch {
		case isNull(e):
			errs = append(errs, &valueError{line: e.Line, index: i, reason: `has no value; write "" for an empty string`})
			continue
		case e.Kind != yaml.ScalarNode:
			errs = append(errs, &valueError{line: e.Line, index: i, reason: "must be a string, not " + describe(e)})
			continue
		}
		if err := e.Decode(&textValue{p: &s, what: "a string"}); err != nil {
			ve, _ := errors.AsType[*valueError](err)
			if ve == nil {
				return err
			}
			errs = append(errs, &valueError{line: e.Line, index: i, reason: ve.reason})
			continue
		}
		items = append(items, s)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*v.p = items
	return nil
}

// elementLines are the lines of a list's elements, for origins.
func elementLines(n *yaml.Node) []int {
	lines := make([]int, len(n.Content))
	for i, e := range n.Content {
		if e = deref(e); e != nil {
			lines[i] = e.Line
		}
	}
	return lines
}
