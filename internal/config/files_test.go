package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadQuickly fails the test when Load blocks (a named pipe used to wedge
// config validate, start-up and reload).
func loadQuickly(t *testing.T, main string, o Options) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := LoadWith(main, o); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Load blocked")
		return nil
	}
}

func TestLoadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", "dryRun: true\n")
	fifo := filepath.Join(dir, "config.d", "10-fifo.yaml")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	err := loadQuickly(t, main, Options{})
	if want := fifo + ": is not a regular file (a named pipe): refusing it"; err == nil || err.Error() != want {
		t.Fatalf("FIFO in config.d: %v\nwant %s", err, want)
	}
	os.Remove(fifo)

	sock := filepath.Join(dir, "config.d", "20-sock.yaml")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := loadQuickly(t, main, Options{}); err == nil || err.Error() != sock+": is not a regular file (a socket): refusing it" {
		t.Fatalf("socket in config.d: %v", err)
	}
	l.Close()
	os.Remove(sock)

	// The main file itself a FIFO: refused without blocking too.
	mainFifo := filepath.Join(t.TempDir(), "config.yaml")
	if err := syscall.Mkfifo(mainFifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := loadQuickly(t, mainFifo, Options{}); err == nil || err.Error() != mainFifo+": is not a regular file (a named pipe): refusing it" {
		t.Fatalf("FIFO main file: %v", err)
	}
}

func TestLoadDropInLinks(t *testing.T) {
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", "")
	inside := writeFile(t, dir, "config.d/shared/limits.yml", "irq:\n  maxRepairsPerHour: 3\n")
	if err := os.Symlink(inside, filepath.Join(dir, "config.d", "10-limits.yaml")); err != nil {
		t.Fatal(err)
	}
	c, err := Load(main)
	if err != nil || c.IRQ.MaxRepairsPerHour != 3 {
		t.Fatalf("a link inside config.d is followed: %v %+v", err, c.IRQ)
	}
	outside := writeFile(t, t.TempDir(), "evil.yaml", "kubelet:\n  pinning: off\n")
	link := filepath.Join(dir, "config.d", "20-evil.yaml")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	_, err = Load(main)
	if err == nil || !strings.HasPrefix(err.Error(), link+": is a link out of config.d (to ") {
		t.Fatalf("a link out of config.d: %v", err)
	}
}

func TestLoadStrictModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as root and chown them away")
	}
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", "dryRun: true\n")
	drop := writeFile(t, dir, "config.d/10-a.yaml", "dryRun: false\n")
	if _, err := LoadWith(main, Options{StrictModes: true}); err != nil {
		t.Fatalf("root's 0644 files: %v", err)
	}
	if err := os.Chmod(drop, 0o664); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWith(main, Options{StrictModes: true})
	if want := drop + ": refusing: writable by group or others (mode 0664; chmod go-w " + drop + ")"; err == nil || err.Error() != want {
		t.Fatalf("group-writable drop-in: %v\nwant %s", err, want)
	}
	if _, err := LoadWith(main, Options{}); err != nil {
		t.Fatalf("without StrictModes the mode is not judged: %v", err)
	}
	os.Chmod(drop, 0o644)
	if err := os.Chown(main, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith(main, Options{StrictModes: true}); err == nil || !strings.Contains(err.Error(), "refusing: owned by uid 1000, not root") {
		t.Fatalf("main file owned by another user: %v", err)
	}
	os.Chown(main, 0, 0)
	if err := os.Chmod(filepath.Join(dir, "config.d"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith(main, Options{StrictModes: true}); err == nil || !strings.Contains(err.Error(), "config.d: refusing: writable by group or others (mode 0777") {
		t.Fatalf("world-writable config.d: %v", err)
	}
}

func TestWarnings(t *testing.T) {
	if w := Default().Warnings(); len(w) != 0 {
		t.Fatalf("defaults warn: %v", w)
	}
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", "kubelet:\n  unit: sshd.service\n")
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], main+":2: kubelet.unit: \"sshd.service\" does not look like kubelet's service") {
		t.Fatalf("warnings %q", w)
	}
	c.Kubelet.Unit = "kubelet-custom.service"
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("a kubelet unit with another name: %v", w)
	}
}

// A link checked to lead inside config.d and then swapped for a link out
// of it is refused when the file is opened, not followed.
func TestLoadDropInLinkSwapped(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "config.yaml", "")
	inside := writeFile(t, dir, "config.d/shared/limits.yml", "irq:\n  maxRepairsPerHour: 3\n")
	link := filepath.Join(dir, "config.d", "10-limits.yaml")
	if err := os.Symlink(inside, link); err != nil {
		t.Fatal(err)
	}
	files, err := dropIns(filepath.Join(dir, "config.d"), Options{})
	if err != nil || len(files) != 1 {
		t.Fatalf("dropIns: %v %v", files, err)
	}
	outside := writeFile(t, t.TempDir(), "evil.yaml", "kubelet:\n  pinning: off\n")
	if err := os.Remove(inside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, inside); err != nil {
		t.Fatal(err)
	}
	_, err = load(files, Options{})
	if want := link + ": the file it links to was replaced by a link: refusing it"; err == nil || err.Error() != want {
		t.Fatalf("swapped link: %v\nwant %s", err, want)
	}
}

// With StrictModes, a link inside config.d into a subdirectory others may
// write is refused: they could replace the file it names.
func TestLoadStrictModesLinkedDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as root")
	}
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", "")
	inside := writeFile(t, dir, "config.d/shared/limits.yml", "irq:\n  maxRepairsPerHour: 3\n")
	if err := os.Symlink(inside, filepath.Join(dir, "config.d", "10-limits.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith(main, Options{StrictModes: true}); err != nil {
		t.Fatalf("root's subdirectory: %v", err)
	}
	shared := filepath.Dir(inside)
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWith(main, Options{StrictModes: true})
	if want := shared + ": refusing: writable by group or others (mode 0777; chmod go-w " + shared + ")"; err == nil || err.Error() != want {
		t.Fatalf("world-writable linked directory: %v\nwant %s", err, want)
	}
}
