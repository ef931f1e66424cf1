// Package layer decides, for tests that need something of the machine (root,
// a real systemd container, a VM), whether a missing prerequisite skips the
// test or fails it. CI lists the layers it requires in NODEKEEPER_REQUIRE_LAYERS
// (comma-separated: root, nspawn, vm), so a skip there fails the run instead of
// passing silently.
package layer

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// EnvRequire is the environment variable listing the required layers.
const EnvRequire = "NODEKEEPER_REQUIRE_LAYERS"

// T is the part of testing.TB this package uses.
type T interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// Required reports whether CI demands the named layer.
func Required(name string) bool {
	return slices.Contains(strings.Split(os.Getenv(EnvRequire), ","), name)
}

// Unavailable skips the test, or fails it when the layer is required, with
// the reason in a person's words.
func Unavailable(t T, name, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf("layer %s unavailable: %s", name, fmt.Sprintf(format, args...))
	if Required(name) {
		t.Fatal(msg + " (required by " + EnvRequire + ")")
	}
	t.Skip(msg)
}

// Root makes the test need root.
func Root(t T) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "root", "the test writes host kernel files and must run as root")
	}
}
