// Package vm boots a throwaway QEMU virtual machine with a real kernel, for
// tests that need what neither the host nor a container gives: cgroup v2 with
// the cpuset controller (AllowedCPUs enforced), a multi-queue virtio NIC with
// its own queue IRQs, or a package installed on a whole system.
//
// The guest boots from the files scripts/build-vm-image.sh builds (a directory
// with vmlinuz, initrd.img and rootfs.img), named by the environment variable
// NODEKEEPER_VM_IMAGE. The root disk is opened with snapshot=on: every write of
// the guest goes to a temporary overlay and the image is never modified.
//
// A test hands Run a payload: files, among them an executable run.sh, put on a
// small ext4 disk (mkfs.ext4 -d, no loop mount) labelled "payload". Most tests
// give a Script instead: a bash script file of their own (testdata/, where
// shellcheck checks it) with its parameters in Env; it sources guest/lib.sh,
// whose output conventions (KEY=VALUE results, problem= and fail= lines,
// blocks) ParseOutput reads back on the host. In the
// guest, nodekeeper-test-payload.service mounts it read-only at /payload once
// multi-user.target is reached (kubelet, irqbalance and D-Bus are up), runs
// run.sh as root with /payload as its working directory, and writes its output
// and then "PAYLOAD-EXIT <code>" to the second serial port, which QEMU writes
// to a file; then the guest powers off. The first serial port is the console.
//
// The guest has no network unless Options.NICQueues asks for a virtio-net NIC.
// Its other end is a tap device (tap0, HostAddr) in a network namespace that
// exists only for QEMU's lifetime (unshare --net): the guest's traffic never
// reaches the host's network. QEMU runs under TCG (-accel tcg,thread=multi -cpu
// max); /dev/kvm is not used.
//
// One VM runs at a time on a host: Run waits for any other VM started through
// this package, in this process or another, to end.
//
// Only tests use this package.
package vm

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/hostlock"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// EnvImage names the environment variable holding the VM image directory
// (the last line scripts/build-vm-image.sh prints).
const EnvImage = "NODEKEEPER_VM_IMAGE"

// The guest's NIC, when Options.NICQueues > 0. Both ends live only in the
// network namespace made for the VM, so these addresses collide with nothing.
const (
	// HostAddr is the address of tap0, QEMU's end of the link, in the VM's
	// network namespace (prefix length 24). It answers ARP and ping.
	HostAddr = "10.213.0.1"
	// GuestAddr is the address a payload may give GuestNIC
	// (`ip addr add 10.213.0.2/24 dev eth0 && ip link set eth0 up`); the
	// guest's NIC has no address of its own.
	GuestAddr = "10.213.0.2"
	// PrefixLen is the prefix length of HostAddr and GuestAddr.
	PrefixLen = 24
	// GuestNIC is the interface name of the NIC in the guest (net.ifnames=0).
	GuestNIC = "eth0"
)

const (
	layerName      = "vm"
	qemuBinary     = "qemu-system-x86_64"
	defaultCPUs    = 4
	defaultMemory  = 2048
	defaultTimeout = 10 * time.Minute
	// A guest boots to its payload in 12–30 s under TCG; one that has not
	// after defaultBootTimeout hung (a loaded host once left a guest kernel
	// stuck with hung-task reports for 8 minutes, another with a vCPU in a
	// soft lockup from second 22) and is booted once more.
	defaultBootTimeout = 2 * time.Minute
	bootAttempts       = 2
	lockTimeout        = 15 * time.Minute
	pollInterval       = 100 * time.Millisecond
	// poweroffWait bounds the wait for QEMU to exit after PAYLOAD-EXIT.
	poweroffWait = 30 * time.Second
	maxQueues    = 8
	consoleLimit = 1 << 20
	startMarker  = "PAYLOAD-START"
	exitMarker   = "PAYLOAD-EXIT"
)

