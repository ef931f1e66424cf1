package logging

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// catalogFile is the catalog shipped with the package, relative to this
// package's directory.
var catalogFile = filepath.Join("..", "..", "systemd", "nodekeeper.catalog")

var (
	messageIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	substRE     = regexp.MustCompile(`@([^@\s]*)@`)
)

// catalogEntry is one "-- <id>" entry of a journal catalog.
type catalogEntry struct {
	id      string
	line    int
	headers map[string]string
	body    []string
}

// parseCatalog reads a catalog the way systemd does: lines starting with # or
// ; are comments, an entry starts with "-- <id> [lang]" after an empty line
// (or at the top), header lines "Key: value" follow up to the first empty
// line, and the text follows.
func parseCatalog(t *testing.T, path string) []*catalogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open catalog: %v", err)
	}
	defer f.Close()
	var (
		entries   []*catalogEntry
		cur       *catalogEntry
		inHeaders bool
		afterGap  = true
		n         int
	)
	s := bufio.NewScanner(f)
	for s.Scan() {
		n++
		line := s.Text()
		if strings.TrimSpace(line) == "" {
			afterGap = true
			inHeaders = false
			if cur != nil && len(cur.body) > 0 {
				cur.body = append(cur.body, "")
			}
			continue
		}
		if line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "-- ") {
			if !afterGap {
				t.Errorf("%s:%d: an entry must follow an empty line", path, n)
			}
			fields := strings.Fields(line[3:])
			cur = &catalogEntry{id: fields[0], line: n, headers: map[string]string{}}
			if len(fields) > 1 {
				t.Errorf("%s:%d: language-specific entry; keep this catalog in one language", path, n)
			}
			entries = append(entries, cur)
			inHeaders = true
			afterGap = false
			continue
		}
		afterGap = false
		if cur == nil {
			t.Fatalf("%s:%d: text before the first entry", path, n)
		}
		if inHeaders {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Errorf("%s:%d: header line without \"Key: value\": %q", path, n, line)
				continue
			}
			if _, dup := cur.headers[k]; dup {
				t.Errorf("%s:%d: header %s twice", path, n, k)
			}
			cur.headers[k] = v
			continue
		}
		cur.body = append(cur.body, line)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("read catalog: %v", err)
	}
	return entries
}

// exportedConsts returns the exported string constants of this package whose
// names start with prefix, parsed from the non-test sources, so that a new
// constant cannot be forgotten in a hand-kept list.
func exportedConsts(t *testing.T, prefix string) map[string]string {
	t.Helper()
	values, _ := exportedConstsWithDocs(t, prefix)
	return values
}

// exportedConstsWithDocs is exportedConsts plus each constant's doc comment.
func exportedConstsWithDocs(t *testing.T, prefix string) (values, docs map[string]string) {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out, docs := map[string]string{}, map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !id.IsExported() || !strings.HasPrefix(id.Name, prefix) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Errorf("%s: %s is not a string literal", fset.Position(id.Pos()), id.Name)
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[id.Name] = v
					docs[id.Name] = vs.Doc.Text()
				}
			}
		}
	}
	return out, docs
}

// documentedFields returns the field names a Msg… constant's doc comment
// lists after "Fields:" (words in parentheses are value lists, not fields).
func documentedFields(doc string) map[string]bool {
	_, after, ok := strings.Cut(doc, "Fields:")
	if !ok {
		return nil
	}
	after = regexp.MustCompile(`(?s)\([^)]*\)`).ReplaceAllString(after, "")
	out := map[string]bool{}
	for _, w := range strings.FieldsFunc(after, func(r rune) bool { return r == ',' || r == '.' || r == ' ' || r == '\n' }) {
		if validField.MatchString(w) {
			out[w] = true
		}
	}
	return out
}

