package irqbalance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

const irqbalanceStanza = `Package: irqbalance
Status: install ok installed
Priority: optional
Section: utils
Architecture: amd64
Version: 1.9.2-1
Conffiles:
 /etc/default/irqbalance fd441b2b501b7258a1043ba135736623
Description: Daemon to balance interrupts for SMP systems
 Daemon to balance interrupts across multiple CPUs.
 .
 Note: irqbalance is not useful if you don't have more than one CPU core.
Homepage: https://github.com/Irqbalance/irqbalance
`

func TestParseDpkgStatus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		version   string
		installed bool
	}{
		{"single stanza", irqbalanceStanza, "1.9.2-1", true},
		{"empty input", "", "", false},
		{"other packages only", "Package: irqbalance-ui\nStatus: install ok installed\nVersion: 1.0\n\nPackage: kmod\nStatus: install ok installed\nVersion: 30+20221128-1\n", "", false},
		{"among others", "Package: adduser\nStatus: install ok installed\nVersion: 3.134\n\n" + irqbalanceStanza + "\nPackage: iso-codes\nStatus: install ok installed\nVersion: 4.15.0-1\n", "1.9.2-1", true},
		{"crlf", strings.ReplaceAll("Package: adduser\nVersion: 3.134\n\n"+irqbalanceStanza, "\n", "\r\n"), "1.9.2-1", true},
		{"no final newline", "Package: adduser\nVersion: 3.134\n\nPackage: irqbalance\nStatus: install ok installed\nVersion: 1.8.0-1build1", "1.8.0-1build1", true},
		{"crlf no final newline", "Package: irqbalance\r\nStatus: install ok installed\r\nVersion: 1.8.0-1build1\r", "1.8.0-1build1", true},
		{"fields in any order", "Version: 1:1.9.3-2\nStatus: install ok installed\nPackage: irqbalance\n", "1:1.9.3-2", true},
		{"field names any case", "package: irqbalance\nSTATUS: install ok installed\nversion:1.9.2-1  \n", "1.9.2-1", true},
		{"continuation lines are not fields", "Package: notes\nStatus: install ok installed\nVersion: 1\nDescription: tricky\n Package: irqbalance\n\tVersion: 9.9\n\nPackage: irqbalance\nStatus: install ok installed\nVersion: 1.9.2-1\n", "1.9.2-1", true},
		{"whitespace-only line separates", "Package: irqbalance\nStatus: install ok installed\nVersion: 1.8.0-1build1\n \t\nPackage: other\nVersion: 2\n", "1.8.0-1build1", true},
		{"blank lines around", "\n\n\nPackage: irqbalance\nStatus: install ok installed\nVersion: 1.9.2-1\n\n\n\n", "1.9.2-1", true},
		{"config files left", "Package: irqbalance\nStatus: deinstall ok config-files\nVersion: 1.9.2-1\n", "", false},
		{"purge selected, config files left", "Package: irqbalance\nStatus: purge ok config-files\nVersion: 1.9.2-1\n", "", false},
		{"not installed", "Package: irqbalance\nStatus: purge ok not-installed\n", "", false},
		{"half-configured", "Package: irqbalance\nStatus: install ok half-configured\nVersion: 1.9.2-1\n", "", false},
		{"unpacked", "Package: irqbalance\nStatus: install ok unpacked\nVersion: 1.9.2-1\n", "", false},
		{"reinstall required", "Package: irqbalance\nStatus: install reinstreq half-installed\nVersion: 1.9.2-1\n", "", false},
		{"no status", "Package: irqbalance\nVersion: 1.9.2-1\n", "", false},
		{"garbled status", "Package: irqbalance\nStatus: installed\nVersion: 1.9.2-1\n", "", false},
		{"on hold", "Package: irqbalance\nStatus: hold ok installed\nVersion: 1.8.0-1build1\n", "1.8.0-1build1", true},
		{"selected for removal, still installed", "Package: irqbalance\nStatus: deinstall ok installed\nVersion: 1.8.0-1build1\n", "1.8.0-1build1", true},
		{"triggers pending", "Package: irqbalance\nStatus: install ok triggers-pending\nVersion: 1.9.2-1\n", "1.9.2-1", true},
		{"triggers awaited", "Package: irqbalance\nStatus: install ok triggers-awaited\nVersion: 1.9.2-1\n", "1.9.2-1", true},
		{"installed without version", "Package: irqbalance\nStatus: install ok installed\n", "", true},
		{"removed then installed stanza", "Package: irqbalance\nStatus: deinstall ok config-files\nVersion: 1.8.0-1build1\n\nPackage: irqbalance\nStatus: install ok installed\nVersion: 1.9.2-1\n", "1.9.2-1", true},
		{"first installed stanza wins", "Package: irqbalance\nStatus: install ok installed\nVersion: 1.9.2-1\n\nPackage: irqbalance\nStatus: install ok installed\nVersion: 1.8.0-1build1\n", "1.9.2-1", true},
		{"fields do not leak across stanzas", "Package: other\nStatus: install ok installed\nVersion: 7\n\nPackage: irqbalance\nStatus: deinstall ok config-files\n", "", false},
		{"malformed lines ignored", "garbage without colon\nPackage: irqbalance\n-----\nStatus: install ok installed\nVersion: 1.9.2-1\n", "1.9.2-1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok, err := ParseDpkgStatus(strings.NewReader(tc.in), "irqbalance")
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.version || ok != tc.installed {
				t.Fatalf("ParseDpkgStatus = %q, %v; want %q, %v", v, ok, tc.version, tc.installed)
			}
		})
	}
}

