// Package packaging_test checks what ships nodekeeper: the .deb and .rpm that
// `make deb rpm` builds (lintian and rpmlint clean, the same files, a kept
// configuration, maintainer scripts that follow Debian's and RPM's
// conventions), the hardened unit (systemd-analyze security and verify), and
// the image-bake inputs under image/ (the cloud-config passes cloud-init's
// schema; the Packer template's HCL is checked in tools/packer, next to its
// parser), and that the daemon's module graph carries no packaging tool.
//
// Tools that are missing are installed as root (lintian, rpmlint, rpm, the
// Python modules cloud-init needs); without root those tests skip, unless
// NODEKEEPER_REQUIRE_LAYERS names root.
package packaging_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
)

// root is the repository's top directory (the test runs in packaging/).
var root = func() string {
	p, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return p
}()

func repo(rel string) string { return filepath.Join(root, rel) }

// run runs a command and returns its combined output.
func run(t testing.TB, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

var aptMu sync.Mutex

// need makes sure the commands exist, installing the Debian packages pkgs as
// root when one is missing; otherwise the test skips (or fails when the root
// layer is required).
func need(t testing.TB, cmds []string, pkgs ...string) {
	t.Helper()
	missing := func() []string {
		var m []string
		for _, c := range cmds {
			if _, err := exec.LookPath(c); err != nil {
				m = append(m, c)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return
	}
	if os.Geteuid() != 0 {
		layer.Unavailable(t, "root", "%s not installed; as root the test installs %s", strings.Join(missing(), ", "), strings.Join(pkgs, " "))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		layer.Unavailable(t, "root", "%s not installed and no apt-get to install %s", strings.Join(missing(), ", "), strings.Join(pkgs, " "))
	}
	aptInstall(t, pkgs...)
	if m := missing(); len(m) > 0 {
		t.Fatalf("%s still missing after installing %s", strings.Join(m, ", "), strings.Join(pkgs, " "))
	}
}

// aptInstall installs Debian packages without their recommendations; nothing
// they would start is started (policy-rc.d).
func aptInstall(t testing.TB, pkgs ...string) {
	t.Helper()
	aptMu.Lock()
	defer aptMu.Unlock()
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	policy := "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if _, err := run(t, "", env, "apt-get", args...); err != nil {
		if out, err := run(t, "", env, "apt-get", "update"); err != nil {
			t.Fatalf("apt-get update: %v\n%s", err, out)
		}
		if out, err := run(t, "", env, "apt-get", args...); err != nil {
			layer.Unavailable(t, "root", "apt-get install %s failed: %v\n%s", strings.Join(pkgs, " "), err, out)
		}
	}
}

// goCmd is the go command that runs this test (go test sets GOROOT for it), else
// the one on PATH.
func goCmd() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if g := filepath.Join(root, "bin", "go"); fileExists(g) {
			return g
		}
	}
	return "go"
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the packages: not in -short mode")
	}
}

// packages are the .deb and .rpm that `make deb rpm` builds, once per test
// binary, into a directory of their own (the work tree's bin/ and dist/ are
// not touched).
type packages struct {
	deb, rpm string
	dir      string
}

