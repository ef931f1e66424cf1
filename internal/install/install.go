// Package install owns `nodekeeper install`: putting nodekeeper onto the host
// of a Kubernetes node from a privileged pod whose host root is mounted (the
// managed-pool DaemonSet in deploy/kubernetes). The package goes in through
// the host's own package manager (dpkg or rpm, chrooted into the host root),
// the ConfigMap's override into the host's /etc/nodekeeper/config.d (checked
// with the same code as `config validate`, before anything changes), and the
// unit is enabled and started over the host's D-Bus — the daemon always runs
// under the host's systemd, never in the pod. Every step is idempotent: the
// same package and override change nothing; a newer package upgrades; a
// changed override reloads the daemon (SIGHUP through the unit's ExecReload),
// not a restart. Each step says what it did. A failure returns the reason and
// leaves the host as it was (the override files are restored), or as the
// package manager left it.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Unit is the host unit nodekeeper's package installs.
const Unit = "nodekeeper.service"

// PackageManager is the host's package manager, as the installer uses it.
type PackageManager interface {
	// Name is "dpkg" or "rpm".
	Name() string
	// FileVersion is the version of the package file (a path under the host
	// root).
	FileVersion(ctx context.Context, file string) (string, error)
	// Installed is the installed version of nodekeeper ("" when it is not).
	Installed(ctx context.Context) (string, error)
	// Newer says whether version a is newer than b, by the manager's rules.
	Newer(ctx context.Context, a, b string) (bool, error)
	// Install installs or upgrades from the package file.
	Install(ctx context.Context, file string) error
	// Remove removes nodekeeper (its configuration files stay).
	Remove(ctx context.Context) error
	// Undo runs the installed `nodekeeper undo` on the host.
	Undo(ctx context.Context) error
}

// Systemd is the host's systemd, over its D-Bus.
type Systemd interface {
	DaemonReload(ctx context.Context) error
	Enable(ctx context.Context, unit string) error
	Disable(ctx context.Context, unit string) error
	Start(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	Reload(ctx context.Context, unit string) error
	// State is the unit's ActiveState and MainPID.
	State(ctx context.Context, unit string) (active string, mainPID uint32, err error)
}

// Installer installs nodekeeper onto one host.
type Installer struct {
	Host    *Host
	Pkg     PackageManager
	Systemd Systemd
	Out     io.Writer // what each step did
	// Package is the package file inside the pod (copied under the host
	// root before the package manager sees it).
	Package string
	// ConfigFrom is the directory of the override's files (the ConfigMap's
	// mount); "" for none.
	ConfigFrom string
	// StartTimeout bounds the wait for the unit to become active.
	StartTimeout time.Duration
	// Record is a file in the pod (not on the host) where a finished
	// Install writes the version it left installed, so that Ready need not
	// copy the package onto the host and ask the package manager its
	// version at every probe. A new container starts without it, so a
	// rolling update is not ready until its own install has finished. ""
	// for none.
	Record string
}

func (in *Installer) say(format string, args ...any) {
	fmt.Fprintf(in.Out, "nodekeeper install: "+format+"\n", args...)
}

// Install runs the install steps once.
func (in *Installer) Install(ctx context.Context) error {
	if in.Record != "" {
		if err := os.Remove(in.Record); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the install record: %w", err)
		}
	}
	// 1. What is asked: the package's version, the override, both checked
	// before anything on the host changes.
	file, cleanup, err := in.Host.Stage(in.Package)
	if err != nil {
		return err
	}
	defer cleanup()
	want, err := in.Pkg.FileVersion(ctx, file)
	if err != nil {
		return fmt.Errorf("read the version of %s: %w", in.Package, err)
	}
	have, err := in.Pkg.Installed(ctx)
	if err != nil {
		return fmt.Errorf("ask %s what is installed: %w", in.Pkg.Name(), err)
	}
	override, err := in.Host.PlanOverride(in.ConfigFrom)
	if err != nil {
		return fmt.Errorf("the override in %s is refused, nothing changed: %w", in.ConfigFrom, err)
	}

	// 2. The package.
	upgraded := false
	switch {
	case have == want:
		in.say("nodekeeper %s is installed already", have)
	case have == "":
		in.say("installing nodekeeper %s with the host's %s", want, in.Pkg.Name())
		if err := in.Pkg.Install(ctx, file); err != nil {
			return fmt.Errorf("%s could not install %s: %w", in.Pkg.Name(), in.Package, err)
		}
		upgraded = true
	default:
		newer, err := in.Pkg.Newer(ctx, want, have)
		if err != nil {
			return fmt.Errorf("compare versions %s and %s: %w", want, have, err)
		}
		if !newer {
			return fmt.Errorf("the host has nodekeeper %s, newer than this image's %s: not downgrading (remove it first, or roll the DaemonSet forward)", have, want)
		}
		in.say("upgrading nodekeeper %s to %s with the host's %s", have, want, in.Pkg.Name())
		if err := in.Pkg.Install(ctx, file); err != nil {
			return fmt.Errorf("%s could not upgrade to %s: %w", in.Pkg.Name(), in.Package, err)
		}
		upgraded = true
	}

	// 3. The override, then the unit; a failure from here on puts the old
	// override back.
	changed, restore, err := in.Host.ApplyOverride(override)
	if err != nil {
		return err
	}
	for _, f := range changed {
		in.say("wrote %s", f)
	}
	if len(override.Files) > 0 && len(changed) == 0 {
		in.say("the override is up to date")
	}
	if err := in.unit(ctx, upgraded, len(changed) > 0); err != nil {
		if rerr := restore(); rerr != nil {
			return fmt.Errorf("%w; and putting the old override back failed: %v", err, rerr)
		}
		if len(changed) > 0 {
			in.say("put the old override back")
		}
		return err
	}
	if in.Record != "" {
		// Only a cost saving: without the record Ready reads the package.
		if err := os.WriteFile(in.Record, []byte(want+"\n"), 0o644); err != nil {
			in.say("cannot keep the install record (%v): the readiness probe will read the package each time", err)
		}
	}
	return nil
}