func TestParseDpkgStatusEmptyName(t *testing.T) {
	if _, _, err := ParseDpkgStatus(strings.NewReader(irqbalanceStanza), ""); err == nil {
		t.Fatal("want an error for an empty package name")
	}
}

// Lines far beyond the line buffer (a huge Description or Provides line) are
// skipped, not an error, and do not break stanza boundaries.
func TestParseDpkgStatusLongLines(t *testing.T) {
	long := strings.Repeat("x", 3*maxFieldLine)
	in := "Package: big\nStatus: install ok installed\nVersion: 1\nProvides: " + long + "\nDescription: d\n " + long + "\n\n" +
		"Package: irqbalance\nStatus: install ok installed\nDescription: " + long + "\nVersion: 1.9.2-1\n"
	v, ok, err := ParseDpkgStatus(strings.NewReader(in), "irqbalance")
	if err != nil || !ok || v != "1.9.2-1" {
		t.Fatalf("ParseDpkgStatus = %q, %v, %v; want 1.9.2-1, true, nil", v, ok, err)
	}

	in = "Package: irqbalance\nStatus: install ok installed\nVersion: " + long + "\n"
	if _, _, err := ParseDpkgStatus(strings.NewReader(in), "irqbalance"); err == nil {
		t.Fatal("want an error for a Version line longer than the line buffer")
	}
}

type failReader struct{ err error }

func (r failReader) Read([]byte) (int, error) { return 0, r.err }

// The scan stops at the end of the matching stanza: nothing after it is read.
func TestParseDpkgStatusStopsAtMatch(t *testing.T) {
	boom := errors.New("read past the match")
	r := io.MultiReader(strings.NewReader("Package: a\nVersion: 1\n\n"+irqbalanceStanza+"\n"), failReader{boom})
	v, ok, err := ParseDpkgStatus(r, "irqbalance")
	if err != nil || !ok || v != "1.9.2-1" {
		t.Fatalf("ParseDpkgStatus = %q, %v, %v; want 1.9.2-1, true, nil", v, ok, err)
	}

	// Without a match, a read error is reported.
	r = io.MultiReader(strings.NewReader("Package: a\nVersion: 1\n\n"), failReader{boom})
	if _, _, err := ParseDpkgStatus(r, "irqbalance"); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}

