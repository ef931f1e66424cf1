package install

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type fakePM struct {
	file, installed string
	failInstall     error
	calls           []string
	fileReads       int // FileVersion calls: each stages the package on the host
}

func (f *fakePM) Name() string { return "dpkg" }
func (f *fakePM) FileVersion(context.Context, string) (string, error) {
	f.fileReads++
	return f.file, nil
}
func (f *fakePM) Installed(context.Context) (string, error) { return f.installed, nil }
func (f *fakePM) Newer(_ context.Context, a, b string) (bool, error) {
	return a > b, nil // the fixtures' versions compare as strings
}
func (f *fakePM) Install(context.Context, string) error {
	f.calls = append(f.calls, "install")
	if f.failInstall != nil {
		return f.failInstall
	}
	f.installed = f.file
	return nil
}
func (f *fakePM) Remove(context.Context) error {
	f.calls = append(f.calls, "remove")
	f.installed = ""
	return nil
}
func (f *fakePM) Undo(context.Context) error { f.calls = append(f.calls, "undo"); return nil }

type fakeSD struct {
	active     string
	pid        uint32
	failEnable error
	calls      []string
}

func (f *fakeSD) DaemonReload(context.Context) error {
	f.calls = append(f.calls, "daemon-reload")
	return nil
}
func (f *fakeSD) Enable(context.Context, string) error {
	f.calls = append(f.calls, "enable")
	return f.failEnable
}
func (f *fakeSD) Disable(context.Context, string) error {
	f.calls = append(f.calls, "disable")
	return nil
}
func (f *fakeSD) Start(context.Context, string) error {
	f.calls = append(f.calls, "start")
	f.active, f.pid = "active", f.pid+1
	return nil
}
func (f *fakeSD) Restart(context.Context, string) error {
	f.calls = append(f.calls, "restart")
	f.pid++
	return nil
}
func (f *fakeSD) Stop(context.Context, string) error {
	f.calls = append(f.calls, "stop")
	f.active = "inactive"
	return nil
}
func (f *fakeSD) Reload(context.Context, string) error {
	f.calls = append(f.calls, "reload")
	return nil
}
func (f *fakeSD) State(context.Context, string) (string, uint32, error) {
	return f.active, f.pid, nil
}

type rig struct {
	t        *testing.T
	host     string
	override string
	pm       *fakePM
	sd       *fakeSD
	out      bytes.Buffer
	record   string // the Installer's Record
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, host: t.TempDir(), override: t.TempDir(), pm: &fakePM{file: "1.1"}, sd: &fakeSD{active: "inactive"}}
	if err := os.MkdirAll(filepath.Join(r.host, "var/tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.setOverride("dryRun: true\n")
	return r
}

func (r *rig) setOverride(text string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.override, "50-kubernetes.yaml"), []byte(text), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) hostOverride() string {
	b, _ := os.ReadFile(filepath.Join(r.host, "etc/nodekeeper/config.d/50-kubernetes.yaml"))
	return string(b)
}

func (r *rig) installer() *Installer {
	pkg := filepath.Join(r.t.TempDir(), "nodekeeper.deb")
	if err := os.WriteFile(pkg, []byte("a package"), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return &Installer{Host: &Host{Root: r.host}, Pkg: r.pm, Systemd: r.sd, Out: &r.out, Package: pkg,
		ConfigFrom: r.override, StartTimeout: time.Second, Record: r.record}
}

func (r *rig) run(uninstall bool) error {
	r.pm.calls, r.sd.calls = nil, nil
	r.out.Reset()
	in := r.installer()
	if uninstall {
		return in.Uninstall(r.t.Context())
	}
	return in.Install(r.t.Context())
}

func (r *rig) want(err error, pm, sd []string, says ...string) {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("error %v\n%s", err, r.out.String())
	}
	if !slices.Equal(r.pm.calls, pm) || !slices.Equal(r.sd.calls, sd) {
		r.t.Errorf("package manager %q (want %q), systemd %q (want %q)", r.pm.calls, pm, r.sd.calls, sd)
	}
	for _, s := range says {
		if !strings.Contains(r.out.String(), s) {
			r.t.Errorf("the output does not say %q:\n%s", s, r.out.String())
		}
	}
}

func TestInstallSteps(t *testing.T) {
	r := newRig(t)
	// A fresh node: install, write the override, enable, start.
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "start"},
		"installing nodekeeper 1.1", "wrote /etc/nodekeeper/config.d/50-kubernetes.yaml", "starting nodekeeper.service", "done:")
	if r.hostOverride() != "dryRun: true\n" {
		t.Errorf("override on the host %q", r.hostOverride())
	}
	// The same again: nothing installs, nothing is written, nothing restarts.
	r.want(r.run(false), nil, []string{"enable"}, "is installed already", "the override is up to date", "is active (pid 1)")
	// A changed override: written and the daemon reloaded, not restarted.
	r.setOverride("dryRun: false\n")
	r.want(r.run(false), nil, []string{"enable", "reload"}, "wrote /etc/nodekeeper/config.d/50-kubernetes.yaml", "reloading nodekeeper.service (pid 1)")
	// A newer package: upgraded and the daemon restarted on it.
	r.pm.file = "1.2"
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "restart"}, "upgrading nodekeeper 1.1 to 1.2",
		"restarting nodekeeper.service (pid 1)")
	// An older package is refused and changes nothing.
	r.pm.file = "1.0"
	r.setOverride("dryRun: true\n")
	if err := r.run(false); err == nil || !strings.Contains(err.Error(), "not downgrading") {
		t.Errorf("downgrade: %v", err)
	}
	if len(r.pm.calls) != 0 || len(r.sd.calls) != 0 || r.hostOverride() != "dryRun: false\n" {
		t.Errorf("a refused downgrade changed something: %q %q %q", r.pm.calls, r.sd.calls, r.hostOverride())
	}
}