// Image is a VM image directory as built by scripts/build-vm-image.sh.
type Image struct {
	Dir    string // the directory
	Kernel string // Dir/vmlinuz
	Initrd string // Dir/initrd.img
	Disk   string // Dir/rootfs.img, the root disk (raw ext4), never written
}

// Options tune Run. The zero value (plus a Payload) boots 4 vCPUs with 2 GiB
// and no NIC.
type Options struct {
	// CPUs is the number of vCPUs; 4 when zero.
	CPUs int
	// MemoryMiB is the guest's memory; 2048 when zero.
	MemoryMiB int
	// NICQueues, when > 0, gives the guest a virtio-net NIC (GuestNIC) with
	// that many queue pairs (at most 8; each pair has an input.N and an
	// output.N IRQ), backed by tap0 (HostAddr) in a network namespace of the
	// VM's own. 0 means no NIC at all.
	NICQueues int
	// Payload holds the files of the payload disk, by path relative to its
	// root ("bin/nodekeeper", "nodekeeper_1.0_amd64.deb"). Without Script it
	// must hold run.sh, which is executed, so it starts with a #! line;
	// every file gets mode 0755 and is owned by root. The disk is read-only
	// in the guest: write to /tmp, /run or /output.
	Payload map[string][]byte
	// Script, when set, is the payload's program: the path of a bash script
	// on the host (relative to the test's directory, e.g.
	// "testdata/scenario.sh"), so that shellcheck checks it as the file it
	// is. It runs as /payload/main.sh with Env in its environment, next to
	// lib.sh, this package's guest helpers (guest/lib.sh: the output
	// conventions Output reads, waiting, the NIC's queue IRQs), which it
	// sources. Payload must then not hold run.sh, main.sh, lib.sh or
	// params.env.
	Script string
	// Env are Script's parameters, set in its environment: names of
	// capitals, digits and underscores, values of one line.
	Env map[string]string
	// OutputMiB, when > 0, adds a writable disk of that size, mounted at
	// /output in the guest (run.sh also finds it in $OUTPUT_DIR); the files
	// the payload leaves there come back in Result.Files.
	OutputMiB int
	// Timeout bounds the whole run: boot, payload, power-off (not the wait
	// for another VM to end); 10 min when zero. run.sh itself gets Timeout minus min(Timeout/2, 2 min) in the
	// guest, then exits 124, so a slow payload still reports.
	Timeout time.Duration
	// BootTimeout bounds the time from starting QEMU to the payload
	// starting; 2 min when zero (or half of Timeout, when that is shorter,
	// so that a hung boot is seen before the run's own deadline). A guest
	// that has not started its payload by then is ended and booted once
	// more, with fresh disks, within a new Timeout; the kernel's alarms from
	// the first console are logged.
	BootTimeout time.Duration
	// KernelArgs are appended to the guest kernel's command line.
	KernelArgs []string
}

// Result is what a VM run produced.
type Result struct {
	// ExitCode is run.sh's exit status (124: it ran out of time in the guest;
	// 125: no payload disk; 127: no run.sh), or -1 when the guest never
	// reported one.
	ExitCode int
	// Output is what run.sh wrote to its stdout and stderr, from the second
	// serial port, without the runner's marker lines.
	Output string
	// Console is the guest's console (kernel messages, first serial port),
	// at most its last MiB, followed by anything QEMU itself printed.
	Console string
	// Files are the regular files left in /output, by path relative to it;
	// nil unless Options.OutputMiB was set.
	Files map[string][]byte
	// BootSeconds is the time from starting QEMU to the payload starting.
	BootSeconds float64
	// GuestUptime is the guest's own uptime when the payload started.
	GuestUptime float64
	// Duration is the time from starting QEMU to its exit (of the last
	// boot).
	Duration time.Duration
	// Boots is the number of times QEMU was started: 2 when the first
	// guest did not start its payload within Options.BootTimeout.
	Boots int
}