// bigStatus is a dpkg status file of about 4 MB with irqbalance last.
func bigStatus() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 4<<20; i++ {
		fmt.Fprintf(&b, "Package: pkg%d\nStatus: install ok installed\nPriority: optional\nVersion: %d.0-1\n"+
			"Depends: libc6 (>= 2.34), libfoo%d\nDescription: package %d\n %s\n .\n %s\n\n",
			i, i, i, i, strings.Repeat("lorem ipsum ", 6), strings.Repeat("dolor sit amet ", 5))
	}
	b.WriteString(irqbalanceStanza)
	return b.Bytes()
}

func TestParseDpkgStatusBig(t *testing.T) {
	data := bigStatus()
	allocs := testing.AllocsPerRun(5, func() {
		v, ok, err := ParseDpkgStatus(bytes.NewReader(data), "irqbalance")
		if err != nil || !ok || v != "1.9.2-1" {
			t.Fatalf("ParseDpkgStatus = %q, %v, %v", v, ok, err)
		}
	})
	// The line buffer, the field buffers and the result: not one per stanza.
	if allocs > 20 {
		t.Fatalf("%v allocations for a %d-byte status file; want a constant few", allocs, len(data))
	}
}

func BenchmarkParseDpkgStatus(b *testing.B) {
	data := bigStatus()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := ParseDpkgStatus(bytes.NewReader(data), "irqbalance"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// validName is a Debian package name: [a-z0-9][a-z0-9+.-]+.
func validName(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '+' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func FuzzParseDpkgStatus(f *testing.F) {
	f.Add([]byte(irqbalanceStanza), "irqbalance")
	f.Add([]byte("Package: irqbalance\r\nStatus: hold ok installed\r\nVersion: 1.8.0-1build1"), "irqbalance")
	f.Add([]byte("Package: irqbalance\nStatus: deinstall ok config-files\nVersion: 1.9.2-1\n\nPackage: x\n Package: irqbalance\n"), "irqbalance")
	f.Add([]byte("\n \n\t\nVersion: 1\nPackage: a\nStatus: install ok installed\n"), "a")
	f.Fuzz(func(t *testing.T, data []byte, pkg string) {
		v, ok, err := ParseDpkgStatus(bytes.NewReader(data), pkg)
		if err != nil {
			if v != "" || ok {
				t.Fatalf("error %v with result %q, %v", err, v, ok)
			}
			return
		}
		if !ok && v != "" {
			t.Fatalf("version %q for a package not installed", v)
		}
		if strings.TrimSpace(v) != v || strings.ContainsAny(v, "\n") {
			t.Fatalf("version %q not trimmed to one line", v)
		}
		if !validName(pkg) {
			return
		}
		// CRLF line ends read the same as LF (away from the line length limit).
		if !bytes.Contains(data, []byte("\r")) && 2*len(data) < maxFieldLine {
			v2, ok2, err2 := ParseDpkgStatus(bytes.NewReader(bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))), pkg)
			if err2 != nil || v2 != v || ok2 != ok {
				t.Fatalf("CRLF: %q, %v, %v; LF: %q, %v", v2, ok2, err2, v, ok)
			}
		}
		// Another stanza appended: a found package stays found as it was,
		// one not found is found in the new stanza.
		more := append(append([]byte{}, data...), "\n\nPackage: "+pkg+"\nStatus: install ok installed\nVersion: 9:9\n"...)
		v3, ok3, err3 := ParseDpkgStatus(bytes.NewReader(more), pkg)
		if err3 != nil || !ok3 {
			t.Fatalf("appended stanza: %q, %v, %v", v3, ok3, err3)
		}
		if ok && v3 != v {
			t.Fatalf("appended stanza changed the version %q to %q", v, v3)
		}
		if !ok && v3 != "9:9" {
			t.Fatalf("appended stanza: version %q, want 9:9", v3)
		}
	})
}
