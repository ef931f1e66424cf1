package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Chroot runs the host's own tools inside the host root. The chroot is the
// process's own (the installer image has no chroot binary, nor a shell).
type Chroot struct{ Root string }

// hostPATH is where a host's tools are, in order.
var hostPATH = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Run runs name (a host path, or a name looked up in the host's PATH) with
// args chrooted into the host root and returns its standard output; the
// error carries its standard error.
func (c Chroot) Run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	path := name
	if !strings.HasPrefix(name, "/") {
		path = ""
		for _, d := range hostPATH {
			if fi, err := os.Stat(filepath.Join(c.Root, d, name)); err == nil && !fi.IsDir() {
				path = d + "/" + name
				break
			}
		}
		if path == "" {
			return "", fmt.Errorf("the host has no %s in %s", name, strings.Join(hostPATH, ":"))
		}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = "/" // inside the chroot
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.Root}
	cmd.Env = append([]string{"PATH=" + strings.Join(hostPATH, ":"), "LC_ALL=C"}, env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// Runner runs a host tool (Chroot; a fake in tests).
type Runner interface {
	Run(ctx context.Context, env []string, name string, args ...string) (string, error)
}

// Detect picks the host's package manager: dpkg (Ubuntu, Debian) or rpm
// (Azure Linux, Mariner).
func Detect(h *Host, r Runner) (PackageManager, error) {
	if _, err := os.Stat(h.Path("/usr/bin/dpkg")); err == nil {
		return Dpkg{r}, nil
	}
	if _, err := os.Stat(h.Path("/usr/bin/rpm")); err == nil {
		return RPM{r}, nil
	}
	return nil, errors.New("the host has neither dpkg nor rpm: not a node nodekeeper knows how to install on")
}

// Dpkg is the host's dpkg.
type Dpkg struct{ R Runner }

// Name implements PackageManager.
func (Dpkg) Name() string { return "dpkg" }

// FileVersion implements PackageManager.
func (d Dpkg) FileVersion(ctx context.Context, file string) (string, error) {
	out, err := d.R.Run(ctx, nil, "dpkg-deb", "--field", file, "Version")
	return strings.TrimSpace(out), err
}

// Installed implements PackageManager.
func (d Dpkg) Installed(ctx context.Context) (string, error) {
	out, err := d.R.Run(ctx, nil, "dpkg-query", "--show", "--showformat=${db:Status-Status} ${Version}", "nodekeeper")
	if err != nil {
		return "", nil // dpkg-query fails for a package it never saw
	}
	status, version, _ := strings.Cut(strings.TrimSpace(out), " ")
	if status != "installed" {
		return "", nil
	}
	return version, nil
}

// Newer implements PackageManager with dpkg's own comparison.
func (d Dpkg) Newer(ctx context.Context, a, b string) (bool, error) {
	_, err := d.R.Run(ctx, nil, "dpkg", "--compare-versions", a, "gt", b)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return err == nil, err
}

// Install implements PackageManager: a changed /etc/nodekeeper/config.yaml
// is kept without asking.
func (d Dpkg) Install(ctx context.Context, file string) error {
	_, err := d.R.Run(ctx, []string{"DEBIAN_FRONTEND=noninteractive"}, "dpkg", "--force-confdef", "--force-confold", "--install", file)
	return err
}

// Remove implements PackageManager.
func (d Dpkg) Remove(ctx context.Context) error {
	_, err := d.R.Run(ctx, nil, "dpkg", "--remove", "nodekeeper")
	return err
}

// Undo implements PackageManager.
func (d Dpkg) Undo(ctx context.Context) error {
	_, err := d.R.Run(ctx, nil, "/usr/bin/nodekeeper", "undo")
	return err
}

// RPM is the host's rpm.
type RPM struct{ R Runner }

// Name implements PackageManager.
func (RPM) Name() string { return "rpm" }

// FileVersion implements PackageManager.
func (p RPM) FileVersion(ctx context.Context, file string) (string, error) {
	out, err := p.R.Run(ctx, nil, "rpm", "--query", "--package", "--queryformat", "%{VERSION}-%{RELEASE}", file)
	return strings.TrimSpace(out), err
}

// Installed implements PackageManager.
func (p RPM) Installed(ctx context.Context) (string, error) {
	out, err := p.R.Run(ctx, nil, "rpm", "--query", "--queryformat", "%{VERSION}-%{RELEASE}", "nodekeeper")
	if err != nil {
		return "", nil // "package nodekeeper is not installed"
	}
	return strings.TrimSpace(out), nil
}

// Newer implements PackageManager with rpm's own comparison, rpm.vercmp in
// its embedded Lua (rpm 4.14 and later; Azure Linux 2 and 3 have it). rpm has
// no comparison command, so where that fails any other version counts as
// newer and `rpm --upgrade` itself refuses a downgrade.
func (p RPM) Newer(ctx context.Context, a, b string) (bool, error) {
	if !rpmVersionChars(a) || !rpmVersionChars(b) {
		return a != b, nil
	}
	out, err := p.R.Run(ctx, nil, "rpm", "--eval", fmt.Sprintf(`%%{lua: print(rpm.vercmp("%s", "%s"))}`, a, b))
	switch strings.TrimSpace(out) {
	case "1":
		return true, nil
	case "0", "-1":
		return false, nil
	}
	if ctx.Err() != nil {
		return false, err
	}
	return a != b, nil
}

// rpmVersionChars says whether v holds only what an rpm version-release
// can, so that it can go into a Lua string as it is.
func rpmVersionChars(v string) bool {
	for _, r := range v {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(".~^+_-", r)) {
			return false
		}
	}
	return v != ""
}

// Install implements PackageManager.
func (p RPM) Install(ctx context.Context, file string) error {
	_, err := p.R.Run(ctx, nil, "rpm", "--upgrade", file)
	return err
}

// Remove implements PackageManager.
func (p RPM) Remove(ctx context.Context) error {
	_, err := p.R.Run(ctx, nil, "rpm", "--erase", "nodekeeper")
	return err
}

// Undo implements PackageManager.
func (p RPM) Undo(ctx context.Context) error {
	_, err := p.R.Run(ctx, nil, "/usr/bin/nodekeeper", "undo")
	return err
}
