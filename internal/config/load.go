package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// DropInDir is the directory, next to the main file, whose *.yaml files
// override the main file's keys.
const DropInDir = "config.d"

const (
	// maxFileSize bounds what is read from one file: a complete configuration
	// is about 4 KiB, so anything near this is not a configuration file.
	maxFileSize = 1 << 20
	// maxErrors bounds the errors reported for one file, so a file that is not
	// a configuration at all gives a short answer.
	maxErrors = 20
)

// Load reads the main configuration file, then every *.yaml file of the
// config.d directory next to it in lexical order, each overriding only the
// keys it sets (a list is replaced as a whole), and validates the result.
// File names starting with "." are skipped. A missing main file or config.d
// directory is not an error: the defaults apply. An empty mainFile means
// DefaultPath.
//
// The error, if any, joins one *FieldError per problem.
func Load(mainFile string) (Config, error) {
	return LoadWith(mainFile, Options{StrictModes: os.Geteuid() == 0})
}

// Options are how files are read.
type Options struct {
	// StrictModes refuses, as sshd's StrictModes does, configuration files
	// and directories that are not owned by root or that group or others
	// may write: whoever can write them decides which CPUs kubelet runs on.
	// Load sets it when the process runs as root.
	StrictModes bool
}

// LoadWith is Load with explicit options.
func LoadWith(mainFile string, o Options) (Config, error) {
	if mainFile == "" {
		mainFile = DefaultPath
	}
	files := []source{{name: mainFile, optional: true}}
	dir := filepath.Join(filepath.Dir(mainFile), DropInDir)
	var errs []error
	if o.StrictModes {
		for _, d := range []string{filepath.Dir(mainFile), dir} {
			if err := checkModes(d, nil); err != nil {
				errs = append(errs, err)
			}
		}
	}
	dropIns, err := dropIns(dir, o)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return load(append(files, dropIns...), o)
}

// LoadFiles is Load with an explicit list of files, read in the order given;
// every file must exist. With no files it returns Default().
func LoadFiles(files ...string) (Config, error) {
	src := make([]source, len(files))
	for i, f := range files {
		src[i] = source{name: f}
	}
	return load(src, Options{StrictModes: os.Geteuid() == 0})
}

type source struct {
	name     string // as shown in errors
	optional bool   // a missing file is skipped
	// resolved, when set, is the file a drop-in link was found to name; it
	// is opened without following links, so a link swapped in after the
	// check cannot lead out of config.d.
	resolved string
}

// dropIns lists the override files of dir in lexical order. A link is
// followed only to a file inside dir: a link out of the directory, and
// anything else that is not a regular file or a directory (a named pipe
// would block the reader), is refused with the reason. Directories are
// skipped. With StrictModes, the directory a link leads to is judged as dir
// is.
func dropIns(dir string, o Options) ([]source, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &FieldError{File: dir, Reason: "cannot read the directory: " + plainError(err), err: err}
	}
	var files []source
	var errs []error
	realDir := ""
	for _, e := range entries { // os.ReadDir sorts by name
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".yaml") {
			continue
		}
		path := filepath.Join(dir, name)
		src := source{name: path}
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(path)
			if err != nil {
				errs = append(errs, &FieldError{File: path, Reason: "cannot follow the link: " + plainError(err), err: err})
				continue
			}
			if realDir == "" {
				if realDir, err = filepath.EvalSymlinks(dir); err != nil {
					realDir = dir
				}
			}
			if rel, err := filepath.Rel(realDir, target); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				errs = append(errs, &FieldError{File: path, Reason: "is a link out of " + DropInDir + " (to " + target + "): refusing it"})
				continue
			}
			if td := filepath.Dir(target); o.StrictModes && td != realDir {
				if err := checkModes(td, nil); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			src.resolved = target
		case e.IsDir(): // a directory of shared pieces, reached by links
			continue
		case !e.Type().IsRegular():
			errs = append(errs, &FieldError{File: path, Reason: "is not a regular file (" + fileKind(e.Type()) + "): refusing it"})
			continue
		}
		files = append(files, src)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return files, nil
}