func TestMessageIDConstants(t *testing.T) {
	ids := exportedConsts(t, "Msg")
	if len(ids) == 0 {
		t.Fatal("found no Msg… constants")
	}
	seen := map[string]string{}
	for name, id := range ids {
		if !messageIDRE.MatchString(id) {
			t.Errorf("%s = %q: want 32 lowercase hex digits", name, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share MESSAGE_ID %s", name, other, id)
		}
		seen[id] = name
	}
}

func TestCatalogCoversEveryMessageID(t *testing.T) {
	ids, docs := exportedConstsWithDocs(t, "Msg")
	byID := map[string]string{}
	for name, id := range ids {
		byID[id] = name
	}
	// The field names the Key… constants turn into, plus the handler's own.
	fields := map[string]bool{"MESSAGE": true, "MESSAGE_ID": true, "SYSLOG_IDENTIFIER": true}
	for _, k := range exportedConsts(t, "Key") {
		fields[fieldName(nil, k)] = true
	}

	entries := parseCatalog(t, catalogFile)
	count := map[string]int{}
	for _, e := range entries {
		where := fmt.Sprintf("%s:%d", catalogFile, e.line)
		count[e.id]++
		if !messageIDRE.MatchString(e.id) {
			t.Errorf("%s: id %q: want 32 lowercase hex digits", where, e.id)
		}
		name, ok := byID[e.id]
		if !ok {
			t.Errorf("%s: entry %s has no Msg… constant", where, e.id)
		}
		if e.headers["Subject"] == "" {
			t.Errorf("%s: entry %s has no Subject", where, e.id)
		}
		if got := e.headers["Defined-By"]; got != "nodekeeper" {
			t.Errorf("%s: Defined-By = %q, want nodekeeper", where, got)
		}
		for k := range e.headers {
			switch k {
			case "Subject", "Defined-By", "Documentation", "Support":
			default:
				t.Errorf("%s: unexpected header %q", where, k)
			}
		}
		text := strings.TrimSpace(strings.Join(e.body, "\n"))
		if len(text) < 100 {
			t.Errorf("%s: entry %s says too little: %q", where, e.id, text)
		}
		all := e.headers["Subject"] + "\n" + text
		for _, m := range substRE.FindAllStringSubmatch(all, -1) {
			if !fields[m[1]] {
				t.Errorf("%s: @%s@ is not a field any Key… constant produces", where, m[1])
			}
			// journalctl shows the field's name where an entry lacks the
			// field, so the constant must promise every field used.
			if ok && !documentedFields(docs[name])[m[1]] && m[1] != "MESSAGE" {
				t.Errorf("%s: @%s@ is used, but %s's doc does not list it under Fields:", where, m[1], name)
			}
		}
	}
	var names []string
	for name := range ids {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if n := count[ids[name]]; n != 1 {
			t.Errorf("%s (%s) has %d catalog entries, want exactly 1", name, ids[name], n)
		}
	}
}

// TestCatalogWithJournalctl lets systemd's own parser read the catalog, when
// journalctl is installed: it must import every entry.
func TestCatalogWithJournalctl(t *testing.T) {
	jc, err := exec.LookPath("journalctl")
	if err != nil {
		t.Skip("journalctl not installed; systemd's catalog parser not tried")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "usr", "lib", "systemd", "catalog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var", "lib", "systemd", "catalog"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(catalogFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.catalog"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(jc, "--root="+root, "--update-catalog").CombinedOutput(); err != nil {
		t.Skipf("journalctl --root --update-catalog not usable here: %v: %s", err, out)
	}
	out, err := exec.Command(jc, "--root="+root, "--list-catalog").Output()
	if err != nil {
		t.Fatalf("journalctl --list-catalog: %v", err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, rest, ok := strings.Cut(line, " "); ok && strings.HasPrefix(rest, "nodekeeper: ") {
			listed[id] = true
		}
	}
	for name, id := range exportedConsts(t, "Msg") {
		if !listed[id] {
			t.Errorf("journalctl does not list %s (%s):\n%s", name, id, out)
		}
	}
}
