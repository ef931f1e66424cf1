package packaging_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// TestArm64BuildRunsUnderEmulation: what `make image` builds for Azure's Arm
// nodes is an AArch64 program, its packages say arm64 / aarch64 and carry it,
// and that program, run by qemu's user-mode emulator, reads a node and
// judges it like the amd64 one: a healthy spread is ok, a collapsed one a
// problem, and the eBPF measurement it cannot have there is unknown with the
// reason, not a crash.
func TestArm64BuildRunsUnderEmulation(t *testing.T) {
	skipShort(t)
	need(t, []string{"make", "git", "dpkg-deb", "rpm"}, "make", "git", "dpkg", "rpm")
	need(t, []string{"qemu-aarch64"}, "qemu-user")
	dist := t.TempDir()
	mustRun(t, root, nil, "make", "--no-print-directory", "image", "IMAGE_ARCHES=arm64", "DIST="+dist, "GO="+goCmd())
	dir := filepath.Join(dist, "image", "arm64")

	bin := filepath.Join(dir, "nodekeeper")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("%s is built for %v, want AArch64", bin, f.Machine)
	}
	f.Close()

	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("packages %v %v, want one .deb and one .rpm", debs, rpms)
	}
	if a := strings.TrimSpace(mustRun(t, "", nil, "dpkg-deb", "--field", debs[0], "Architecture")); a != "arm64" {
		t.Errorf("the .deb's Architecture is %q, want arm64", a)
	}
	if a := strings.TrimSpace(mustRun(t, "", nil, "rpm", "-qp", "--queryformat", "%{ARCH}", rpms[0])); a != "aarch64" {
		t.Errorf("the .rpm's arch is %q, want aarch64", a)
	}
	// Run the copy the .deb carries, not the build output beside it.
	x := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--extract", debs[0], x)
	pkgBin := filepath.Join(x, "usr", "bin", "nodekeeper")
	if a, b := fileBytes(t, pkgBin), fileBytes(t, bin); a != b {
		t.Errorf("the .deb's /usr/bin/nodekeeper is not the arm64 build")
	}

	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command("qemu-aarch64", append([]string{pkgBin}, args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("qemu-aarch64 %s: %v", strings.Join(args, " "), err)
		}
		if strings.Contains(string(out), "panic:") || strings.Contains(string(out), "SIGSEGV") {
			t.Errorf("nodekeeper %s crashed:\n%s", strings.Join(args, " "), out)
		}
		return string(out), code
	}
	if out, code := run("version"); code != 0 || !strings.HasPrefix(out, "nodekeeper ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	if out, code := run("config", "validate", filepath.Join(x, "etc", "nodekeeper", "config.yaml")); code != 0 {
		t.Errorf("config validate of the packaged config: exit %d\n%s", code, out)
	}

	node := func(skewed bool) []string {
		n := hostfixture.NIC{Name: "eth0", Driver: "mlx5_core", Queues: 16, NUMANode: -1}
		if skewed {
			n.Affinity = func(int) (cpuset.Set, cpuset.Set) { return cpuset.New(0), cpuset.New(0) }
		}
		p := hostfixture.Host{CPUs: 16, NICs: []hostfixture.NIC{n}}.MustBuild(t)
		return []string{"--path.procfs", p.Proc, "--path.sysfs", p.Sys, "--path.cgroupfs", p.Cgroup, "--path.rootfs", p.Root}
	}
	if out, code := run(append([]string{"check", "irq"}, node(false)...)...); code != 0 {
		t.Errorf("check irq on a healthy node: exit %d, want 0 (ok)\n%s", code, out)
	}
	if out, code := run(append([]string{"check", "irq"}, node(true)...)...); code != 1 {
		t.Errorf("check irq with every queue on CPU 0: exit %d, want 1 (problem)\n%s", code, out)
	}
	if out, code := run("check", "latency"); code != 2 || !strings.Contains(out, "unavailable") {
		t.Errorf("check latency under emulation: exit %d, want 2 (unknown) with the reason\n%s", code, out)
	}
}

func fileBytes(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
