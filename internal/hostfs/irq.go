package hostfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// Affinity is where an IRQ is requested to go and where the kernel delivers it.
type Affinity struct {
	Requested cpuset.Set // smp_affinity
	Effective cpuset.Set // effective_affinity; empty when the kernel has no such file
}

// IRQReader reads per-IRQ files with reusable path and data buffers: a
// check reads three small files per NIC queue IRQ and should not allocate for
// each. It is not safe for concurrent use; make one per goroutine.
type IRQReader struct {
	fs   *FS
	buf  []byte
	path []byte
}

// NewIRQReader returns a reader over f.
func (f *FS) NewIRQReader() *IRQReader {
	return &IRQReader{fs: f, buf: make([]byte, 0, 512), path: make([]byte, 0, 128)}
}

// read reads root/dir/<irq>/file into r.buf.
func (r *IRQReader) read(root, dir string, irq int, file string) error {
	p := append(r.path[:0], root...)
	p = append(p, '/')
	p = append(p, dir...)
	p = append(p, '/')
	p = strconv.AppendInt(p, int64(irq), 10)
	p = append(p, '/')
	p = append(p, file...)
	p = append(p, 0)
	r.path = p
	var err error
	r.buf, err = readFileZ(p, r.buf)
	return err
}

// Affinity reads /proc/irq/N/smp_affinity and effective_affinity_list.
func (r *IRQReader) Affinity(irq int) (Affinity, error) {
	var a Affinity
	if err := r.read(r.fs.p.Proc, "irq", irq, "smp_affinity"); err != nil {
		return a, err
	}
	var err error
	if a.Requested, err = cpuset.ParseMaskBytes(r.buf); err != nil {
		return a, fmt.Errorf("irq %d smp_affinity: %w", irq, err)
	}
	err = r.read(r.fs.p.Proc, "irq", irq, "effective_affinity_list")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return a, nil // kernels or architectures without effective affinity
	case err != nil:
		return a, err
	}
	if a.Effective, err = cpuset.ParseListBytes(r.buf); err != nil {
		return a, fmt.Errorf("irq %d effective_affinity_list: %w", irq, err)
	}
	return a, nil
}

// Actions reads /sys/kernel/irq/N/actions: the names of the handlers (the last
// column of /proc/interrupts), comma-separated when shared. ErrNotExist when
// the kernel has no /sys/kernel/irq (then use InterruptNames).
func (r *IRQReader) Actions(irq int) (string, error) {
	if err := r.read(r.fs.p.Sys, "kernel/irq", irq, "actions"); err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(r.buf)), nil
}

// InterruptNames reads /proc/interrupts once and returns the action name of
// each IRQ in want (all numbered IRQs when want is nil). It is the fallback for
// kernels without /sys/kernel/irq: on a large node the file is megabytes.
func (f *FS) InterruptNames(want map[int]bool) (map[int]string, error) {
	file, err := os.Open(f.Proc("interrupts"))
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return ParseInterruptNames(file, want)
}

// ParseInterruptNames parses the /proc/interrupts layout of any kernel: a
// header of CPU columns, then one line per IRQ, "N: counts… [controller …]
// name". Lines whose label is not a number (NMI, LOC, …) are skipped. The name
// is the last field (for shared IRQs, the last handler).
func ParseInterruptNames(r io.Reader, want map[int]bool) (map[int]string, error) {
	out := make(map[int]string)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	first := true
	for sc.Scan() {
		line := sc.Bytes()
		if first {
			first = false
			if !bytes.Contains(line, []byte("CPU")) {
				return nil, errors.New("interrupts: no CPU header line")
			}
			continue
		}
		label, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		irq, err := strconv.Atoi(string(bytes.TrimSpace(label)))
		if err != nil || irq < 0 {
			continue
		}
		if want != nil && !want[irq] {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if name := lastName(fields); name != "" {
			out[irq] = name
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("interrupts: %w", err)
	}
	return out, nil
}

// lastName picks the handler name out of the fields after "N:": per-CPU
// counts, the controller ("PCI-MSIX-0000:00:03.0", "PCI-MSI", "IO-APIC"), the
// hardware IRQ and trigger ("1-edge", "65537-edge"), then the name. Without
// a name (no handler) it returns "".
func lastName(fields [][]byte) string {
	last := fields[len(fields)-1]
	for i, f := range fields {
		if isHWIRQTrigger(f) {
			if i == len(fields)-1 {
				return ""
			}
			return string(last)
		}
	}
	if _, err := strconv.ParseUint(string(last), 10, 64); err == nil {
		return "" // counts only
	}
	return string(last)
}

// isHWIRQTrigger matches "65537-edge", "1-level", "0-fasteoi".
func isHWIRQTrigger(f []byte) bool {
	d, t, ok := bytes.Cut(f, []byte("-"))
	if !ok || len(d) == 0 || len(t) == 0 {
		return false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, c := range t {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// ErrManaged says the kernel manages this IRQ's affinity itself and refuses
// writes (EIO on older kernels, EPERM on 6.12 and later). It is skipped, not
// a failure.
var ErrManaged = errors.New("kernel-managed IRQ affinity")

// WriteAffinity writes the requested affinity of irq as a hex mask. It refuses
// an empty set itself; the kernel's EIO/EPERM come back wrapped in ErrManaged,
// other errors (EINVAL: no online CPU, EOVERFLOW: CPU beyond nr_cpus, ENOSPC:
// vector space full) as they are.
func (f *FS) WriteAffinity(irq int, s cpuset.Set) error {
	if s.IsEmpty() {
		return fmt.Errorf("irq %d: refusing to write an empty CPU mask", irq)
	}
	err := WriteFile(f.Proc("irq", strconv.Itoa(irq), "smp_affinity"), []byte(s.Mask()))
	if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("irq %d: %w (%w)", irq, ErrManaged, err)
	}
	return err
}

// ReadDirNames lists a directory's entry names (nil, nil when it does not exist).
func ReadDirNames(path string) ([]string, error) {
	d, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}