// fileKind names a file type for a person.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "a special file"
}

// checkModes refuses a file or directory that is not root's or that group or
// others may write. fi is its stat, or nil to stat path.
func checkModes(path string, fi fs.FileInfo) error {
	if fi == nil {
		var err error
		if fi, err = os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return &FieldError{File: path, Reason: "cannot read: " + plainError(err), err: err}
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if st.Uid != 0 {
		return &FieldError{File: path, Reason: fmt.Sprintf("refusing: owned by uid %d, not root (chown root %s)", st.Uid, path)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &FieldError{File: path, Reason: fmt.Sprintf("refusing: writable by group or others (mode %04o; chmod go-w %s)", perm, path)}
	}
	return nil
}

func load(files []source, o Options) (Config, error) {
	c := Default()
	c.src = map[string]origin{}
	var errs []error
	for _, f := range files {
		data, err := readFile(f, o)
		if err != nil {
			if f.optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		errs = append(errs, decodeFile(&c, f.name, data)...)
	}
	// Validation is skipped while a file has errors: a value that could not be
	// read would otherwise show up again as a confusing follow-on error.
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	if len(c.src) == 0 {
		c.src = nil
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func readFile(src source, o Options) ([]byte, error) {
	name := src.name
	// O_NONBLOCK: opening a named pipe must not wait for a writer; the
	// type is checked before anything is read.
	open, flags := name, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC
	if src.resolved != "" {
		open, flags = src.resolved, flags|syscall.O_NOFOLLOW
	}
	fd, err := syscall.Open(open, flags, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &FieldError{File: name, Reason: "the file it links to was replaced by a link: refusing it"}
	}
	if err != nil {
		pe := &fs.PathError{Op: "open", Path: name, Err: err}
		return nil, &FieldError{File: name, Reason: "cannot read: " + plainError(pe), err: pe}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &FieldError{File: name, Reason: "cannot read: " + plainError(err), err: err}
	}
	if fi.IsDir() {
		return nil, &FieldError{File: name, Reason: "is a directory, not a file"}
	}
	if !fi.Mode().IsRegular() {
		return nil, &FieldError{File: name, Reason: "is not a regular file (" + fileKind(fi.Mode().Type()) + "): refusing it"}
	}
	if o.StrictModes {
		if err := checkModes(name, fi); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &FieldError{File: name, Reason: "cannot read: " + plainError(err), err: err}
	}
	if len(data) > maxFileSize {
		return nil, &FieldError{File: name, Reason: "is larger than 1 MiB, which no configuration file is"}
	}
	return data, nil
}

// plainError is err without the file name an *fs.PathError repeats.
func plainError(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// decodeFile applies the keys set in one file to c and records where each
// was set.
//
// yaml.v3 decodes the file's first document into the file type (values.go)
// with KnownFields, each key's value through its own yaml.Unmarshaler. The
// node tree of the same bytes is then walked along the table of keys, only to
// attach FILE:LINE: to each key set (its origin), to each value refused, and
// to each key yaml.v3 could not place (unknown, set twice, not a mapping),
// whose message the walk builds from the node rather than from yaml.v3's text.
func decodeFile(c *Config, file string, data []byte) []error {
	d := &decoder{file: file, data: data, c: c}
	fs := decodeSchema()
	d.decoded = reflect.New(fs.typ).Elem()
	d.index = fs.index
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	derr := decodeStrict(dec, d.decoded.Addr().Interface())
	if errors.Is(derr, io.EOF) { // empty, or only comments
		return nil
	}
	if _, ok := errors.AsType[*yaml.TypeError](derr); derr != nil && !ok {
		return []error{d.syntaxError(derr)}
	}
	root := d.decoded.Field(fs.root).Addr().Interface().(*rootNode).n
	if root == nil && derr != nil {
		// The document is not a mapping, so yaml.v3 handed no node over:
		// read the tree to say where and what it is.
		if doc, err := parseDocument(yaml.NewDecoder(bytes.NewReader(data))); err == nil {
			root = documentRoot(doc)
		}
	}
	if root != nil {
		d.mapping(root, schema)
	}
	if derr != nil && len(d.errs) == 0 {
		// yaml.v3 refused something the walk found nothing wrong with: say it
		// as it is rather than load a file only half understood.
		d.fail(0, "", "cannot decode: "+derr.Error())
	}
	next, err := parseDocument(dec)
	switch {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.add(d.syntaxError(err))
	default:
		if root := documentRoot(next); root != nil && !isNull(root) {
			d.fail(root.Line, "", "a second YAML document starts here; a configuration file holds one (remove the ---)")
		}
	}
	return d.errs
}

// parseDocument reads the next YAML document. A panic inside the YAML parser is
// turned into an error: no input may take the daemon down.
func parseDocument(dec *yaml.Decoder) (n *yaml.Node, err error) {
	n = new(yaml.Node)
	if err := decodeStrict(dec, n); err != nil {
		return nil, err
	}
	return n, nil
}

// decodeStrict is dec.Decode(v) with a panic inside yaml.v3 turned into an
// error.
func decodeStrict(dec *yaml.Decoder, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	return dec.Decode(v)
}

func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		return deref(doc.Content[0])
	}
	return deref(doc)
}

// decoder walks one file's YAML tree along the schema.
type decoder struct {
	file string
	data []byte
	c    *Config
	errs []error
	// decoded is what yaml.v3 decoded the file into (a fileSchema.typ), and
	// index where each key's value is in it.
	decoded reflect.Value
	index   map[*field][]int
}

func (d *decoder) fail(line int, field, reason string) {
	d.add(&FieldError{File: d.file, Line: line, Field: field, Reason: reason})
}

func (d *decoder) add(e *FieldError) {
	switch {
	case len(d.errs) < maxErrors:
		d.errs = append(d.errs, e)
	case len(d.errs) == maxErrors:
		d.errs = append(d.errs, &FieldError{File: d.file, Reason: fmt.Sprintf("more than %d errors; fix these first", maxErrors)})
	}
}

// mapping walks the keys of v, a mapping for section s.
func (d *decoder) mapping(v *yaml.Node, s *section) {
	if isNull(v) { // "irq:" with every key commented out
		return
	}
	if v.Kind != yaml.MappingNode {
		what := "must be a mapping of keys"
		if s.path == "" {
			what = "the file must be a mapping of keys"
		}
		d.fail(v.Line, s.path, fmt.Sprintf("%s (known: %s), not %s", what, strings.Join(s.names, ", "), describe(v)))
		return
	}
	seen := make(map[string]int, len(v.Content)/2)
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k.Line, s.path, fmt.Sprintf("keys must be plain names, not %s", describe(k)))
			continue
		}
		name := k.Value
		if k.ShortTag() == "!!merge" {
			d.fail(k.Line, s.path, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[name]; dup {
			d.fail(k.Line, joinPath(s.path, displayKey(name)), fmt.Sprintf("set twice (first at line %d)", first))
			continue
		}
		seen[name] = k.Line
		if sub := s.children[name]; sub != nil {
			d.mapping(deref(val), sub)
		} else if f := s.leaves[name]; f != nil {
			d.leaf(f, k.Line, deref(val))
		} else {
			d.fail(k.Line, joinPath(s.path, displayKey(name)), unknownKey(s, name))
		}
	}
}

func unknownKey(s *section, name string) string {
	reason := fmt.Sprintf("unknown key (known: %s)", strings.Join(s.names, ", "))
	norm := normalizeKey(name)
	for _, known := range s.names {
		if normalizeKey(known) == norm {
			return reason + "; did you mean " + known + "?"
		}
	}
	if strings.Contains(name, ".") {
		for _, f := range fields {
			if normalizeKey(f.path) == normalizeKey(joinPath(s.path, name)) {
				parts := strings.Split(strings.TrimPrefix(f.path, joinPath(s.path, "")), ".")
				nested := parts[0] + ":"
				for _, p := range parts[1:] {
					nested += ", then " + p + ": indented under it"
				}
				return reason + "; keys are nested: write " + nested
			}
		}
		return reason
	}
	var elsewhere []string
	for _, f := range fields {
		if _, leaf, _ := cutLast(f.path); normalizeKey(leaf) == norm {
			elsewhere = append(elsewhere, f.path)
		}
	}
	for path := range sectionPaths() {
		if _, leaf, _ := cutLast(path); normalizeKey(leaf) == norm {
			elsewhere = append(elsewhere, path)
		}
	}
	if len(elsewhere) > 0 {
		return reason + "; did you mean " + strings.Join(elsewhere, " or ") + "?"
	}
	return reason
}

// sectionPaths yields the path of every section below the top level, in
// table order.
func sectionPaths() func(yield func(string) bool) {
	return func(yield func(string) bool) {
		var walk func(s *section) bool
		walk = func(s *section) bool {
			for _, name := range s.names {
				if sub := s.children[name]; sub != nil {
					if !yield(sub.path) || !walk(sub) {
						return false
					}
				}
			}
			return true
		}
		walk(schema)
	}
}

// cutLast splits "a.b.c" into "a.b" and "c".
func cutLast(path string) (parent, leaf string, ok bool) {
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return "", path, false
	}
	return path[:i], path[i+1:], true
}

// normalizeKey folds the spellings of a key people commonly mistype:
// case, and snake or kebab case.
func normalizeKey(s string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
}

// leaf applies the value yaml.v3 decoded for one key, or reports why it was
// refused, at the key's line.
func (d *decoder) leaf(f *field, line int, v *yaml.Node) {
	if isNull(v) { // yaml.v3 hands no null to an Unmarshaler
		hint := "remove the key to keep the default (" + formatValue(f.get(ptrDefault())) + ")"
		switch f.kind {
		case kindString, kindTristate, kindCPUList:
			hint = `write "" for an empty string, or ` + hint
		case kindList:
			hint = "write [] for an empty list, or " + hint
		}
		d.fail(line, f.path, "has no value; "+hint)
		return
	}
	var val leaf
	if p := d.decoded.FieldByIndex(d.index[f]); !p.IsNil() {
		val = p.Interface().(leaf)
	} else {
		// yaml.v3 decodes nothing of a mapping that sets a key twice; the
		// walk reports that, and judges this value all the same, so that
		// one round of fixes is enough.
		val = reflect.New(leafTypes[f.kind]).Interface().(leaf)
		if err := v.Decode(val); err != nil && val.refused() == nil {
			d.fail(line, f.path, err.Error())
			return
		}
	}
	err := val.refused()
	if err == nil {
		val.store(f.ptr(d.c))
		var elems []int
		if f.kind == kindList {
			elems = elementLines(v)
		}
		d.c.src[f.path] = origin{file: d.file, line: line, elems: elems, value: f.get(d.c)}
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, err := range errs {
		ve, ok := errors.AsType[*valueError](err)
		switch {
		case !ok: // not ours: say it as it is rather than drop it
			d.fail(line, f.path, err.Error())
		case ve.index >= 0:
			d.fail(ve.line, fmt.Sprintf("%s[%d]", f.path, ve.index), ve.message(f))
		default:
			d.fail(line, f.path, ve.message(f))
		}
	}
}

// scalarTags are the tags of the YAML core schema a scalar may carry.
var scalarTags = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true, "!!timestamp": true}

func isNull(v *yaml.Node) bool {
	return v == nil || v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null"
}

// deref follows aliases to the node they name.
func deref(v *yaml.Node) *yaml.Node {
	for i := 0; v != nil && v.Kind == yaml.AliasNode && i < 100; i++ {
		v = v.Alias
	}
	if v != nil && v.Kind == yaml.AliasNode {
		return nil
	}
	return v
}

func yamlBool(tag, text string) (value, ok bool) {
	if tag != "!!bool" {
		return false, false
	}
	switch strings.ToLower(text) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func isBoolWord(s string) bool {
	s = strings.ToLower(s)
	return s == "true" || s == "false"
}

var numberRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[-+]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9_]+)([eE][-+]?[0-9]+)?$`)
})

// isNumber reports whether s is written as a number.
func isNumber(s string) bool { return numberRE().MatchString(s) }

// describe names what a node is, for "must be X, not Y".
func describe(v *yaml.Node) string {
	switch {
	case v == nil:
		return "nothing"
	case v.Kind == yaml.MappingNode:
		return "a mapping"
	case v.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(v):
		return "empty"
	}
	return strconv.Quote(shorten(v.Value))
}

// article names what a field holds, for "must be X, not Y".
func article(f *field) string {
	switch f.kind {
	case kindBool:
		return "true or false"
	case kindDuration:
		return "a duration (e.g. 90s, 2m)"
	case kindInt:
		return "a whole number"
	case kindFloat:
		return "a number"
	case kindList:
		return "a list"
	case kindTristate:
		return "one of " + strings.Join(f.values, ", ")
	}
	if f.values != nil {
		return "one of " + strings.Join(f.values, ", ")
	}
	return "a string"
}

func ptrDefault() *Config {
	d := Default()
	return &d
}

// shorten cuts s to a length fit for an error message.
func shorten(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}

var plainKeyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_-]+$`) })