func TestInstallRefusesABadOverride(t *testing.T) {
	r := newRig(t)
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "start"})
	r.pm.file = "1.2"
	r.setOverride("dryRun: maybe\n")
	err := r.run(false)
	if err == nil || !strings.Contains(err.Error(), "50-kubernetes.yaml:1") || !strings.Contains(err.Error(), "dryRun") {
		t.Fatalf("bad override: %v", err)
	}
	if len(r.pm.calls) != 0 || len(r.sd.calls) != 0 || r.hostOverride() != "dryRun: true\n" {
		t.Errorf("a refused override changed something: %q %q %q", r.pm.calls, r.sd.calls, r.hostOverride())
	}
}

func TestInstallFailuresLeaveTheHostAsItWas(t *testing.T) {
	// The package manager fails midway: the override is not touched.
	r := newRig(t)
	r.pm.failInstall = errors.New("dpkg: error processing package nodekeeper (--install)")
	if err := r.run(false); err == nil || !strings.Contains(err.Error(), "could not install") {
		t.Fatalf("failed install: %v", err)
	}
	if r.hostOverride() != "" || len(r.sd.calls) != 0 {
		t.Errorf("after a failed install: override %q, systemd %q", r.hostOverride(), r.sd.calls)
	}
	// D-Bus refuses: the old override is put back.
	r = newRig(t)
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "start"})
	r.setOverride("dryRun: false\n")
	r.sd.failEnable = errors.New("org.freedesktop.DBus.Error.AccessDenied")
	if err := r.run(false); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("D-Bus refusing: %v", err)
	}
	if r.hostOverride() != "dryRun: true\n" || !strings.Contains(r.out.String(), "put the old override back") {
		t.Errorf("after D-Bus refused: override %q\n%s", r.hostOverride(), r.out.String())
	}
}

func TestUninstallSteps(t *testing.T) {
	r := newRig(t)
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "start"})
	r.want(r.run(true), []string{"undo", "remove"}, []string{"stop", "disable"}, "stopping and disabling", "running nodekeeper undo", "done: nodekeeper is removed")
	r.want(r.run(true), nil, nil, "nodekeeper is not installed: nothing to remove")
}

// TestReadyUsesTheInstallRecord: after an install the readiness probe
// compares with the recorded version and does not copy the package onto the
// host; without a record (a new container, or none kept) it reads the
// package; a failed install leaves no record behind.
func TestReadyUsesTheInstallRecord(t *testing.T) {
	r := newRig(t)
	r.record = filepath.Join(t.TempDir(), "record")
	ready := func() error { return r.installer().Ready(t.Context(), false) }

	if err := ready(); err == nil || !strings.Contains(err.Error(), `installed "", want 1.1`) || r.pm.fileReads != 1 {
		t.Errorf("before the install: %v after %d package reads; want not ready, 1 read", err, r.pm.fileReads)
	}
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "start"})
	if b, err := os.ReadFile(r.record); err != nil || string(b) != "1.1\n" {
		t.Fatalf("the record: %q, %v; want 1.1", b, err)
	}
	r.pm.fileReads = 0
	for range 3 {
		if err := ready(); err != nil {
			t.Errorf("after the install: %v", err)
		}
	}
	if r.pm.fileReads != 0 {
		t.Errorf("with a record the probe read the package %d times", r.pm.fileReads)
	}
	// The host changes under the pod: the record is compared, not trusted.
	r.sd.active = "failed"
	if err := ready(); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("with the unit failed: %v", err)
	}
	r.sd.active = "active"
	r.pm.installed = "1.0"
	if err := ready(); err == nil || !strings.Contains(err.Error(), `installed "1.0", want 1.1`) {
		t.Errorf("with another version installed: %v", err)
	}
	r.pm.installed = "1.1"

	// A failed install takes the record away: not ready on the old one.
	r.pm.file, r.pm.failInstall = "1.2", errors.New("dpkg: error")
	if err := r.run(false); err == nil {
		t.Fatal("the failing install succeeded")
	}
	if _, err := os.Stat(r.record); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed install left the record: %v", err)
	}
	if err := ready(); err == nil || !strings.Contains(err.Error(), "want 1.2") {
		t.Errorf("after a failed upgrade: %v", err)
	}

	// A record that cannot be kept is said and costs only the reads.
	r.pm.failInstall = nil
	r.record = filepath.Join(t.TempDir(), "missing", "record")
	r.want(r.run(false), []string{"install"}, []string{"daemon-reload", "enable", "restart"}, "cannot keep the install record")
	r.pm.fileReads = 0
	if err := ready(); err != nil || r.pm.fileReads != 1 {
		t.Errorf("without a record: %v after %d reads; want ready after 1", err, r.pm.fileReads)
	}
}
