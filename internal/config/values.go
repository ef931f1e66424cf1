package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"gopkg.in/yaml.v3"
)

// A file is decoded by yaml.v3 into a value of fileType: a struct of Config's
// shape, built from Config's own fields and yaml tags, in which each key's
// field is a pointer to the value type below that decodes that key's kind
// (yaml.Unmarshaler). A pointer left nil is a key the file does not set, which
// is how a file overrides only the keys it sets.
//
// A value refuses what it cannot hold with a *valueError, keeps it, and tells
// yaml.v3 with a *yaml.TypeError so that decoding goes on to the next key. The
// node walk in load.go then reports each refusal at its key's FILE:LINE. No
// message of yaml.v3 is ever parsed.

// valueError is why a value was refused. line and index are set for an
// element of a list.
type valueError struct {
	line   int
	index  int    // the element's index, or -1 for the value as a whole
	reason string // what is wrong; empty when shape is set
	// shape, when set, is what the value is instead of a scalar ("a list");
	// the message says what the key's kind wants (see article).
	shape string
}

func (e *valueError) Error() string {
	if e.shape != "" {
		return "must be a scalar, not " + e.shape
	}
	return e.reason
}

// message is the reason to report for field f.
func (e *valueError) message(f *field) string {
	if e.shape != "" {
		return "must be " + article(f) + ", not " + e.shape
	}
	return e.reason
}

func refuse(format string, args ...any) *valueError {
	return &valueError{index: -1, reason: fmt.Sprintf(format, args...)}
}

// leaf is the decoder of one key's value.
type leaf interface {
	yaml.Unmarshaler
	// refused is nil, a *valueError, or an errors.Join of them.
	refused() error
	// store writes the value into dst, a pointer to the Config field.
	store(dst any)
}