// displayKey writes a key for a field path: as is when it is a plain name,
// quoted otherwise, so an error message always stays on one line.
func displayKey(k string) string {
	if plainKeyRE().MatchString(k) && len(k) <= 64 {
		return k
	}
	return strconv.Quote(shorten(k))
}

// syntaxError turns a yaml.v3 parse error into a FieldError with the line the
// problem is on. The line is found from the data, not from the message: it is
// the shortest run of leading lines whose parse fails with the very same
// error, found by bisection (each probe is a parse, but only of a file that
// is already known to be broken).
func (d *decoder) syntaxError(err error) *FieldError {
	msg := err.Error()
	ends := lineEnds(d.data)
	// fails(k) reports whether the first k lines fail as the whole file does
	// (the same error, at the same place, which the text of the error tells
	// apart without being read); fails(len(ends)) holds. A construct left
	// open (a bracket, a quote) fails the same way at any cut after it, so
	// its first line is reported.
	fails := func(k int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(d.data[:ends[k-1]]))
		for {
			_, err := parseDocument(dec)
			if errors.Is(err, io.EOF) {
				return false
			}
			if err != nil {
				return err.Error() == msg
			}
		}
	}
	line := sort.Search(len(ends), func(i int) bool { return fails(i + 1) }) + 1
	if line > len(ends) {
		line = len(ends)
	}
	return &FieldError{File: d.file, Line: line, Reason: "invalid YAML: " + problem(msg), err: err}
}

// problem is a yaml.v3 syntax error without the "yaml: " and "line N: "
// it starts with, on one line. The line is reported from the data instead
// (see syntaxError).
func problem(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok && num != "" && strings.Trim(num, "0123456789") == "" {
			msg = after
		}
	}
	return strings.ReplaceAll(msg, "\n", " ")
}

// lineEnds are the offsets just past each line of data, line breaks counted
// as YAML counts them (LF, CR LF or CR); a last line without a line break
// counts.
func lineEnds(data []byte) []int {
	var ends []int
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\n':
			ends = append(ends, i+1)
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] < len(data) {
		ends = append(ends, len(data))
	}
	return ends
}