var (
	buildOnce sync.Once
	built     packages
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func buildPackages(t *testing.T) packages {
	t.Helper()
	skipShort(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "nodekeeper-packages-")
		if buildErr != nil {
			return
		}
		built, buildErr = makePackages(t, buildDir, "")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// makePackages runs `make deb rpm` with BIN and DIST under dir; version, when
// set, is the package version (PKG_VERSION).
func makePackages(t testing.TB, dir, version string) (packages, error) {
	p := packages{dir: filepath.Join(dir, "dist")}
	env := []string{"PKG_VERSION=" + version}
	if version == "" {
		env = nil
	}
	out, err := run(t, root, env, "make", "--no-print-directory", "deb", "rpm",
		"BIN="+filepath.Join(dir, "nodekeeper"), "DIST="+p.dir)
	if err != nil {
		return p, fmt.Errorf("make deb rpm: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(p.dir, "nodekeeper_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(p.dir, "nodekeeper-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		return p, fmt.Errorf("make deb rpm made %v and %v, want one of each\n%s", debs, rpms, out)
	}
	p.deb, p.rpm = debs[0], rpms[0]
	return p, nil
}

// debFiles lists the .deb's entries as absolute paths; directories that only
// hold other entries are left out (rpm -qpl lists only what the package owns).
func debFiles(t *testing.T, deb string) []string {
	t.Helper()
	out := mustRun(t, "", nil, "dpkg-deb", "--contents", deb)
	var all []string
	dirs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		name := "/" + strings.TrimPrefix(strings.TrimSuffix(f[5], "/"), "./")
		if name == "/" {
			continue
		}
		if strings.HasPrefix(f[0], "d") {
			dirs[name] = true
		}
		all = append(all, name)
	}
	var files []string
	for _, n := range all {
		if dirs[n] && slices.ContainsFunc(all, func(o string) bool { return strings.HasPrefix(o, n+"/") }) {
			continue
		}
		files = append(files, n)
	}
	sort.Strings(files)
	return files
}

// debOnly are files only the .deb has: Debian tooling, no content.
var debOnly = []string{"/usr/share/lintian/overrides/nodekeeper"}

func TestFileLists(t *testing.T) {
	p := buildPackages(t)
	need(t, []string{"rpm"}, "rpm")
	deb := debFiles(t, p.deb)
	rpmOut := mustRun(t, "", nil, "rpm", "--query", "--list", "--package", p.rpm)
	rpmList := strings.Fields(rpmOut)
	sort.Strings(rpmList)

	want := []string{
		"/etc/nodekeeper/config.d",
		"/etc/nodekeeper/config.yaml",
		"/usr/bin/nodekeeper",
		"/usr/lib/systemd/catalog/nodekeeper.catalog",
		"/usr/lib/systemd/system-generators/nodekeeper-generator",
		"/usr/lib/systemd/system/irqbalance.service.d/nodekeeper.conf",
		"/usr/lib/systemd/system/nodekeeper.service",
		"/usr/share/doc/nodekeeper/README.md",
		"/usr/share/doc/nodekeeper/changelog.gz",
		"/usr/share/doc/nodekeeper/copyright",
		"/usr/share/man/man8/nodekeeper.8.gz",
	}
	if !slices.Equal(rpmList, want) {
		t.Errorf("rpm -qpl:\n%s\nwant:\n%s", strings.Join(rpmList, "\n"), strings.Join(want, "\n"))
	}
	debContent := slices.DeleteFunc(slices.Clone(deb), func(s string) bool { return slices.Contains(debOnly, s) })
	if !slices.Equal(debContent, rpmList) {
		t.Errorf("the packages differ:\ndpkg-deb -c (less %v):\n%s\nrpm -qpl:\n%s", debOnly, strings.Join(debContent, "\n"), strings.Join(rpmList, "\n"))
	}
	for _, f := range debOnly {
		if !slices.Contains(deb, f) {
			t.Errorf("the .deb lacks %s", f)
		}
	}

	// Same bytes for the files both build from the same source.
	x := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--extract", p.deb, x)
	for src, dst := range map[string]string{
		"systemd/nodekeeper.service":                   "/usr/lib/systemd/system/nodekeeper.service",
		"systemd/irqbalance.service.d/nodekeeper.conf": "/usr/lib/systemd/system/irqbalance.service.d/nodekeeper.conf",
		"systemd/nodekeeper.catalog":                   "/usr/lib/systemd/catalog/nodekeeper.catalog",
		"systemd/nodekeeper-generator":                 "/usr/lib/systemd/system-generators/nodekeeper-generator",
		"configs/config.yaml":                          "/etc/nodekeeper/config.yaml",
	} {
		a, _ := os.ReadFile(repo(src))
		b, err := os.ReadFile(filepath.Join(x, dst))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s in the .deb is not %s (%v)", dst, src, err)
		}
	}
	for _, f := range []string{"usr/bin/nodekeeper", "usr/lib/systemd/system-generators/nodekeeper-generator"} {
		if fi, err := os.Stat(filepath.Join(x, f)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("/%s: %v %v, want mode 0755", f, fi, err)
		}
	}
	out := mustRun(t, "", nil, filepath.Join(x, "usr/bin/nodekeeper"), "version")
	if !strings.HasPrefix(out, "nodekeeper ") {
		t.Errorf("nodekeeper version: %q", out)
	}
}

// TestConfigIsKeptOnUpgrade checks the packages' declarations (a dpkg
// conffile, %config(noreplace)) and, as root, a real install, change and
// upgrade with dpkg in a throwaway root (maintainer scripts run outside a
// chroot with DPKG_ROOT set, so they touch only that root) and with rpm.
// TestPackageVersion pins how package.sh turns `git describe` into a package
// version, and that the versions of untagged builds sort below every release
// in dpkg's and rpm's order: an abbreviated hash can be all digits (7742686),
// which taken as a release would block every upgrade to a real one.
func TestPackageVersion(t *testing.T) {
	commits := strings.TrimSpace(mustRun(t, root, nil, "git", "rev-list", "--count", "HEAD"))
	for _, c := range []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"v7", "7"},
		{"abc1234", "0.0.0~git" + commits + ".abc1234"},
		{"7742686", "0.0.0~git" + commits + ".7742686"},
		{"7742686-dirty", "0.0.0~git" + commits + ".7742686.dirty"},
		{"devel", "0.0.0~devel"},
	} {
		out, err := run(t, root, []string{"VERSION=" + c.describe, "PKG_VERSION="}, "packaging/package.sh", "version")
		if got := strings.TrimSpace(out); err != nil || got != c.want {
			t.Errorf("VERSION=%s: %q (%v), want %q", c.describe, got, err, c.want)
		}
	}
	if out, err := run(t, root, []string{"VERSION=not a version", "PKG_VERSION="}, "packaging/package.sh", "version"); err == nil ||
		!strings.Contains(out, "set PKG_VERSION") {
		t.Errorf("an unusable VERSION: %v %q, want a failure naming PKG_VERSION", err, out)
	}

	untagged := "0.0.0~git" + commits + ".7742686"
	if _, err := exec.LookPath("dpkg"); err == nil {
		for _, rel := range []string{"0.0.1", "1.2.3", "99.0.0"} {
			if _, err := run(t, "", nil, "dpkg", "--compare-versions", untagged, "lt", rel); err != nil {
				t.Errorf("dpkg: %s does not sort below %s", untagged, rel)
			}
		}
	}
	if _, err := exec.LookPath("rpm"); err == nil {
		for _, rel := range []string{"0.0.1", "1.2.3", "99.0.0"} {
			expr := fmt.Sprintf(`%%{lua: print(rpm.vercmp(%q, %q))}`, untagged, rel)
			if out := strings.TrimSpace(mustRun(t, "", nil, "rpm", "--eval", expr)); out != "-1" {
				t.Errorf("rpm: vercmp(%s, %s) = %s, want -1", untagged, rel, out)
			}
		}
	}
}

