package compaction

import (
	"context"
	"github.com/nodekeeper/nodekeeper/internal/testenv/opens"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNeverOpensPagetypeinfo runs every code path of the package against a
// host root that has a pagetypeinfo file watched with inotify: reading it on
// a real kernel walks every free list with the zone lock held and interrupts
// off, so any open fails the test.
func TestNeverOpensPagetypeinfo(t *testing.T) {
	fsys, root := fixtureFS(t, "two-node", []int{0}, true)
	pti := filepath.Join(root, "proc", "pagetypeinfo")
	writeFile(t, pti, []byte("Page block order: 9\nPages per block:  512\n"))
	opened := opens.Watch(t, pti)

	for _, mode := range []Mode{ModeFragmentation, ModePeriodic, ModeOff} {
		cfg := DefaultConfig()
		cfg.Mode = mode
		m, err := NewManager(fsys, cfg, Options{Jitter: func() float64 { return 0 }})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for i := range 3 {
			nodes, err := m.Read()
			if err != nil {
				t.Fatal(err)
			}
			ds := m.Decide(now.Add(time.Duration(i)*4*time.Hour), nodes, false)
			for range first(m.Start(context.Background(), ds)) {
			}
		}
		m.Compact(context.Background(), 0, ReasonSafety)
		m.Compact(context.Background(), 1, ReasonSafety)
		_ = m.Report()
		_ = m.State().Report()
		if _, err := CheckOnce(fsys, cfg); err != nil {
			t.Fatal(err)
		}
		CompactPath(fsys, 0)
		CompactPath(fsys, 7)
	}
	if opened() {
		t.Fatal("a code path opened pagetypeinfo")
	}
	// The detector itself works.
	f, err := os.Open(pti)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !opened() {
		t.Fatal("inotify did not see an open: the test proves nothing")
	}
}

// TestNoPagetypeinfoInSource fails when any non-test Go file of the module
// names pagetypeinfo in a string literal.
func TestNoPagetypeinfoInSource(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			t.Fatal("go.mod not found above the package")
		}
		root = parent
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // not ours to judge; the build catches it
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				s = lit.Value
			}
			if strings.Contains(strings.ToLower(s), "pagetypeinfo") {
				t.Errorf("%s: string literal names pagetypeinfo", fset.Position(lit.Pos()))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go files scanned")
	}
}
