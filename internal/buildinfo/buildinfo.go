// Package buildinfo owns the version nodekeeper reports: set at link time
// (-ldflags "-X github.com/nodekeeper/nodekeeper/internal/buildinfo.Version=…",
// from git tags by the Makefile), else the module version Go recorded.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is overridden by the linker for release builds.
var Version = ""

// String is the version, "devel" when nothing better is known.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// GoVersion is the Go release the binary was built with.
func GoVersion() string { return runtime.Version() }
