// Package irqbalance owns knowing which irqbalance is installed on the host and
// whether it is a build known to carry the bug that stops IRQs from ever
// migrating once placed (upstream 1.7.0 and 1.8.0; fixed in 1.9.0, and in
// Ubuntu's 1.8.0-1ubuntu0.1). It answers from the package database under the
// root file system and never executes anything: no dpkg-query, no irqbalance
// --version.
//
// Only dpkg hosts (Debian, Ubuntu and their derivatives) are understood. The
// RPM database is Berkeley DB, SQLite or ndb depending on the distribution and
// release, and reading it would take cgo or a database dependency nodekeeper
// does not carry, so on RPM hosts (and any other host without a dpkg database)
// the installed version is reported as unknown.
package irqbalance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/policy"
)

// Unit is irqbalance's systemd unit.
const Unit = "irqbalance.service"

// The repairs that go through irqbalance.
const (
	ActionRestart policy.Action = "irqbalance_restart" // restart the unit: a fresh placement
	ActionSighup  policy.Action = "irqbalance_sighup"  // SIGHUP: a full rescan (irqbalance ≥ 1.8)
)

// Package is irqbalance's package name in the distributions' databases.
const Package = "irqbalance"

// Where an Installed answer comes from.
const (
	SourceDpkg    = "dpkg"    // dpkg's status database
	SourceUnknown = "unknown" // no package database nodekeeper can read
)

// Installed is what the package database says about irqbalance.
type Installed struct {
	// Version is the installed package version exactly as the database
	// spells it (e.g. "1.9.2-1", "1:1.9.3-2", "1.8.0-1build1"). Empty when
	// the package is not installed or the database is unknown.
	Version string
	// Source is SourceDpkg when dpkg's database was read (an empty Version
	// then means dpkg does not have irqbalance installed), or SourceUnknown
	// when there is no database nodekeeper can read (an empty Version then
	// says nothing about whether irqbalance is there).
	Source string
}

// InstalledVersion reads dpkg's status database (var/lib/dpkg/status under the
// root file system) for the irqbalance package. The file is streamed and the
// read stops at irqbalance's stanza, so a status file of several MB costs no
// more memory than a small one.
//
// A host without a dpkg database gives Source "unknown" and no error; a dpkg
// database without irqbalance in an installed state (never installed, or
// removed with its configuration files left behind) gives Source "dpkg" and an
// empty Version.
func InstalledVersion(h *hostfs.FS) (Installed, error) {
	path := h.Root("var", "lib", "dpkg", "status")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Installed{Source: SourceUnknown}, nil
	}
	if err != nil {
		return Installed{Source: SourceUnknown}, err
	}
	defer f.Close()
	version, installed, err := ParseDpkgStatus(f, Package)
	if err != nil {
		return Installed{Source: SourceDpkg}, fmt.Errorf("%s: %w", path, err)
	}
	if !installed {
		version = ""
	}
	return Installed{Version: version, Source: SourceDpkg}, nil
}