// Require returns the VM image, or ends the test through layer.Unavailable
// (layer "vm": skipped, or failed when NODEKEEPER_REQUIRE_LAYERS names it)
// when this host cannot boot one: not root, QEMU or mkfs.ext4 missing, or no
// image. /dev/kvm is not needed. With -short it always skips.
func Require(t testing.TB) Image {
	t.Helper()
	if testing.Short() {
		t.Skip("layer vm: a VM boot takes tens of seconds: not in -short mode")
	}
	if uid := os.Geteuid(); uid != 0 {
		layer.Unavailable(t, layerName, "booting a VM needs root (network namespace, tap device; running as uid %d)", uid)
	}
	for _, bin := range []string{qemuBinary, "mkfs.ext4", "debugfs", "unshare", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			layer.Unavailable(t, layerName, "%s not found: run scripts/vm-deps.sh", bin)
		}
	}
	dir := os.Getenv(EnvImage)
	if dir == "" {
		layer.Unavailable(t, layerName,
			"%s is not set: set it to the directory that scripts/build-vm-image.sh prints", EnvImage)
	}
	img := Image{
		Dir:    dir,
		Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"),
		Disk:   filepath.Join(dir, "rootfs.img"),
	}
	for _, f := range []string{img.Kernel, img.Initrd, img.Disk} {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			layer.Unavailable(t, layerName,
				"%s=%s is not a VM image (%s: %v): run scripts/build-vm-image.sh", EnvImage, dir, filepath.Base(f), err)
		}
	}
	return img
}

// Run boots a VM with opts.Payload (see Require for when it skips instead),
// waits until the payload has run and the guest has powered off, and returns
// what it produced. A payload that fails is not an error: its exit code is in
// the Result. The error reports a VM that could not run its payload to the
// end (QEMU failed, the guest never reported, ctx ended, Timeout passed); the
// Result is then still returned, with ExitCode -1 unless the guest reported
// before, and the console and output so far (Run also logs their tails).
// QEMU is ended by its PID when it outlives the run; the network namespace,
// the tap device and the temporary files go with it and with the test.
func Run(t testing.TB, ctx context.Context, opts Options) (*Result, error) {
	t.Helper()
	img := Require(t)
	if err := opts.fill(); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	// Waiting for another VM does not count against opts.Timeout.
	lockCtx, lockCancel := context.WithTimeout(ctx, lockTimeout)
	unlock, err := lockVM(lockCtx)
	lockCancel()
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	defer unlock()
	payload, err := opts.payload()
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	for attempt := 1; ; attempt++ {
		res, err := boot(t, ctx, img, opts, payload, attempt)
		if res != nil {
			res.Boots = attempt
		}
		if !errors.Is(err, errNoBoot) || attempt == bootAttempts {
			return res, err
		}
		t.Logf("vm: the guest did not start its payload within %v (QEMU ended): booting it once more. Kernel alarms on its console:\n%s",
			opts.BootTimeout, kernelAlarms(res.Console))
	}
}

// errNoBoot says the guest did not start its payload within
// Options.BootTimeout: a boot that hung, which is the host's trouble and not
// the payload's, so Run boots once more.
var errNoBoot = errors.New("the payload did not start")