func TestConfigIsKeptOnUpgrade(t *testing.T) {
	p := buildPackages(t)
	need(t, []string{"rpm"}, "rpm")
	x := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--control", p.deb, x)
	conffiles, _ := os.ReadFile(filepath.Join(x, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/nodekeeper/config.yaml" {
		t.Errorf("deb conffiles: %q, want /etc/nodekeeper/config.yaml", conffiles)
	}
	flags := mustRun(t, "", nil, "rpm", "-qp", "--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", p.rpm)
	for _, line := range strings.Split(strings.TrimSpace(flags), "\n") {
		f := strings.Fields(line)
		config := len(f) > 1 && strings.Contains(f[1], "c")
		if f[0] == "/etc/nodekeeper/config.yaml" {
			if !config || !strings.Contains(f[1], "n") {
				t.Errorf("rpm: %s has flags %q, want config noreplace (c, n)", f[0], line)
			}
		} else if config {
			t.Errorf("rpm: %s is a config file", f[0])
		}
	}

	if os.Geteuid() != 0 {
		layer.Unavailable(t, "root", "installing into a throwaway root needs root")
	}
	v2, err := makePackages(t, t.TempDir(), "99.0.0")
	if err != nil {
		t.Fatal(err)
	}
	const local = "\n# changed on this node\n"

	t.Run("deb", func(t *testing.T) {
		dr := t.TempDir()
		for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
			if err := os.MkdirAll(filepath.Join(dr, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dr, "var/lib/dpkg/status"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		dpkg := func(args ...string) string {
			t.Helper()
			a := append([]string{"--root=" + dr, "--force-script-chrootless", "--log=/dev/null"}, args...)
			return mustRun(t, "", nil, "dpkg", a...)
		}
		exists := func(rel string) bool {
			_, err := os.Lstat(filepath.Join(dr, rel))
			return err == nil
		}
		wants := "etc/systemd/system/multi-user.target.wants/nodekeeper.service"

		dpkg("--install", p.deb)
		if !exists(wants) {
			t.Errorf("not enabled after the first install (%s missing)", wants)
		}
		if !exists("var/lib/systemd/catalog/database") {
			t.Errorf("journal catalog not updated after the install")
		}
		appendFile(t, filepath.Join(dr, "etc/nodekeeper/config.yaml"), local)
		if err := os.WriteFile(filepath.Join(dr, "etc/nodekeeper/config.d/50-image.yaml"), []byte("dryRun: true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		dpkg("--install", v2.deb)
		if b, _ := os.ReadFile(filepath.Join(dr, "etc/nodekeeper/config.yaml")); !strings.HasSuffix(string(b), local) {
			t.Errorf("the upgrade did not keep the changed config.yaml")
		}
		if !exists("etc/nodekeeper/config.d/50-image.yaml") || !exists(wants) {
			t.Errorf("the upgrade lost the override or the enablement")
		}
		dpkg("--remove", "nodekeeper")
		if l, _ := os.Readlink(filepath.Join(dr, "etc/systemd/system/nodekeeper.service")); l != "/dev/null" {
			t.Errorf("after remove, the unit is not masked (as dh_installsystemd does): %q", l)
		}
		if exists("usr/bin/nodekeeper") || !exists("etc/nodekeeper/config.yaml") {
			t.Errorf("remove: the binary should go and the configuration stay")
		}
		dpkg("--purge", "nodekeeper")
		for _, f := range []string{wants, "etc/systemd/system/nodekeeper.service", "etc/nodekeeper/config.yaml",
			"var/lib/systemd/deb-systemd-helper-enabled/nodekeeper.service.dsh-also"} {
			if exists(f) {
				t.Errorf("after purge %s is still there", f)
			}
		}
		if !exists("etc/nodekeeper/config.d/50-image.yaml") {
			t.Errorf("purge removed a config.d file the package did not ship")
		}
	})

	t.Run("rpm", func(t *testing.T) {
		// rpm runs scriptlets chrooted in --root, which holds no shell
		// here: the file semantics only (the scriptlets are tested by
		// TestMaintainerScripts).
		rr := t.TempDir()
		rpm := func(args ...string) string {
			t.Helper()
			a := append([]string{"--root=" + rr, "--noscripts", "--nodeps"}, args...)
			return mustRun(t, "", nil, "rpm", a...)
		}
		mustRun(t, "", nil, "rpm", "--root="+rr, "--initdb")
		rpm("--install", p.rpm)
		appendFile(t, filepath.Join(rr, "etc/nodekeeper/config.yaml"), local)
		rpm("--upgrade", v2.rpm)
		if b, _ := os.ReadFile(filepath.Join(rr, "etc/nodekeeper/config.yaml")); !strings.HasSuffix(string(b), local) {
			t.Errorf("the upgrade did not keep the changed config.yaml")
		}
		if q := mustRun(t, "", nil, "rpm", "--root="+rr, "--query", "nodekeeper"); !strings.HasPrefix(q, "nodekeeper-99.0.0-1") {
			t.Errorf("rpm -q after the upgrade: %q", q)
		}
		rpm("--erase", "nodekeeper")
		if _, err := os.Stat(filepath.Join(rr, "etc/nodekeeper/config.yaml.rpmsave")); err != nil {
			t.Errorf("erase did not keep the changed config as .rpmsave: %v", err)
		}
	})
}

func appendFile(t *testing.T, name, s string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// lintTags parses "X: package: tag details" lines of lintian, or
// "package.arch: X: tag details" lines of rpmlint, into severity → tags.
func lintTags(out string, re *regexp.Regexp) map[string][]string {
	tags := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			tags[m[1]] = append(tags[m[1]], m[2]+" "+strings.TrimSpace(m[3]))
		}
	}
	return tags
}

// Warnings kept, and why. A warning not listed here fails the test: explain
// it here or fix it.
var lintianKept = map[string]string{
	// The maintainer scripts serve the .deb and the .rpm. On Debian they use
	// deb-systemd-helper and deb-systemd-invoke (and systemctl only for
	// daemon-reload, which lintian allows); the systemctl calls lintian sees
	// are on the RPM branches ($1 numeric), which a .deb never takes.
	"maintainer-script-calls-systemctl": "systemctl only on the RPM branches of the shared scripts",
}

var rpmlintKept = map[string]string{
	// Go binary as built by `make build` (static, not PIE): the package
	// ships that binary unchanged.
	"position-independent-executable-suggested": "the Go binary of make build is not built as PIE",
	// The unit, its drop-in and the catalog are where systemd reads them.
	"only-non-binary-in-usr-lib": "systemd units and catalogs belong in /usr/lib/systemd",
	// rpmlint 2.4 (Debian 12) compares binaries with man page sections, not
	// names; nodekeeper.8.gz is there (a bug fixed in later rpmlint).
	"no-manual-page-for-binary": "rpmlint 2.4 bug: it matches the man section, not the name",
	// Debian's rpmlint has an empty list of valid licenses; Apache-2.0 is
	// the SPDX identifier Azure Linux and Fedora use.
	"invalid-license": "Debian's rpmlint knows no licenses",
}

func TestLintian(t *testing.T) {
	p := buildPackages(t)
	need(t, []string{"lintian"}, "lintian")
	out, err := run(t, "", nil, "lintian", "--fail-on", "error", "--pedantic", "--display-info", p.deb)
	t.Logf("lintian:\n%s", out)
	tags := lintTags(out, regexp.MustCompile(`^([EWIPX]): \S+: (\S+)(.*)$`))
	if err != nil && len(tags["E"]) == 0 {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	if len(tags["E"]) > 0 {
		t.Errorf("lintian errors: %v", tags["E"])
	}
	for _, w := range tags["W"] {
		if _, ok := lintianKept[strings.Fields(w)[0]]; !ok {
			t.Errorf("lintian warning not explained in lintianKept: %s", w)
		}
	}
}

func TestRpmlint(t *testing.T) {
	p := buildPackages(t)
	need(t, []string{"rpmlint", "rpm"}, "rpmlint", "rpm")
	// rpmlint extracts with `rpm2cpio | cpio -id`, and nfpm's payload names
	// files with absolute paths: as root that cpio writes into / itself. A
	// cpio that strips the leading / keeps the extraction in rpmlint's
	// directory (and gives rpmlint the files to look at).
	wrap := t.TempDir()
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("no cpio")
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s --no-absolute-filenames \"$@\"\n", cpio)
	if err := os.WriteFile(filepath.Join(wrap, "cpio"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + wrap + ":" + os.Getenv("PATH")}
	out, _ := run(t, "", env, "rpmlint", "--config", repo("packaging/rpmlint.toml"), p.rpm)
	t.Logf("rpmlint:\n%s", out)
	tags := lintTags(out, regexp.MustCompile(`^\S+: ([EW]): (\S+)(.*)$`))
	if len(tags["E"]) > 0 {
		t.Errorf("rpmlint errors: %v", tags["E"])
	}
	for _, w := range tags["W"] {
		if _, ok := rpmlintKept[strings.Fields(w)[0]]; !ok {
			t.Errorf("rpmlint warning not explained in rpmlintKept: %s", w)
		}
	}
	if !strings.Contains(out, "0 errors") {
		t.Errorf("rpmlint did not report 0 errors")
	}
}

// TestScriptsArePackaged checks that both packages carry the maintainer
// scripts unchanged, in the right slots.
func TestScriptsArePackaged(t *testing.T) {
	p := buildPackages(t)
	need(t, []string{"rpm"}, "rpm")
	x := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--control", p.deb, x)
	for slot, src := range map[string]string{"postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
		a, _ := os.ReadFile(repo("packaging/scripts/" + src))
		b, err := os.ReadFile(filepath.Join(x, slot))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("deb %s is not %s (%v)", slot, src, err)
		}
	}
	scripts := mustRun(t, "", nil, "rpm", "-qp", "--scripts", p.rpm)
	for _, slot := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, slot) {
			t.Errorf("rpm has no %s:\n%s", slot, scripts)
		}
	}
}

// TestMaintainerScripts runs the scripts with recording stand-ins for
// systemctl, deb-systemd-helper, deb-systemd-invoke, journalctl and
// nodekeeper, with $1 as dpkg and rpm pass it, with and without a running
// systemd (as root, in a mount namespace of their own whose /run says so).
func TestMaintainerScripts(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("this host runs systemd: the stand-ins cannot fake its absence without a mount namespace")
	}
	stubs := t.TempDir()
	logf := filepath.Join(stubs, "calls")
	for _, c := range []string{"systemctl", "deb-systemd-helper", "deb-systemd-invoke", "journalctl", "nodekeeper"} {
		s := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%s\n", c, logf)
		if c == "systemctl" {
			// The scripts' probe of the manager is not logged; it fails where
			// the manager cannot be reached (a chroot from another PID
			// namespace: `nodekeeper install` in a pod).
			s = "#!/bin/sh\n[ \"$1\" = show ] && { [ -n \"$SYSTEMCTL_UNREACHABLE\" ] && exit 1; exit 0; }\n" + s[len("#!/bin/sh\n"):]
		}
		if c == "systemctl" {
			s += "[ \"$2\" = daemon-reload ] && [ -n \"$RELOAD_FAILS\" ] && { echo 'Transport endpoint is not connected' >&2; exit 1; }\n"
		}
		if c == "nodekeeper" {
			s += "[ \"$1\" = undo ] && [ -n \"$UNDO_FAILS\" ] && exit 2\n"
		}
		if err := os.WriteFile(filepath.Join(stubs, c), []byte(s+"exit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	type tc struct {
		script  string
		args    []string
		running bool
		env     []string
		want    []string
	}
	cases := []tc{
		// Debian: first install enables; an upgrade restarts a running daemon.
		{"postinstall.sh", []string{"configure", ""}, false, nil, []string{
			"journalctl --update-catalog", "deb-systemd-helper unmask nodekeeper.service",
			"deb-systemd-helper --quiet was-enabled nodekeeper.service", "deb-systemd-helper enable nodekeeper.service"}},
		{"postinstall.sh", []string{"configure", "1.0.0"}, true, nil, []string{
			"journalctl --update-catalog", "deb-systemd-helper unmask nodekeeper.service",
			"deb-systemd-helper --quiet was-enabled nodekeeper.service", "deb-systemd-helper enable nodekeeper.service",
			"systemctl --system daemon-reload", "deb-systemd-invoke try-restart nodekeeper.service"}},
		// Debian removal: stop, then undo; an upgrade's prerm does nothing.
		{"preremove.sh", []string{"remove"}, true, nil, []string{
			"deb-systemd-invoke stop nodekeeper.service", "nodekeeper undo"}},
		{"preremove.sh", []string{"remove"}, true, []string{"UNDO_FAILS=1"}, []string{
			"deb-systemd-invoke stop nodekeeper.service", "nodekeeper undo"}},
		{"preremove.sh", []string{"remove"}, false, nil, nil},
		// In a pod's chroot the manager is there but unreachable: no
		// systemctl call (the installer talks to systemd over D-Bus).
		{"postinstall.sh", []string{"configure", "1.0.0"}, true, []string{"SYSTEMCTL_UNREACHABLE=1"}, []string{
			"journalctl --update-catalog", "deb-systemd-helper unmask nodekeeper.service",
			"deb-systemd-helper --quiet was-enabled nodekeeper.service", "deb-systemd-helper enable nodekeeper.service"}},
		{"preremove.sh", []string{"remove"}, true, []string{"SYSTEMCTL_UNREACHABLE=1"}, nil},
		// The manager answers the probe, then drops the reload: the
		// package still installs (debhelper's `|| true`), and says so.
		{"postinstall.sh", []string{"configure", "1.0.0"}, true, []string{"RELOAD_FAILS=1"}, []string{
			"journalctl --update-catalog", "deb-systemd-helper unmask nodekeeper.service",
			"deb-systemd-helper --quiet was-enabled nodekeeper.service", "deb-systemd-helper enable nodekeeper.service",
			"systemctl --system daemon-reload", "deb-systemd-invoke try-restart nodekeeper.service"}},
		{"postinstall.sh", []string{"2"}, true, []string{"RELOAD_FAILS=1"}, []string{
			"journalctl --update-catalog", "systemctl --system daemon-reload"}},
		{"preremove.sh", []string{"upgrade", "1.1.0"}, true, nil, nil},
		{"postremove.sh", []string{"remove"}, true, nil, []string{
			"deb-systemd-helper mask nodekeeper.service", "systemctl --system daemon-reload", "journalctl --update-catalog"}},
		{"postremove.sh", []string{"purge"}, false, nil, []string{
			"deb-systemd-helper purge nodekeeper.service", "deb-systemd-helper unmask nodekeeper.service"}},
		{"postremove.sh", []string{"upgrade", "1.1.0"}, true, nil, nil},
		// RPM: $1 = 1 install, 2 upgrade (%post); 0 erase, 1 upgrade (%preun, %postun).
		{"postinstall.sh", []string{"1"}, true, nil, []string{
			"systemctl --no-reload enable nodekeeper.service", "journalctl --update-catalog", "systemctl --system daemon-reload"}},
		{"postinstall.sh", []string{"2"}, true, nil, []string{
			"journalctl --update-catalog", "systemctl --system daemon-reload"}},
		{"preremove.sh", []string{"0"}, true, nil, []string{
			"systemctl --no-reload disable --now nodekeeper.service", "nodekeeper undo"}},
		{"preremove.sh", []string{"1"}, true, nil, nil},
		{"postremove.sh", []string{"0"}, true, nil, []string{
			"systemctl --system daemon-reload", "journalctl --update-catalog"}},
		{"postremove.sh", []string{"1"}, true, nil, []string{
			"systemctl --system daemon-reload", "systemctl try-restart nodekeeper.service"}},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s %s running=%v %v", c.script, strings.Join(c.args, " "), c.running, c.env)
		t.Run(name, func(t *testing.T) {
			os.Remove(logf)
			script := repo("packaging/scripts/" + c.script)
			env := append([]string{"PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin"}, c.env...)
			var out string
			var err error
			if c.running {
				if os.Geteuid() != 0 {
					layer.Unavailable(t, "root", "faking a running systemd needs a mount namespace")
				}
				if _, lerr := exec.LookPath("unshare"); lerr != nil {
					t.Skip("no unshare")
				}
				sh := `mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec sh "$@"`
				args := append([]string{"--mount", "--propagation", "private", "sh", "-c", sh, "sh", script}, c.args...)
				out, err = run(t, "", env, "unshare", args...)
			} else {
				out, err = run(t, "", env, "sh", append([]string{script}, c.args...)...)
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			b, _ := os.ReadFile(logf)
			got := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(b) == 0 {
				got = nil
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("calls:\n%s\nwant:\n%s\noutput: %s", strings.Join(got, "\n"), strings.Join(c.want, "\n"), out)
			}
			if slices.Contains(c.env, "UNDO_FAILS=1") && !strings.Contains(out, "'nodekeeper undo' failed") {
				t.Errorf("a failed undo is not reported: %q", out)
			}
		})
	}
}

// TestShellcheck checks every shell script in the repository: files ending
// in .sh and files whose first line names a shell. The root test layer
// installs shellcheck, so there a missing shellcheck fails the run.
func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		layer.Unavailable(t, "root", "shellcheck is not installed (scripts/test-deps.sh installs it)")
	}
	out, err := run(t, root, nil, "git", "ls-files")
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	var scripts []string
	for _, f := range strings.Fields(out) {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if strings.HasSuffix(f, ".sh") || strings.HasPrefix(first, "#!") && (strings.HasSuffix(first, "sh") || strings.HasSuffix(first, "bash")) {
			scripts = append(scripts, f)
		}
	}
	if len(scripts) < 10 {
		t.Fatalf("found only %d shell scripts: %v", len(scripts), scripts)
	}
	for _, f := range scripts {
		args := []string{"-x", f}
		if strings.HasPrefix(f, "packaging/scripts/") {
			args = []string{"--shell=sh", f} // maintainer scripts run under /bin/sh
		}
		if out, err := run(t, root, nil, "shellcheck", args...); err != nil {
			t.Errorf("%s:\n%s", f, out)
		}
	}
}

var exposureRe = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+) (\S+)`)

// exposure is systemd-analyze security's overall exposure of a unit file.
func exposure(t *testing.T, unit string) (float64, string) {
	t.Helper()
	out, err := run(t, "", nil, "systemd-analyze", "security", "--offline=yes", "--no-pager", unit)
	m := exposureRe.FindStringSubmatch(out)
	if m == nil {
		if err != nil && strings.Contains(out, "offline") {
			t.Skipf("this systemd-analyze has no --offline: %s", strings.TrimSpace(out))
		}
		t.Fatalf("systemd-analyze security %s: %v\n%s", unit, err, out)
	}
	v, _ := strconv.ParseFloat(m[2], 64)
	return v, m[3] + "\n" + out
}

func TestUnitSecurityExposure(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	v, out := exposure(t, repo("systemd/nodekeeper.service"))
	t.Logf("nodekeeper.service: %.1f %s", v, out)
	if v > 2.5 {
		t.Errorf("nodekeeper.service exposure %.1f, want at most 2.5 (OK)", v)
	}
	for _, u := range []string{"/usr/lib/systemd/system/irqbalance.service", "/lib/systemd/system/irqbalance.service"} {
		if _, err := os.Stat(u); err == nil {
			iv, _ := exposure(t, u)
			t.Logf("for comparison, this host's irqbalance.service: %.1f", iv)
			break
		}
	}
	// The settings the daemon's lifecycle depends on stay.
	unit, _ := os.ReadFile(repo("systemd/nodekeeper.service"))
	for _, line := range []string{"Type=notify", "NotifyAccess=main", "WatchdogSec=120s", "Restart=on-failure",
		"Before=kubelet.service", "ExecReload=/usr/bin/nodekeeper config validate", "ExecReload=/bin/kill -HUP $MAINPID",
		"RuntimeDirectory=nodekeeper", "StartLimitBurst=5", "MemoryMax=256M", "TasksMax=64", "LimitNOFILE=1024",
		"NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=CAP_NET_ADMIN",
		"RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6", "IPAddressDeny=any",
		"IPAddressAllow=localhost 169.254.169.254"} {
		if !slices.Contains(strings.Split(string(unit), "\n"), line) {
			t.Errorf("nodekeeper.service lacks %q", line)
		}
	}
}

// generate runs nodekeeper-generator on the sysfs fixture tree sys and
// returns the drop-ins it wrote, by file name.
func generate(t *testing.T, sys string) map[string]string {
	t.Helper()
	out := t.TempDir()
	if o, err := run(t, "", []string{"NODEKEEPER_GENERATOR_SYSFS=" + sys}, "sh", repo("systemd/nodekeeper-generator"),
		out, out+"/early", out+"/late"); err != nil {
		t.Fatalf("nodekeeper-generator: %v\n%s", err, o)
	}
	got := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(out, "nodekeeper.service.d", "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		got[filepath.Base(f)] = string(b)
	}
	return got
}

// sysTree makes a sysfs fixture: the files named, each with its content.
func sysTree(t *testing.T, files map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	for name, data := range files {
		p := filepath.Join(sys, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

// TestGenerator: the generator grants the compact file of every NUMA node
// (never the node directory with nr_hugepages), and the v1 pin's
// capabilities and cpuset tree only where nodekeeper would pin through a v1
// cpuset (kubelet.DetectMode): no cpuset among the cgroup2 root's
// controllers, a v1 cpuset hierarchy mounted.
func TestGenerator(t *testing.T) {
	nodes := map[string]string{
		"devices/system/node/node0/compact":                                 "",
		"devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages": "0\n",
		"devices/system/node/node1/compact":                                 "",
		"devices/system/node/possible":                                      "0-1\n",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		m = maps.Clone(m)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	const compactLine = "ReadWritePaths=-/sys/devices/system/node/node0/compact -/sys/devices/system/node/node1/compact"
	for _, tc := range []struct {
		name    string
		files   map[string]string
		compact bool
		v1      bool
	}{
		{"cgroup v2 with cpuset", with(nodes, "fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n"), true, false},
		{"cgroup v2, cpuset not enabled", with(nodes, "fs/cgroup/cgroup.controllers", "cpu io memory pids\n"), true, false},
		{"hybrid", with(nodes, "fs/cgroup/unified/cgroup.controllers", "", "fs/cgroup/cpuset/cpuset.cpus", "0-3\n"), true, true},
		{"v1 without a cpuset hierarchy", with(nodes, "fs/cgroup/memory/memory.limit_in_bytes", "0\n"), true, false},
		{"no NUMA compact files, hybrid", map[string]string{"devices/system/node/node0/cpulist": "0-3\n",
			"fs/cgroup/cpuset/cpuset.cpus": "0-3\n"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := generate(t, sysTree(t, tc.files))
			c, ok := got["50-node-compact.conf"]
			if ok != tc.compact || ok && !slices.Contains(strings.Split(c, "\n"), compactLine) {
				t.Errorf("50-node-compact.conf (written %v, want %v):\n%s\nwant the line %s", ok, tc.compact, c, compactLine)
			}
			if strings.Contains(c, "hugepages") || strings.Contains(c, "node/node0 ") {
				t.Errorf("50-node-compact.conf grants more than the compact files:\n%s", c)
			}
			v, ok := got["50-cgroup-v1.conf"]
			if ok != tc.v1 {
				t.Errorf("50-cgroup-v1.conf written %v, want %v:\n%s", ok, tc.v1, v)
			}
			if ok {
				lines := strings.Split(v, "\n")
				for _, l := range []string{"[Service]", "CapabilityBoundingSet=CAP_SYS_NICE CAP_DAC_OVERRIDE", "ReadWritePaths=-/sys/fs/cgroup/cpuset"} {
					if !slices.Contains(lines, l) {
						t.Errorf("50-cgroup-v1.conf lacks %q:\n%s", l, v)
					}
				}
			}
			if len(got) > 2 {
				t.Errorf("unexpected drop-ins: %v", slices.Collect(maps.Keys(got)))
			}
		})
	}
}

// TestUnitWithoutLatencyDropIn: the drop-in the unit's comment gives for
// latency.enabled: false is valid and takes the latency measurement's
// privileges away (the exposure falls back to what it was without them).
func TestUnitWithoutLatencyDropIn(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	unit, err := os.ReadFile(repo("systemd/nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	var dropIn []string
	in := false
	for _, l := range strings.Split(string(unit), "\n") {
		switch {
		case strings.HasPrefix(l, "#   /etc/systemd/system/nodekeeper.service.d/50-no-latency.conf"):
			in = true
		case in && strings.HasPrefix(l, "#   "):
			dropIn = append(dropIn, strings.TrimPrefix(l, "#   "))
		case in:
			in = false
		}
	}
	if len(dropIn) < 3 {
		t.Fatalf("the unit's comment has no 50-no-latency.conf drop-in: %q", dropIn)
	}
	dir := t.TempDir()
	u := strings.ReplaceAll(string(unit), "=/usr/bin/nodekeeper ", "=/bin/true ")
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.service"), []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	with, _ := exposure(t, filepath.Join(dir, "nodekeeper.service"))
	if err := os.MkdirAll(filepath.Join(dir, "nodekeeper.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.service.d", "50-no-latency.conf"), []byte(strings.Join(dropIn, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", nil, "systemd-analyze", "verify", "--man=no", filepath.Join(dir, "nodekeeper.service")); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify with the no-latency drop-in: %v\n%s", err, out)
	}
	without, out := exposure(t, filepath.Join(dir, "nodekeeper.service"))
	t.Logf("exposure %.1f with the latency measurement's privileges, %.1f with the no-latency drop-in", with, without)
	if without >= with || strings.Contains(out, "✗ CapabilityBoundingSet=~CAP_BPF") {
		t.Errorf("the no-latency drop-in did not take CAP_BPF away (%.1f → %.1f):\n%s", with, without, out)
	}
}

// TestUnitWithGeneratedDropIns: the unit with what the generator adds on a
// two-node cgroup v1 host (the widest sandbox it makes) passes
// systemd-analyze verify and keeps the exposure at 2.6 or below; the
// capabilities are there only with the drop-in.
func TestUnitWithGeneratedDropIns(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	dir := t.TempDir()
	unit, err := os.ReadFile(repo("systemd/nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart= and ExecReload= executable.
	u := strings.ReplaceAll(string(unit), "=/usr/bin/nodekeeper ", "=/bin/true ")
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.service"), []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	base, _ := exposure(t, filepath.Join(dir, "nodekeeper.service"))
	sys := sysTree(t, map[string]string{"devices/system/node/node0/compact": "", "devices/system/node/node1/compact": "",
		"fs/cgroup/cpuset/cpuset.cpus": "0-3\n"})
	if o, err := run(t, "", []string{"NODEKEEPER_GENERATOR_SYSFS=" + sys}, "sh", repo("systemd/nodekeeper-generator"), dir); err != nil {
		t.Fatalf("nodekeeper-generator: %v\n%s", err, o)
	}
	if out, err := run(t, "", nil, "systemd-analyze", "verify", "--man=no", filepath.Join(dir, "nodekeeper.service")); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify nodekeeper.service + generated drop-ins: %v\n%s", err, out)
	}
	v1, out := exposure(t, filepath.Join(dir, "nodekeeper.service"))
	t.Logf("exposure: %.1f without the generator's drop-ins (cgroup v2), %.1f with them on a cgroup v1 host", base, v1)
	// 2.5 before the latency measurement: its CAP_BPF and bpf(2) add 0.1
	// (v2: 2.2 → 2.3). The no-latency drop-in takes them away again
	// (TestUnitWithoutLatencyDropIn).
	if v1 > 2.6 {
		t.Errorf("nodekeeper.service with the v1 drop-in: exposure %.1f, want at most 2.6\n%s", v1, out)
	}
	if v1 <= base || !strings.Contains(out, "✗ CapabilityBoundingSet=~CAP_SYS_(NICE|RESOURCE)") {
		t.Errorf("systemd-analyze did not read the generated drop-ins (exposure %.1f, without them %.1f):\n%s", v1, base, out)
	}
}

// TestUnitWithDNSDropIn: the drop-in the README gives for the DNS probe
// (the unit allows no cluster DNS address) passes systemd-analyze verify,
// adds the address to the allow list without widening the rest (the
// exposure stays), and is the one the unit's comment shows.
func TestUnitWithDNSDropIn(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	readme, err := os.ReadFile(repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`printf '([^']*)' >/etc/systemd/system/nodekeeper\.service\.d/50-dns\.conf`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md shows no 50-dns.conf drop-in")
	}
	dropin := strings.ReplaceAll(string(m[1]), `\n`, "\n")
	if dropin != "[Service]\nIPAddressAllow=10.0.0.10\n" {
		t.Errorf("the README's DNS drop-in %q: want one IPAddressAllow= line, no reset of the allow list", dropin)
	}
	unit, err := os.ReadFile(repo("systemd/nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "#   /etc/systemd/system/nodekeeper.service.d/50-dns.conf\n#   [Service]\n#   IPAddressAllow=10.0.0.10\n") {
		t.Error("the unit's comment does not show the README's DNS drop-in")
	}
	dir := t.TempDir()
	u := strings.ReplaceAll(string(unit), "=/usr/bin/nodekeeper ", "=/bin/true ")
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.service"), []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	base, _ := exposure(t, filepath.Join(dir, "nodekeeper.service"))
	if err := os.MkdirAll(filepath.Join(dir, "nodekeeper.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.service.d", "50-dns.conf"), []byte(dropin), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", nil, "systemd-analyze", "verify", "--man=no", filepath.Join(dir, "nodekeeper.service")); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify nodekeeper.service + 50-dns.conf: %v\n%s", err, out)
	}
	with, out := exposure(t, filepath.Join(dir, "nodekeeper.service"))
	t.Logf("exposure: %.1f, %.1f with the DNS drop-in", base, with)
	if with > base || with > 2.5 {
		t.Errorf("the DNS drop-in raised the exposure from %.1f to %.1f\n%s", base, with, out)
	}
}

