package hostfs

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

func captureProc(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testenv", "hostfixture", "captures", name, "proc")
}

func TestParseInterruptNamesCaptures(t *testing.T) {
	for _, tc := range []struct {
		capture string
		want    map[int]string
	}{
		{"ci-vm-2cpu-6.18", map[int]string{24: "ACPI:Ged", 38: "virtio2-input.0", 39: "virtio2-output.0", 43: "virtio3-event"}},
		{"h100-vm-16cpu-6.18", map[int]string{35: "virtio2-input.0", 36: "virtio2-output.0", 49: "nvidia"}},
	} {
		f, err := os.Open(filepath.Join(captureProc(tc.capture), "interrupts"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseInterruptNames(f, nil)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for irq, name := range tc.want {
			if got[irq] != name {
				t.Errorf("%s: IRQ %d = %q, want %q", tc.capture, irq, got[irq], name)
			}
		}
		for irq := range got {
			if irq < 0 {
				t.Errorf("negative IRQ %d", irq)
			}
		}
	}
}

func TestParseInterruptNamesFormats(t *testing.T) {
	const v61 = `           CPU0       CPU1
  0:         30          0   IO-APIC   2-edge      timer
 24:          0       1234  PCI-MSI 65537-edge      virtio0-input.0
 25:        999          0  PCI-MSI 65538-edge      virtio0-output.0
 26:          0          0  PCI-MSI 65536-edge
 27:          1          2   IR-PCI-MSI 1048576-edge      ehci_hcd:usb1, uhci_hcd:usb2
NMI:          0          0   Non-maskable interrupts
ERR:          0
`
	got, err := ParseInterruptNames(strings.NewReader(v61), map[int]bool{24: true, 25: true, 26: true, 27: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{24: "virtio0-input.0", 25: "virtio0-output.0", 27: "uhci_hcd:usb2"}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("IRQ %d = %q, want %q", k, got[k], v)
		}
	}
	if _, err := ParseInterruptNames(strings.NewReader("garbage\n"), nil); err == nil {
		t.Error("a file without the CPU header must be an error")
	}
}

func FuzzParseInterruptNames(f *testing.F) {
	f.Add("  CPU0 CPU1\n 24: 1 2 PCI-MSI 65537-edge virtio0-input.0\nNMI: 0 0 x\n")
	f.Add("CPU0\n1:\n:\n-1: a b\n")
	f.Fuzz(func(t *testing.T, data string) {
		got, err := ParseInterruptNames(strings.NewReader(data), nil)
		if err != nil {
			return
		}
		for irq, name := range got {
			if irq < 0 || name == "" || strings.ContainsAny(name, " \t\n") {
				t.Fatalf("IRQ %d name %q", irq, name)
			}
		}
	})
}

func TestReadFileGrowsAndCaps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	data := strings.Repeat("x", 5000)
	os.WriteFile(p, []byte(data), 0o644)
	b, err := ReadFile(p, make([]byte, 0, 16))
	if err != nil || string(b) != data {
		t.Fatalf("ReadFile: %d bytes, %v", len(b), err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxRead+10), 0o644)
	if _, err := ReadFile(big, nil); err == nil {
		t.Error("a file over MaxRead must be an error")
	}
	if _, err := ReadFile(filepath.Join(dir, "none"), nil); !os.IsNotExist(err) {
		t.Errorf("missing file error = %v", err)
	}
}

func TestWriteAffinityRefusesEmpty(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "irq", "5"), 0o755)
	mask := filepath.Join(proc, "irq", "5", "smp_affinity")
	os.WriteFile(mask, []byte("f\n"), 0o644)
	h, err := New(Paths{Proc: proc, Sys: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteAffinity(5, cpuset.Set{}); err == nil {
		t.Fatal("writing an empty mask must be refused")
	}
	if b, _ := os.ReadFile(mask); string(b) != "f\n" {
		t.Fatalf("the mask file was touched: %q", b)
	}
	if err := h.WriteAffinity(5, cpuset.New(33)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(mask); string(b) != "2,00000000" {
		t.Fatalf("mask written as %q", b)
	}
}

func TestCPUListNull(t *testing.T) {
	sys := t.TempDir()
	dir := filepath.Join(sys, "devices", "system", "cpu")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "online"), []byte("0-3\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "isolated"), []byte("\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nohz_full"), []byte("(null)\n"), 0o644)
	h, err := New(Paths{Proc: t.TempDir(), Sys: sys})
	if err != nil {
		t.Fatal(err)
	}
	iso, err := h.IsolatedCPUs()
	if err != nil || !iso.IsEmpty() {
		t.Errorf("nohz_full \"(null)\" is the empty set: %v %v", iso, err)
	}
	os.WriteFile(filepath.Join(dir, "nohz_full"), []byte("garbage\n"), 0o644)
	if _, err := h.IsolatedCPUs(); err == nil {
		t.Error("other garbage is still an error")
	}
}
