package install_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
)

// buildDeb builds the .deb with the repository's make target.
func buildDeb(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "deb", "BIN="+filepath.Join(dir, "nodekeeper"), "DIST="+filepath.Join(dir, "dist"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "dist", "nodekeeper_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	return debs[0]
}

// TestInstallerOnARealSystemdHost runs the real installer from the host
// against a booted systemd container through its root as a pod sees a
// hostPath mount (/proc/<leader>/root) and its D-Bus socket there: the unit
// ends up active; a second run restarts nothing (same MainPID); a changed
// override reloads (same MainPID, the daemon says it reloaded); --uninstall
// removes the package and the kubelet pin.
func TestInstallerOnARealSystemdHost(t *testing.T) {
	nspawn.Require(t)
	bin := nkbin.Build(t)
	deb := buildDeb(t)
	c := nspawn.Boot(t, nspawn.Options{Name: "nk-installer"})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	override := t.TempDir()
	setOverride := func(text string) {
		if err := os.WriteFile(filepath.Join(override, "50-kubernetes.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	record := filepath.Join(t.TempDir(), "install.version")
	installer := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"install", "--host-root", c.Root(), "--once", "--record", record}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	show := func(unit, prop string) string {
		out, _ := c.Exec(ctx, "systemctl", "show", "-p", prop, "--value", unit)
		return strings.TrimSpace(out)
	}
	// The stand-in kubelet is pinned statically, so that --uninstall has a
	// pin of nodekeeper's to take away.
	setOverride("imds:\n  enabled: false\nkubelet:\n  pinning: static\n  cpus: \"0\"\n")

	out, err := installer("--package", deb, "--config-from", override)
	t.Logf("first run:\n%s", out)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if a, e := show("nodekeeper.service", "ActiveState"), show("nodekeeper.service", "UnitFileState"); a != "active" || e != "enabled" {
		t.Fatalf("after the first run: %s, %s; want active, enabled", a, e)
	}
	pid := show("nodekeeper.service", "MainPID")
	deadline := time.Now().Add(30 * time.Second)
	for show("kubelet.service", "AllowedCPUs") != "0" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := show("kubelet.service", "AllowedCPUs"); got != "0" {
		t.Errorf("kubelet's AllowedCPUs %q after the install, want 0 (the static pin)", got)
	}
	if ready, err := installer("--package", deb, "--ready"); err != nil {
		t.Errorf("--ready after the install: %v\n%s", err, ready)
	}
	v, _ := c.Exec(ctx, "dpkg-query", "--show", "--showformat=${Version}", "nodekeeper")
	if b, err := os.ReadFile(record); err != nil || strings.TrimSpace(string(b)) != strings.TrimSpace(v) || v == "" {
		t.Errorf("install record after the install: %q, %v; want the installed version %q", b, err, v)
	}

	out, err = installer("--package", deb, "--config-from", override)
	if err != nil || !strings.Contains(out, "is installed already") || !strings.Contains(out, "the override is up to date") {
		t.Errorf("second run: %v\n%s", err, out)
	}
	if got := show("nodekeeper.service", "MainPID"); got != pid {
		t.Errorf("second run restarted the daemon: MainPID %s, then %s", pid, got)
	}

	setOverride("imds:\n  enabled: false\nkubelet:\n  pinning: static\n  cpus: \"0\"\nsymptoms:\n  window: 20s\n")
	out, err = installer("--package", deb, "--config-from", override)
	if err != nil || !strings.Contains(out, "reloading nodekeeper.service") {
		t.Errorf("changed override: %v\n%s", err, out)
	}
	if got := show("nodekeeper.service", "MainPID"); got != pid {
		t.Errorf("a changed override restarted the daemon: MainPID %s, then %s", pid, got)
	}
	if j, _ := c.Exec(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", "nodekeeper.service"); !strings.Contains(j, "Reload") && !strings.Contains(j, "reload") {
		t.Errorf("the daemon's journal shows no reload:\n%s", j)
	}

	setOverride("dryRun: maybe\n")
	if out, err := installer("--package", deb, "--config-from", override); err == nil || !strings.Contains(out, "refused") {
		t.Errorf("a bad override was not refused: %v\n%s", err, out)
	}

	out, err = installer("--uninstall")
	t.Logf("uninstall:\n%s", out)
	if err != nil {
		t.Fatalf("--uninstall: %v", err)
	}
	if st, _ := c.Exec(ctx, "dpkg-query", "--show", "--showformat=${db:Status-Status}", "nodekeeper"); strings.TrimSpace(st) == "installed" {
		t.Errorf("the package is still installed after --uninstall")
	}
	if got := show("kubelet.service", "AllowedCPUs"); got != "" {
		t.Errorf("kubelet's AllowedCPUs %q after --uninstall, want none", got)
	}
	if ready, err := installer("--uninstall", "--ready"); err != nil {
		t.Errorf("--uninstall --ready: %v\n%s", err, ready)
	}
}