// TestUnitVerify runs systemd-analyze verify, which needs no running systemd:
// on the unit as packaged with ExecStart pointing at the packaged binary (the
// check wants it executable), and on the irqbalance drop-in beside a unit.
// verify exits 0 on unknown keys and bad values too, so any output fails.
func TestUnitVerify(t *testing.T) {
	p := buildPackages(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	x := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--extract", p.deb, x)
	unit, err := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(x, "usr/bin/nodekeeper")
	u := strings.ReplaceAll(string(unit), "=/usr/bin/nodekeeper ", "="+bin+" ") // ExecStart=, ExecReload=
	if err := os.WriteFile(filepath.Join(dir, "nodekeeper.service"), []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", nil, "systemd-analyze", "verify", "--man=no", filepath.Join(dir, "nodekeeper.service")); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify nodekeeper.service: %v\n%s", err, out)
	}

	irq := filepath.Join(dir, "irqbalance.service")
	if err := os.WriteFile(irq, []byte("[Unit]\nDescription=irqbalance\n[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "irqbalance.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	dropin, _ := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/irqbalance.service.d/nodekeeper.conf"))
	if err := os.WriteFile(filepath.Join(dir, "irqbalance.service.d/nodekeeper.conf"), dropin, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", nil, "systemd-analyze", "verify", "--man=no", irq); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify irqbalance.service + drop-in: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^StartLimitBurst=(\d+)$`).Match(dropin) || !bytes.Contains(dropin, []byte("[Unit]")) {
		t.Errorf("the irqbalance drop-in does not raise StartLimitBurst in [Unit]:\n%s", dropin)
	}

	// The man page renders without warnings.
	if _, err := exec.LookPath("man"); err == nil {
		out, _ := run(t, "", []string{"MANWIDTH=80"}, "man", "--warnings", "-l", filepath.Join(x, "usr/share/man/man8/nodekeeper.8.gz"))
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "warning:") || strings.Contains(line, "error:") {
				t.Errorf("man page: %s", line)
			}
		}
	}
}