// unit enables and starts the unit, reloads it when only the override
// changed.
func (in *Installer) unit(ctx context.Context, upgraded, overrideChanged bool) error {
	sd := in.Systemd
	if upgraded {
		if err := sd.DaemonReload(ctx); err != nil {
			return fmt.Errorf("systemd daemon-reload over D-Bus: %w", err)
		}
	}
	if err := sd.Enable(ctx, Unit); err != nil {
		return fmt.Errorf("enable %s: %w", Unit, err)
	}
	active, pid, err := sd.State(ctx, Unit)
	if err != nil {
		return fmt.Errorf("read %s's state: %w", Unit, err)
	}
	switch {
	case active != "active":
		in.say("starting %s", Unit)
		if err := sd.Start(ctx, Unit); err != nil {
			return fmt.Errorf("start %s: %w", Unit, err)
		}
	case upgraded:
		// The package's scripts restart the daemon only where they reach
		// systemd, which they cannot from a pod's chroot.
		in.say("restarting %s (pid %d) on the new version", Unit, pid)
		if err := sd.Restart(ctx, Unit); err != nil {
			return fmt.Errorf("restart %s: %w", Unit, err)
		}
	case overrideChanged:
		in.say("reloading %s (pid %d) for the new override", Unit, pid)
		if err := sd.Reload(ctx, Unit); err != nil {
			return fmt.Errorf("reload %s: %w", Unit, err)
		}
	default:
		in.say("%s is active (pid %d)", Unit, pid)
	}
	return in.waitActive(ctx)
}

func (in *Installer) waitActive(ctx context.Context) error {
	limit := in.StartTimeout
	if limit == 0 {
		limit = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		active, pid, err := in.Systemd.State(ctx, Unit)
		if err == nil && active == "active" {
			in.say("done: %s is active (pid %d)", Unit, pid)
			return nil
		}
		if err == nil && active == "failed" {
			return fmt.Errorf("%s failed to start: see journalctl -u nodekeeper on the node", Unit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is %s after %v: see journalctl -u nodekeeper on the node", Unit, active, limit)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Uninstall stops and disables the unit, runs `nodekeeper undo` (the kubelet
// pin goes) and removes the package. Nothing installed: nothing to do.
func (in *Installer) Uninstall(ctx context.Context) error {
	have, err := in.Pkg.Installed(ctx)
	if err != nil {
		return fmt.Errorf("ask %s what is installed: %w", in.Pkg.Name(), err)
	}
	if have == "" {
		in.say("nodekeeper is not installed: nothing to remove")
		return nil
	}
	in.say("stopping and disabling %s", Unit)
	if err := in.Systemd.Stop(ctx, Unit); err != nil {
		return fmt.Errorf("stop %s: %w", Unit, err)
	}
	if err := in.Systemd.Disable(ctx, Unit); err != nil {
		return fmt.Errorf("disable %s: %w", Unit, err)
	}
	in.say("running nodekeeper undo on the host")
	if err := in.Pkg.Undo(ctx); err != nil {
		return fmt.Errorf("nodekeeper undo: %w", err)
	}
	in.say("removing nodekeeper %s with the host's %s", have, in.Pkg.Name())
	if err := in.Pkg.Remove(ctx); err != nil {
		return fmt.Errorf("%s could not remove nodekeeper: %w", in.Pkg.Name(), err)
	}
	in.say("done: nodekeeper is removed (its configuration files stay)")
	return nil
}

// Ready says whether the host is as Install leaves it: the package file's
// version installed and the unit active (uninstall: nothing installed). The
// version is the install record's when there is one.
func (in *Installer) Ready(ctx context.Context, uninstall bool) error {
	have, err := in.Pkg.Installed(ctx)
	if err != nil {
		return err
	}
	if uninstall {
		if have != "" {
			return fmt.Errorf("nodekeeper %s is still installed", have)
		}
		return nil
	}
	want, err := in.wanted(ctx)
	if err != nil {
		return err
	}
	if have != want {
		return fmt.Errorf("installed %q, want %s", have, want)
	}
	active, _, err := in.Systemd.State(ctx, Unit)
	if err != nil {
		return err
	}
	if active != "active" {
		return errors.New(Unit + " is " + active)
	}
	return nil
}

// wanted is the version Install leaves installed: the record's, else the
// package file's (copied onto the host for the package manager to read).
func (in *Installer) wanted(ctx context.Context) (string, error) {
	if in.Record != "" {
		if b, err := os.ReadFile(in.Record); err == nil && strings.TrimSpace(string(b)) != "" {
			return strings.TrimSpace(string(b)), nil
		}
	}
	file, cleanup, err := in.Host.Stage(in.Package)
	if err != nil {
		return "", err
	}
	defer cleanup()
	return in.Pkg.FileVersion(ctx, file)
}