// boot is one run of QEMU for Run: fresh payload and output disks, boot,
// watch, power-off, results.
func boot(t testing.TB, ctx context.Context, img Image, opts Options, payload map[string][]byte, attempt int) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("boot%d", attempt))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	payloadImg := filepath.Join(dir, "payload.img")
	if err := makePayloadDisk(ctx, filepath.Join(dir, "payload"), payloadImg, payload); err != nil {
		return nil, fmt.Errorf("vm: payload disk: %w", err)
	}
	var outputImg string
	if opts.OutputMiB > 0 {
		outputImg = filepath.Join(dir, "output.img")
		if err := makeDisk(ctx, outputImg, "output", "", int64(opts.OutputMiB)<<20); err != nil {
			return nil, fmt.Errorf("vm: output disk: %w", err)
		}
	}
	consoleLog := filepath.Join(dir, "console.log")
	outputLog := filepath.Join(dir, "output.log")
	args := qemuArgs(img, opts, payloadImg, outputImg, consoleLog, outputLog)

	var cmd *exec.Cmd
	if opts.NICQueues > 0 {
		c := netnsCommand(opts.NICQueues, args)
		cmd = exec.Command(c[0], c[1:]...)
	} else {
		cmd = exec.Command(qemuBinary, args...)
	}
	cmd.Dir = dir
	// QEMU keeps the root disk's snapshot overlay in TMPDIR (deleted at once,
	// but counted against that file system until QEMU exits).
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var qemuOut tailBuffer
	qemuOut.limit = 64 << 10
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	// Own process group: a ^C at the terminal reaches the test, not QEMU. If
	// the test process dies, QEMU dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	res := &Result{ExitCode: -1}
	start := time.Now()
	runtime.LockOSThread() // Pdeathsig follows the thread that forks
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("vm: start %s: %w", cmd.Path, err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()

	runErr := watch(ctx, res, start, opts.BootTimeout, outputLog, done)
	exited := false
	if runErr == nil {
		// The guest powers off after PAYLOAD-EXIT.
		select {
		case <-done:
			exited = true
		case <-time.After(poweroffWait):
			t.Logf("vm: QEMU (pid %d) still running %v after the payload ended: ending it", pid, poweroffWait)
		}
	}
	if !exited {
		stopQEMU(cmd.Process, done)
	}
	<-done
	res.Duration = time.Since(start)

	console, _ := readTail(consoleLog, consoleLimit)
	res.Console = console
	if s := strings.TrimSpace(qemuOut.String()); s != "" {
		res.Console += "\n--- QEMU ---\n" + s + "\n"
	}
	raw, _ := os.ReadFile(outputLog)
	res.Output, _, _, _ = splitOutput(string(raw))

	if runErr == nil && exited && waitErr != nil {
		// QEMU exits 0 after a guest power-off; anything else is worth a note.
		t.Logf("vm: QEMU (pid %d) exited after the payload: %v", pid, waitErr)
	}
	if runErr == nil && outputImg != "" {
		files, err := readOutputDisk(outputImg, filepath.Join(dir, "output"))
		if err != nil {
			runErr = fmt.Errorf("read the output disk: %w", err)
		}
		res.Files = files
	}
	if runErr != nil {
		if waitErr != nil {
			runErr = fmt.Errorf("%w (QEMU: %v)", runErr, waitErr)
		}
		t.Logf("vm: run failed after %v: %v\n--- kernel alarms ---\n%s--- console (tail) ---\n%s--- payload output (tail) ---\n%s",
			res.Duration.Round(time.Millisecond), runErr, kernelAlarms(res.Console), lastLines(res.Console, 40), lastLines(res.Output, 40))
		return res, fmt.Errorf("vm: %w", runErr)
	}
	t.Logf("vm: %d vCPUs, %d NIC queue pairs: payload started %.1f s after QEMU (guest uptime %.1f s), exit %d, VM gone after %v",
		opts.CPUs, opts.NICQueues, res.BootSeconds, res.GuestUptime, res.ExitCode, res.Duration.Round(100*time.Millisecond))
	return res, nil
}