// --- image/ ---

// The packaging tool and the test-only parsers live in the tools/ module: the
// daemon's module graph lists only what the daemon and its tests use, and
// nfpm's dependencies (go-git, sprig, x/crypto, ...) stay out of it.
func TestRootModuleGraphHasNoPackagingTool(t *testing.T) {
	out := mustRun(t, root, nil, goCmd(), "list", "-m", "all")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		mod := strings.Fields(line)[0]
		for _, banned := range []string{"github.com/goreleaser/", "github.com/go-git/", "github.com/Masterminds/", "github.com/hashicorp/", "k8s.io/", "sigs.k8s.io/"} {
			if strings.HasPrefix(mod, banned) {
				t.Errorf("the root module graph has %s: keep packaging and test-only tools in tools/go.mod", mod)
			}
		}
	}
	gomod, err := os.ReadFile(repo("go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?m)^\s*tool\b`).Match(gomod) {
		t.Errorf("the root go.mod has a tool directive: tools belong in tools/go.mod")
	}
	// package.sh runs nfpm from the tools module; that module must provide it.
	if _, err := run(t, root, nil, goCmd(), "list", "-modfile=tools/go.mod", "-m", "github.com/goreleaser/nfpm/v2"); err != nil {
		t.Errorf("tools/go.mod does not provide nfpm: %v", err)
	}
	if sh, _ := os.ReadFile(repo("packaging/package.sh")); !bytes.Contains(sh, []byte("tool -modfile=tools/go.mod nfpm")) {
		t.Errorf("packaging/package.sh does not run nfpm from tools/go.mod")
	}
}

