package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodekeeper/nodekeeper/internal/install"
)

func init() { extraCommands["install"] = runInstall }

// The packages' paths in the installer image (tools/ociimage).
var imagePackages = map[string]string{"dpkg": "/packages/nodekeeper.deb", "rpm": "/packages/nodekeeper.rpm"}

// runInstall is `nodekeeper install`: from a pod with the host's root at
// --host-root, install (or with --uninstall remove) nodekeeper on the host,
// then stay until stopped (the DaemonSet's pod), unless --once. --ready
// answers the pod's readiness probe instead: 0 when the host is as the
// install leaves it.
func runInstall(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("install", env)
	hostRoot := fs.String("host-root", "", "where the host's root file system is mounted (required)")
	pkg := fs.String("package", "", "the .deb or .rpm (default: the image's, for the host's package manager)")
	configFrom := fs.String("config-from", "", "directory of config.d override files (the ConfigMap's mount)")
	uninstall := fs.Bool("uninstall", false, "stop and disable the unit, run undo, remove the package")
	ready := fs.Bool("ready", false, "exit 0 when the host is as the install (or --uninstall) leaves it: the readiness probe")
	once := fs.Bool("once", false, "exit after the steps instead of staying until stopped")
	record := fs.String("record", filepath.Join(os.TempDir(), "nodekeeper-install.version"),
		"file in the pod where a finished install writes the version it installed, for --ready to compare without reading the package")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 || *hostRoot == "" {
		fmt.Fprintln(env.Stderr, "usage: nodekeeper install --host-root DIR [--package FILE] [--config-from DIR] [--uninstall] [--ready] [--once] [--record FILE]")
		return 2
	}
	root, err := filepath.Abs(*hostRoot)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper install:", err)
		return 1
	}
	h := &install.Host{Root: root}
	pm, err := install.Detect(h, install.Chroot{Root: root})
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper install:", err)
		return 1
	}
	if *pkg == "" {
		*pkg = imagePackages[pm.Name()]
	}
	sd, err := install.DialHost(ctx, h.Path("/run/dbus/system_bus_socket"))
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper install:", err)
		return 1
	}
	defer sd.Close()
	in := &install.Installer{Host: h, Pkg: pm, Systemd: sd, Out: env.Stdout, Package: *pkg, ConfigFrom: *configFrom, Record: *record}
	if *ready {
		if err := in.Ready(ctx, *uninstall); err != nil {
			fmt.Fprintln(env.Stderr, "not ready:", err)
			return 1
		}
		return 0
	}
	if *uninstall {
		err = in.Uninstall(ctx)
	} else {
		err = in.Install(ctx)
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper install: error:", err)
		return 1
	}
	if !*once {
		<-ctx.Done() // the pod stays; the next start of the pod runs the steps again
	}
	return 0
}