func (o *Options) fill() error {
	if o.CPUs == 0 {
		o.CPUs = defaultCPUs
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = defaultMemory
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = min(defaultBootTimeout, o.Timeout/2)
	}
	switch {
	case o.CPUs < 1 || o.CPUs > 64:
		return fmt.Errorf("CPUs %d: want 1..64", o.CPUs)
	case o.MemoryMiB < 256:
		return fmt.Errorf("MemoryMiB %d: want at least 256", o.MemoryMiB)
	case o.NICQueues < 0 || o.NICQueues > maxQueues:
		return fmt.Errorf("NICQueues %d: want 0..%d", o.NICQueues, maxQueues)
	case o.OutputMiB < 0:
		return fmt.Errorf("OutputMiB %d is negative", o.OutputMiB)
	case o.Timeout < 0:
		return fmt.Errorf("negative Timeout %v", o.Timeout)
	case o.BootTimeout < 0 || o.BootTimeout > o.Timeout:
		return fmt.Errorf("BootTimeout %v: want 0..Timeout (%v)", o.BootTimeout, o.Timeout)
	}
	if o.Script == "" {
		if len(o.Env) > 0 {
			return errors.New("option Env is set without a Script")
		}
		if _, ok := o.Payload["run.sh"]; !ok {
			return errors.New("the payload has no run.sh")
		}
	} else {
		for _, name := range []string{"run.sh", "main.sh", "lib.sh", "params.env"} {
			if _, ok := o.Payload[name]; ok {
				return fmt.Errorf("payload file %s: the name is taken by Script", name)
			}
		}
		for k, v := range o.Env {
			if !envName.MatchString(k) || strings.ContainsAny(v, "\n\r\x00") {
				return fmt.Errorf("option Env %q=%q: want a NAME of capitals, digits and underscores and a value of one line", k, v)
			}
		}
	}
	for name := range o.Payload {
		if !validName(name) {
			return fmt.Errorf("payload file name %q: want a clean relative path", name)
		}
	}
	for _, a := range o.KernelArgs {
		if a == "" || strings.ContainsAny(a, " \t\n") {
			return fmt.Errorf("kernel argument %q: want one non-empty word", a)
		}
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

//go:embed guest/run.sh guest/lib.sh
var guest embed.FS

// payload returns the files of the payload disk: Payload, plus with a
// Script the script as main.sh, the runner, the helpers and the parameters.
func (o *Options) payload() (map[string][]byte, error) {
	if o.Script == "" {
		return o.Payload, nil
	}
	files := maps.Clone(o.Payload)
	if files == nil {
		files = map[string][]byte{}
	}
	script, err := os.ReadFile(o.Script)
	if err != nil {
		return nil, fmt.Errorf("the payload's script: %w", err)
	}
	files["main.sh"] = script
	for _, name := range []string{"run.sh", "lib.sh"} {
		if files[name], err = guest.ReadFile("guest/" + name); err != nil {
			return nil, err
		}
	}
	files["params.env"] = envFile(o.Env)
	return files, nil
}

// envFile is params.env: one NAME=VALUE a line, sorted by name, read by
// guest/run.sh without any quoting.
func envFile(env map[string]string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	return b.Bytes()
}

func validName(name string) bool {
	return name != "" && !filepath.IsAbs(name) && filepath.Clean(name) == name &&
		name != "." && !strings.HasPrefix(name, "../") && name != ".."
}

// payloadTimeout is run.sh's time limit in the guest.
func payloadTimeout(total time.Duration) time.Duration {
	return total - min(total/2, 2*time.Minute)
}

func lockVM(ctx context.Context) (func(), error) {
	return hostlock.Acquire(ctx, "vm", 200*time.Millisecond)
}

// makePayloadDisk writes files below dir and makes an ext4 image of them.
func makePayloadDisk(ctx context.Context, dir, img string, files map[string][]byte) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	var total int64
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o755); err != nil { // not reduced by the umask
			return err
		}
		// Data rounded up to blocks, plus an inode's share.
		total += (int64(len(data))+4095)/4096*4096 + 4096
	}
	// Room for the file system's own metadata (no journal: it is read-only).
	size := max(total+total/8+(8<<20), 16<<20)
	size = (size + (1 << 20) - 1) &^ ((1 << 20) - 1)
	return makeDisk(ctx, img, "payload", dir, size)
}