func TestAnsibleRoleParses(t *testing.T) {
	files, _ := filepath.Glob(repo("image/ansible/roles/nodekeeper/*/main.yml"))
	if len(files) == 0 {
		t.Fatal("no role files")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	tasks, _ := os.ReadFile(repo("image/ansible/roles/nodekeeper/tasks/main.yml"))
	if !bytes.Contains(tasks, []byte("scripts/install.sh")) {
		t.Errorf("the role does not run image/scripts/install.sh")
	}
}

// cloudInit returns a command line that runs `cloud-init schema`: the
// installed cloud-init, or (as root) Debian's cloud-init package unpacked
// into the test cache without installing it (so nothing of it runs at boot),
// with its Python modules installed from Debian.
func cloudInit(t *testing.T) []string {
	t.Helper()
	if p, err := exec.LookPath("cloud-init"); err == nil {
		return []string{p}
	}
	if os.Geteuid() != 0 {
		layer.Unavailable(t, "root", "cloud-init is not installed; as root the test unpacks Debian's cloud-init")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		layer.Unavailable(t, "root", "cloud-init is not installed and there is no apt-get")
	}
	cache := os.Getenv("NODEKEEPER_CACHE")
	if cache == "" {
		cache = "/var/cache/nodekeeper-test"
	}
	dir := filepath.Join(cache, "cloud-init")
	bin := filepath.Join(dir, "root/usr/bin/cloud-init")
	py := filepath.Join(dir, "root/usr/lib/python3/dist-packages")
	aptInstall(t, "python3", "python3-configobj", "python3-jinja2", "python3-jsonpatch", "python3-jsonschema",
		"python3-netifaces", "python3-oauthlib", "python3-requests", "python3-serial", "python3-yaml")
	if _, err := os.Stat(bin); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dl := t.TempDir()
		if _, err := run(t, dl, nil, "apt-get", "download", "cloud-init"); err != nil {
			if out2, err2 := run(t, "", nil, "apt-get", "update"); err2 != nil {
				layer.Unavailable(t, "root", "apt-get update: %v\n%s", err2, out2)
			}
			if out, err := run(t, dl, nil, "apt-get", "download", "cloud-init"); err != nil {
				layer.Unavailable(t, "root", "apt-get download cloud-init: %v\n%s", err, out)
			}
		}
		debs, _ := filepath.Glob(filepath.Join(dl, "cloud-init_*.deb"))
		if len(debs) != 1 {
			t.Fatalf("apt-get download cloud-init left %v", debs)
		}
		tmp := filepath.Join(dir, "root.tmp")
		os.RemoveAll(tmp)
		mustRun(t, "", nil, "dpkg-deb", "--extract", debs[0], tmp)
		os.RemoveAll(filepath.Join(dir, "root"))
		if err := os.Rename(tmp, filepath.Join(dir, "root")); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"env", "PYTHONPATH=" + py, "/usr/bin/python3", bin}
}

