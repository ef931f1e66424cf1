package nspawn

// The container root filesystem: where it comes from and whether this host
// can boot it.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// EnvRootfs names the environment variable holding the container root
// filesystem's path (the last line scripts/build-rootfs.sh prints).
const EnvRootfs = "NODEKEEPER_ROOTFS"

// Require returns the container root filesystem's path, or ends the test
// through layer.Unavailable (layer "nspawn": skipped, or failed when
// NODEKEEPER_REQUIRE_LAYERS names it) when this host cannot boot a container:
// not root, systemd-nspawn or nsenter missing, or no root filesystem.
func Require(t testing.TB) string {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		layer.Unavailable(t, layerName, "booting a container needs root (running as uid %d)", uid)
	}
	for _, bin := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			layer.Unavailable(t, layerName, "%s not found: run scripts/test-deps.sh", bin)
		}
	}
	rootfs := os.Getenv(EnvRootfs)
	if rootfs == "" {
		layer.Unavailable(t, layerName,
			"%s is not set: set it to the path that scripts/build-rootfs.sh prints", EnvRootfs)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr/lib/systemd/systemd")); err != nil {
		layer.Unavailable(t, layerName,
			"%s=%s is not a container root filesystem (%v): run scripts/build-rootfs.sh", EnvRootfs, rootfs, err)
	}
	return rootfs
}