// makeDisk makes a sparse ext4 image of size bytes labelled label, filled
// from the directory from unless it is empty.
func makeDisk(ctx context.Context, img, label, from string, size int64) error {
	f, err := os.OpenFile(img, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	args := []string{"-q", "-F", "-L", label, "-E", "root_owner=0:0"}
	if from != "" {
		args = append(args, "-O", "^has_journal", "-d", from)
	}
	args = append(args, img)
	out, err := exec.CommandContext(ctx, "mkfs.ext4", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func qemuArgs(img Image, opts Options, payloadImg, outputImg, consoleLog, outputLog string) []string {
	cmdline := []string{
		"console=ttyS0", "root=/dev/vda", "rw", "rootfstype=ext4",
		// eth0 rather than a name from the PCI slot.
		"net.ifnames=0",
		// A panic reboots, which ends QEMU (-no-reboot) at once.
		"panic=-1",
		// The root disk is a fresh snapshot each time.
		"fsck.mode=skip",
		"nodekeeper.payload_timeout=" + strconv.Itoa(int(payloadTimeout(opts.Timeout).Seconds())),
	}
	if outputImg != "" {
		cmdline = append(cmdline, "nodekeeper.output=1")
	}
	cmdline = append(cmdline, opts.KernelArgs...)
	args := []string{
		"-name", "nodekeeper-test",
		// No default devices: above all no default NIC, which would be user-mode
		// networking onto the host's network.
		"-nodefaults", "-no-user-config",
		"-display", "none", "-monitor", "none",
		"-no-reboot",
		"-accel", "tcg,thread=multi", "-cpu", "max",
		"-smp", strconv.Itoa(opts.CPUs), "-m", strconv.Itoa(opts.MemoryMiB),
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", strings.Join(cmdline, " "),
		// vda: the root disk; guest writes go to a temporary overlay.
		"-drive", "file=" + driveFile(img.Disk) + ",if=virtio,format=raw,snapshot=on,cache=unsafe",
		// vdb: the payload.
		"-drive", "file=" + driveFile(payloadImg) + ",if=virtio,format=raw,readonly=on",
	}
	if outputImg != "" {
		// vdc: the output disk, written for real.
		args = append(args, "-drive", "file="+driveFile(outputImg)+",if=virtio,format=raw,cache=unsafe")
	}
	if n := opts.NICQueues; n > 0 {
		netdev := "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off,queues=" + strconv.Itoa(n)
		device := "virtio-net-pci,netdev=n0"
		if n > 1 {
			// One MSI-X vector per queue, one for config changes, one spare.
			device += ",mq=on,vectors=" + strconv.Itoa(2*n+2)
		}
		args = append(args, "-netdev", netdev, "-device", device)
	}
	return append(args,
		"-serial", "file:"+consoleLog, // ttyS0: the console
		"-serial", "file:"+outputLog, // ttyS1: the payload's output
	)
}

// driveFile escapes a path for a -drive option (a comma is doubled).
func driveFile(p string) string { return strings.ReplaceAll(p, ",", ",,") }

//go:embed netns.sh
var netnsScript string

// netnsCommand is the command that runs QEMU with args in a network
// namespace of its own, with tap0 (HostAddr) made for it by netns.sh.
func netnsCommand(queues int, args []string) []string {
	return append([]string{"unshare", "--net", "--", "/bin/sh", "-c", netnsScript, "sh",
		strconv.Itoa(queues), HostAddr + "/" + strconv.Itoa(PrefixLen), qemuBinary}, args...)
}

var (
	startLine = regexp.MustCompile(`(?m)^` + startMarker + ` uptime=([0-9.]+)\r?\n`)
	exitLine  = regexp.MustCompile(`(?m)^` + exitMarker + ` ([0-9]+)\r?\n`)
)

// splitOutput takes the raw second serial port apart: the payload's output
// (between the start marker line and the last exit marker line), the guest's
// uptime at the start (-1 before the start marker), and whether the exit
// marker came, with the exit code.
func splitOutput(raw string) (out string, uptime float64, exited bool, code int) {
	uptime, code = -1, -1
	if m := startLine.FindStringSubmatchIndex(raw); m != nil {
		uptime, _ = strconv.ParseFloat(raw[m[2]:m[3]], 64)
		raw = raw[m[1]:]
	}
	if all := exitLine.FindAllStringSubmatchIndex(raw, -1); len(all) > 0 {
		m := all[len(all)-1]
		code, _ = strconv.Atoi(raw[m[2]:m[3]])
		exited = true
		raw = raw[:m[0]]
	}
	return strings.ReplaceAll(raw, "\r\n", "\n"), uptime, exited, code
}

// watch polls the payload's output until the exit marker, QEMU's exit, or the
// end of ctx.
func watch(ctx context.Context, res *Result, start time.Time, bootTimeout time.Duration, outputLog string, done <-chan struct{}) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	bootDeadline := time.NewTimer(bootTimeout)
	defer bootDeadline.Stop()
	check := func() bool {
		raw, err := os.ReadFile(outputLog)
		if err != nil {
			return false
		}
		_, uptime, exited, code := splitOutput(string(raw))
		if uptime >= 0 && res.BootSeconds == 0 {
			res.BootSeconds = time.Since(start).Seconds()
			res.GuestUptime = uptime
		}
		if exited {
			res.ExitCode = code
		}
		return exited
	}
	for {
		select {
		case <-done:
			if check() {
				return nil
			}
			return errors.New("QEMU exited before the payload reported its exit code")
		case <-ctx.Done():
			if check() {
				return nil
			}
			if res.BootSeconds == 0 {
				return fmt.Errorf("the payload did not start: %w", context.Cause(ctx))
			}
			return fmt.Errorf("the payload did not finish: %w", context.Cause(ctx))
		case <-bootDeadline.C:
			if check() {
				return nil
			}
			if res.BootSeconds == 0 {
				return fmt.Errorf("%w within %v", errNoBoot, bootTimeout)
			}
		case <-tick.C:
			if check() {
				return nil
			}
		}
	}
}

// stopQEMU ends QEMU by its PID: SIGTERM (QEMU exits at once, the guest does
// not shut down), SIGKILL after 5 s.
func stopQEMU(p *os.Process, done <-chan struct{}) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.Kill()
	}
}