func schema(t *testing.T, ci []string, file string) (string, error) {
	t.Helper()
	args := append(slices.Clone(ci[1:]), "schema", "--config-file", file)
	return run(t, "", nil, ci[0], args...)
}

func TestCloudConfig(t *testing.T) {
	file := repo("image/cloud-init/nodekeeper.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("#cloud-config\n")) {
		t.Errorf("%s does not start with #cloud-config", file)
	}
	var cfg struct {
		WriteFiles []struct {
			Path    string `yaml:"path"`
			Content string `yaml:"content"`
		} `yaml:"write_files"`
		Runcmd [][]string `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var override string
	for _, f := range cfg.WriteFiles {
		if strings.HasPrefix(f.Path, "/etc/nodekeeper/config.d/") && strings.HasSuffix(f.Path, ".yaml") {
			override = f.Content
		}
	}
	if override == "" {
		t.Error("no config.d override in write_files")
	}
	if len(cfg.Runcmd) != 1 || len(cfg.Runcmd[0]) != 3 {
		t.Fatalf("runcmd: want one [sh, -c, script], have %v", cfg.Runcmd)
	}
	script := cfg.Runcmd[0][2]
	for _, s := range []string{"nodekeeper config validate", "systemctl enable --now nodekeeper.service", "dpkg", "rpm"} {
		if !strings.Contains(script, s) {
			t.Errorf("runcmd does not %q", s)
		}
	}
	sh := filepath.Join(t.TempDir(), "runcmd.sh")
	if err := os.WriteFile(sh, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", nil, "sh", "-n", sh); err != nil {
		t.Errorf("runcmd script: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := run(t, "", nil, "shellcheck", "--shell=sh", "--exclude=SC1091", sh); err != nil {
			t.Errorf("shellcheck runcmd:\n%s", out)
		}
	}

	// The override is a valid nodekeeper configuration.
	bin := filepath.Join(t.TempDir(), "nodekeeper")
	mustRun(t, root, nil, goCmd(), "build", "-o", bin, "./cmd/nodekeeper")
	conf := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(conf, []byte(override), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", nil, bin, "config", "validate", conf); err != nil {
		t.Errorf("the cloud-init override is not valid: %v\n%s", err, out)
	}

	if testing.Short() {
		t.Skip("cloud-init schema: not in -short mode")
	}
	ci := cloudInit(t)
	out, err := schema(t, ci, file)
	if err != nil || !strings.Contains(out, "Valid cloud-config") {
		t.Errorf("cloud-init schema %s: %v\n%s", file, err, out)
	}
	// The payload form the header describes validates too, and a broken
	// config is caught (the schema check is real).
	withPayload := insertWriteFile(t, string(b), "/var/lib/nodekeeper-install/nodekeeper.deb",
		base64.StdEncoding.EncodeToString([]byte("not really a package")))
	pf := filepath.Join(t.TempDir(), "payload.yaml")
	if err := os.WriteFile(pf, []byte(withPayload), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := schema(t, ci, pf); err != nil || !strings.Contains(out, "Valid cloud-config") {
		t.Errorf("cloud-init schema with a payload: %v\n%s\n%s", err, out, withPayload)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("#cloud-config\nruncmd: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := schema(t, ci, bad); err == nil {
		t.Errorf("cloud-init schema accepted a broken config:\n%s", out)
	}
}

// insertWriteFile adds a base64 write_files entry (the payload form) at the
// top of the write_files list of a cloud-config.
func insertWriteFile(t *testing.T, cfg, path, b64 string) string {
	t.Helper()
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(cfg))
	done := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if !done && line == "write_files:" {
			fmt.Fprintf(&out, "  - path: %s\n    encoding: b64\n    permissions: \"0644\"\n    content: %s\n", path, b64)
			done = true
		}
	}
	if !done {
		t.Fatal("no write_files: line")
	}
	return out.String()
}

// TestInstallInContainer runs image/scripts/install.sh with the .deb in a
// systemd container (the nspawn layer): a first run installs, writes the
// override and enables without starting; a second run changes nothing; a bad
// override is refused and leaves the good one; the hardened unit then starts
// under systemd and reaches active (READY=1); package removal stops it.
func TestInstallInContainer(t *testing.T) {
	p := buildPackages(t)
	nspawn.Require(t)
	c := nspawn.Boot(t, nspawn.Options{
		Name: "nodekeeper-install",
		Binds: []nspawn.Bind{
			{Source: p.dir, Target: "/mnt/dist", ReadOnly: true},
			{Source: repo("image/scripts"), Target: "/mnt/scripts", ReadOnly: true},
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	deb := "/mnt/dist/" + filepath.Base(p.deb)
	install := func(override string) (string, error) {
		t.Helper()
		// nsenter's stderr comes back in the error.
		return c.Exec(ctx, "env", "NODEKEEPER_CONFIG_OVERRIDE="+override, "bash", "/mnt/scripts/install.sh", deb)
	}
	inside := func(args ...string) string {
		t.Helper()
		out, err := c.Exec(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	state := func(verb string) string {
		out, _ := c.Exec(ctx, "systemctl", verb, "nodekeeper.service")
		return strings.TrimSpace(out)
	}
	const override = "dryRun: true\nimds:\n  enabled: false\n"

	out, err := install(override)
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	t.Logf("first run:\n%s", out)
	for _, s := range []string{"installing nodekeeper", "wrote /etc/nodekeeper/config.d/50-image.yaml", "done:"} {
		if !strings.Contains(out, s) {
			t.Errorf("first run does not say %q", s)
		}
	}
	if e, a := state("is-enabled"), state("is-active"); e != "enabled" || a != "inactive" {
		t.Errorf("after install.sh: %s and %s, want enabled and inactive", e, a)
	}
	if got := inside("cat", "/etc/nodekeeper/config.d/50-image.yaml"); got+"\n" != override {
		t.Errorf("50-image.yaml = %q", got)
	}

	out, err = install(override)
	if err != nil {
		t.Fatalf("install.sh again: %v\n%s", err, out)
	}
	for _, s := range []string{"is installed already", "is up to date"} {
		if !strings.Contains(out, s) {
			t.Errorf("second run does not say %q:\n%s", s, out)
		}
	}

	if out, err := install("dryRun: maybe\n"); err == nil {
		t.Errorf("install.sh accepted a bad override:\n%s", out)
	} else if !strings.Contains(err.Error(), "dryRun") {
		t.Errorf("the refusal does not name the bad key: %v", err)
	}
	if got := inside("cat", "/etc/nodekeeper/config.d/50-image.yaml"); got+"\n" != override {
		t.Errorf("a refused override replaced 50-image.yaml: %q", got)
	}

	inside("systemctl", "start", "nodekeeper.service")
	if a := state("is-active"); a != "active" {
		j, _ := c.Exec(ctx, "journalctl", "--no-pager", "-u", "nodekeeper.service")
		t.Fatalf("nodekeeper.service is %s after start:\n%s", a, j)
	}
	inside("dpkg", "--remove", "nodekeeper")
	if a := state("is-active"); a == "active" {
		t.Errorf("nodekeeper.service still active after dpkg --remove")
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
