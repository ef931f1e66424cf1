package irqbalance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxFieldLine bounds the memory one status line can take. Lines longer than
// this (a huge Provides or Description line) are skipped over unread; only a
// Package, Status or Version line that long is an error, since its value would
// be cut.
const maxFieldLine = 64 << 10

// ParseDpkgStatus scans a dpkg status file (deb822 stanzas separated by blank
// lines) for the stanza of package pkg and reports its Version when dpkg has
// the package installed. It stops reading at the first stanza that names pkg
// in an installed state; a stanza that names pkg in another state (removed
// with its configuration files left, half-installed, unpacked but not
// configured) does not count, and scanning goes on, as a multi-arch database
// can list a package more than once.
//
// "Installed" means the third word of Status is installed, triggers-awaited or
// triggers-pending: the package is unpacked and configured, whatever the
// selection (the first word) says, so a package on hold ("hold ok installed")
// or selected for removal but not yet removed ("deinstall ok installed") is
// installed. version is empty when installed is false.
//
// Field names match case-insensitively; continuation lines (starting with a
// space or tab), CRLF line ends and a missing final newline are accepted;
// malformed lines are ignored. err is a read error, or a Package, Status or
// Version line too long to hold.
func ParseDpkgStatus(r io.Reader, pkg string) (version string, installed bool, err error) {
	if pkg == "" {
		return "", false, errors.New("empty package name")
	}
	br := bufio.NewReaderSize(r, maxFieldLine)
	var (
		st      stanza
		lineNum int
	)
	for {
		line, rerr := br.ReadSlice('\n')
		lineNum++
		long := errors.Is(rerr, bufio.ErrBufferFull)
		if rerr != nil && !long && rerr != io.EOF {
			return "", false, rerr
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case isBlank(line):
			if !long {
				if v, ok := st.end(pkg); ok {
					return v, true, nil
				}
			}
		case line[0] == ' ' || line[0] == '\t':
			// Continuation of a multi-line field: none of ours.
		default:
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				break
			}
			if field := st.field(name); field != nil {
				if long {
					return "", false, fmt.Errorf("line %d: %s field longer than %d bytes", lineNum, name, maxFieldLine)
				}
				*field = append((*field)[:0], bytes.TrimSpace(value)...)
			}
		}
		for errors.Is(rerr, bufio.ErrBufferFull) { // skip the rest of a long line
			_, rerr = br.ReadSlice('\n')
		}
		if rerr == io.EOF {
			v, ok := st.end(pkg)
			return v, ok, nil
		}
		if rerr != nil {
			return "", false, rerr
		}
	}
}

// stanza holds the fields of the current stanza that matter, in buffers reused
// from stanza to stanza so that scanning a large database does not allocate
// per package.
type stanza struct {
	pkg, status, version []byte
}

func (s *stanza) field(name []byte) *[]byte {
	switch {
	case bytes.EqualFold(name, []byte("Package")):
		return &s.pkg
	case bytes.EqualFold(name, []byte("Status")):
		return &s.status
	case bytes.EqualFold(name, []byte("Version")):
		return &s.version
	}
	return nil
}

// end closes the stanza: it reports the version when the stanza is pkg's and
// installed, and resets the stanza for the next one.
func (s *stanza) end(pkg string) (string, bool) {
	var v string
	match := string(s.pkg) == pkg && statusInstalled(s.status)
	if match {
		v = string(s.version)
	}
	s.pkg, s.status, s.version = s.pkg[:0], s.status[:0], s.version[:0]
	return v, match
}

// statusInstalled reads dpkg's "want flag status" triple.
func statusInstalled(status []byte) bool {
	f := strings.Fields(string(status))
	if len(f) != 3 {
		return false
	}
	switch f[2] {
	case "installed", "triggers-awaited", "triggers-pending":
		return true
	}
	return false
}

// isBlank reports whether line separates stanzas: empty, or only spaces and
// tabs (deb822).
func isBlank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}