// readOutputDisk copies the files of the output disk image into dir (debugfs
// rdump: no mount) and returns the regular ones by relative path.
func readOutputDisk(img, dir string) (map[string][]byte, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	out, err := exec.Command("debugfs", "-R", "rdump / "+dir, img).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("debugfs rdump: %w: %s", err, strings.TrimSpace(string(out)))
	}
	files := map[string][]byte{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() && rel == "lost+found" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = data
		return nil
	})
	return files, err
}

// readTail reads at most the last limit bytes of the file name.
func readTail(name string, limit int64) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-limit, 0)
	buf := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && n < len(buf) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.ReplaceAll(string(buf[:n]), "\r\n", "\n"), nil
}

// lastLines returns the last n lines of s, ending with a newline.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.limit; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// alarmLine matches the first line of the kernel's reports of a stuck guest.
var alarmLine = regexp.MustCompile(`INFO: task .* blocked for more than|BUG:|watchdog: BUG|rcu: INFO|rcu_sched self-detected stall|soft lockup|hard LOCKUP|Out of memory|Kernel panic|I/O error|EXT4-fs error|Call Trace:`)

// kernelAlarms returns the console lines that report a stuck or failing
// guest kernel (hung tasks, RCU stalls, lockups, I/O errors), each with the
// line after it, at most maxAlarms of them; "(none)" when there are none.
// The tail of a console that hung shows only the end of the last stack
// trace; these lines say what the kernel was complaining about.
func kernelAlarms(console string) string {
	const maxAlarms = 20
	lines := strings.Split(console, "\n")
	var b strings.Builder
	n := 0
	for i, l := range lines {
		if !alarmLine.MatchString(l) || strings.Contains(l, "Call Trace:") && n > 0 {
			continue
		}
		b.WriteString(l + "\n")
		if i+1 < len(lines) {
			b.WriteString(lines[i+1] + "\n")
		}
		if n++; n == maxAlarms {
			break
		}
	}
	if n == 0 {
		return "(none)\n"
	}
	return b.String()
}