// verdict records err in *dst and turns it into what yaml.v3 expects from an
// Unmarshaler: a *yaml.TypeError, so that the other keys are still decoded.
func verdict(dst *error, n *yaml.Node, err error) error {
	*dst = err
	if err == nil {
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
}

// leafTypes maps each kind to its value type.
var leafTypes = map[kind]reflect.Type{
	kindBool:     reflect.TypeFor[boolValue](),
	kindString:   reflect.TypeFor[textValue](),
	kindTristate: reflect.TypeFor[tristateValue](),
	kindCPUList:  reflect.TypeFor[cpuListValue](),
	kindDuration: reflect.TypeFor[durationValue](),
	kindInt:      reflect.TypeFor[intValue](),
	kindFloat:    reflect.TypeFor[floatValue](),
	kindList:     reflect.TypeFor[listValue](),
}

// goTypes is the Go type of a Config field of each kind.
var goTypes = map[kind]reflect.Type{
	kindBool:     reflect.TypeFor[bool](),
	kindString:   reflect.TypeFor[string](),
	kindTristate: reflect.TypeFor[string](),
	kindCPUList:  reflect.TypeFor[string](),
	kindDuration: reflect.TypeFor[time.Duration](),
	kindInt:      reflect.TypeFor[int](),
	kindFloat:    reflect.TypeFor[float64](),
	kindList:     reflect.TypeFor[[]string](),
}

// fileSchema is fileType and, for each field of the table, the index of its
// pointer in fileType (reflect.Value.FieldByIndex).
type fileSchema struct {
	typ   reflect.Type
	index map[*field][]int
	root  int // the field of typ holding the file's node tree (a rootNode)
}

// rootNode is an inline field of the file type: yaml.v3 hands an inline
// Unmarshaler the whole mapping before it decodes the struct's own fields, so
// one parse yields both the decoded values and the node tree the walk reads
// the lines from.
type rootNode struct{ n *yaml.Node }

func (r *rootNode) UnmarshalYAML(n *yaml.Node) error {
	if r.n == nil { // a merge (<<) would hand over its mapping too
		r.n = n
	}
	return nil
}

// decodeSchema builds the fileSchema once, on first use, so that a process
// that never loads a file does not pay for it.
var decodeSchema = sync.OnceValue(func() *fileSchema {
	s, err := buildFileSchema(reflect.TypeFor[Config]())
	if err != nil {
		panic("config: " + err.Error())
	}
	return s
})

// buildFileSchema derives the decoding type from a struct type's yaml tags;
// it fails when a tagged field has no entry in the table or the wrong Go type
// for its kind.
func buildFileSchema(t reflect.Type) (*fileSchema, error) {
	s := &fileSchema{index: map[*field][]int{}}
	var build func(t reflect.Type, prefix string, index []int) (reflect.Type, error)
	build = func(t reflect.Type, prefix string, index []int) (reflect.Type, error) {
		var out []reflect.StructField
		for i := range t.NumField() {
			sf := t.Field(i)
			name, ok := yamlName(sf)
			if !ok {
				continue
			}
			path := joinPath(prefix, name)
			at := append(append([]int(nil), index...), len(out))
			var ft reflect.Type
			if f := fieldByPath[path]; f != nil {
				if sf.Type != goTypes[f.kind] {
					return nil, fmt.Errorf("key %s is a %v in the table but its field %s is a %v", path, goTypes[f.kind], sf.Name, sf.Type)
				}
				ft = reflect.PointerTo(leafTypes[f.kind])
				s.index[f] = at
			} else if sf.Type.Kind() == reflect.Struct {
				sub, err := build(sf.Type, path, at)
				if err != nil {
					return nil, err
				}
				ft = sub
			} else {
				return nil, fmt.Errorf("field %s (yaml %q) has no entry in the table of keys", sf.Name, path)
			}
			out = append(out, reflect.StructField{Name: sf.Name, Type: ft, Tag: reflect.StructTag(`yaml:"` + name + `"`)})
		}
		if prefix == "" {
			s.root = len(out)
			out = append(out, reflect.StructField{Name: "YAMLRootNode", Type: reflect.TypeFor[rootNode](), Tag: `yaml:",inline"`})
		}
		return reflect.StructOf(out), nil
	}
	typ, err := build(t, "", nil)
	if err != nil {
		return nil, err
	}
	s.typ = typ
	for _, f := range fields {
		if s.index[f] == nil {
			return nil, fmt.Errorf("key %s of the table has no struct field tagged with it", f.path)
		}
	}
	return s, nil
}

// yamlName is the key of a struct field from its yaml tag; ok is false for a
// field that is not a key (no tag, or "-").
func yamlName(sf reflect.StructField) (name string, ok bool) {
	tag, has := sf.Tag.Lookup("yaml")
	if !has || !sf.IsExported() {
		return "", false
	}
	name, _, _ = strings.Cut(tag, ",")
	if name == "" || name == "-" {
		return "", false
	}
	return name, true
}

// scalar checks that n is a scalar of the core schema, and returns its tag,
// its text, and the text shortened for a message.
func scalar(n *yaml.Node) (tag, text, q string, err *valueError) {
	if n.Kind != yaml.ScalarNode {
		return "", "", "", &valueError{index: -1, shape: describe(n)}
	}
	tag = n.ShortTag()
	if !scalarTags[tag] {
		return "", "", "", refuse("unsupported YAML tag %q", shorten(tag))
	}
	return tag, n.Value, shorten(n.Value), nil
}

// asError keeps a nil *valueError a nil error.
func asError(e *valueError) error {
	if e == nil {
		return nil
	}
	return e
}

// boolValue is true or false, written as a YAML bool.
type boolValue struct {
	v   bool
	err error
}

func (v *boolValue) refused() error { return v.err }
func (v *boolValue) store(dst any)  { *dst.(*bool) = v.v }

func (v *boolValue) UnmarshalYAML(n *yaml.Node) error {
	return verdict(&v.err, n, asError(v.decode(n)))
}

func (v *boolValue) decode(n *yaml.Node) *valueError {
	tag, text, q, err := scalar(n)
	if err != nil {
		return err
	}
	b, ok := yamlBool(tag, text)
	switch {
	case ok:
		v.v = b
		return nil
	case tag == "!!str" && isBoolWord(text):
		return refuse("%q is a string here, not true or false; remove the quotes", q)
	}
	return refuse("%q is not true or false", q)
}

// textValue is any scalar, taken as written.
type textValue struct {
	v   string
	err error
}

func (v *textValue) refused() error { return v.err }
func (v *textValue) store(dst any)  { *dst.(*string) = v.v }

func (v *textValue) UnmarshalYAML(n *yaml.Node) error {
	var err *valueError
	v.v, err = decodeText(n, false)
	return verdict(&v.err, n, asError(err))
}

// tristateValue is a string, or a YAML bool normalised to "true" or "false".
type tristateValue struct{ textValue }

func (v *tristateValue) UnmarshalYAML(n *yaml.Node) error {
	var err *valueError
	v.v, err = decodeText(n, true)
	return verdict(&v.err, n, asError(err))
}

// cpuListValue is a CPU list such as "2-7" or "2,4-6"; "" is no list.
type cpuListValue struct{ textValue }

func (v *cpuListValue) UnmarshalYAML(n *yaml.Node) error {
	s, err := decodeText(n, false)
	if err == nil && strings.TrimSpace(s) != "" {
		if _, perr := cpuset.ParseList(s); perr != nil {
			err = refuse("%q is not a CPU list (e.g. 2-7 or 2,4-6)", shorten(s))
		}
	}
	v.v = s
	return verdict(&v.err, n, asError(err))
}

func decodeText(n *yaml.Node, tristate bool) (string, *valueError) {
	tag, text, q, err := scalar(n)
	if err != nil {
		return "", err
	}
	if tristate && tag == "!!bool" {
		b, ok := yamlBool(tag, text)
		if !ok {
			return "", refuse("%q is not true or false", q)
		}
		text = strconv.FormatBool(b)
	}
	return text, nil
}

// durationValue is a Go duration string with a unit.
type durationValue struct {
	v   time.Duration
	err error
}

func (v *durationValue) refused() error { return v.err }
func (v *durationValue) store(dst any)  { *dst.(*time.Duration) = v.v }

func (v *durationValue) UnmarshalYAML(n *yaml.Node) error {
	return verdict(&v.err, n, asError(v.decode(n)))
}

func (v *durationValue) decode(n *yaml.Node) *valueError {
	tag, text, q, err := scalar(n)
	if err != nil {
		return err
	}
	if isNumber(text) {
		return refuse("%q has no unit (e.g. %ss or %sms)", q, q, q)
	}
	d, perr := time.ParseDuration(text)
	if perr != nil || tag != "!!str" {
		return refuse("%q is not a duration (e.g. 90s, 2m)", q)
	}
	v.v = d
	return nil
}

// intValue is a whole number; 1e3 and 6.0 are whole numbers too.
type intValue struct {
	v   int
	err error
}

func (v *intValue) refused() error { return v.err }
func (v *intValue) store(dst any)  { *dst.(*int) = v.v }

func (v *intValue) UnmarshalYAML(n *yaml.Node) error {
	return verdict(&v.err, n, asError(v.decode(n)))
}

func (v *intValue) decode(n *yaml.Node) *valueError {
	tag, text, q, verr := scalar(n)
	if verr != nil {
		return verr
	}
	var i int64
	var err error
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
	v.v = int(i)
	return nil
}

// floatValue is a finite number.
type floatValue struct {
	v   float64
	err error
}

func (v *floatValue) refused() error { return v.err }
func (v *floatValue) store(dst any)  { *dst.(*float64) = v.v }

func (v *floatValue) UnmarshalYAML(n *yaml.Node) error {
	return verdict(&v.err, n, asError(v.decode(n)))
}

func (v *floatValue) decode(n *yaml.Node) *valueError {
	tag, text, q, verr := scalar(n)
	if verr != nil {
		return verr
	}
	var x float64
	var err error
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
	v.v = x
	return nil
}

// listValue is a sequence of strings. It is replaced only when every
// element is good; each bad element is refused at its own line.
type listValue struct {
	v   []string
	err error
}

func (v *listValue) refused() error { return v.err }
func (v *listValue) store(dst any)  { *dst.(*[]string) = v.v }

func (v *listValue) UnmarshalYAML(n *yaml.Node) error {
	return verdict(&v.err, n, v.decode(n))
}

func (v *listValue) decode(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return refuse(`must be a list (e.g. ["eth*"]), not %s`, describe(n))
	}
	items := make([]string, 0, len(n.Content))
	var errs []error
	for i, e := range n.Content {
		e = deref(e)
		switch {
		case isNull(e):
			errs = append(errs, &valueError{line: e.Line, index: i, reason: `has no value; write "" for an empty string`})
			continue
		case e.Kind != yaml.ScalarNode:
			errs = append(errs, &valueError{line: e.Line, index: i, reason: "must be a string, not " + describe(e)})
			continue
		}
		s, err := decodeText(e, false)
		if err != nil {
			errs = append(errs, &valueError{line: e.Line, index: i, reason: err.message(&field{kind: kindString})})
			continue
		}
		items = append(items, s)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	v.v = items
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
