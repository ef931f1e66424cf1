// Package hostfixture builds fake /proc, /sys and root trees from a short Go
// description of a host: CPUs, NUMA nodes, NICs with their queue IRQs and
// affinities, Azure's netvsc + VF pairs and vmbus channels. Tests use it for
// the layouts no real capture covers (Azure VMs, 192 CPUs, two NUMA nodes…);
// the tree is written to a temporary directory, so `go test ./...` needs no
// prior build step. Used only by tests and benchmarks.
package hostfixture

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Host describes the machine to fake.
type Host struct {
	CPUs     int        // possible CPUs 0..CPUs-1
	Offline  cpuset.Set // CPUs present but offline
	Isolated cpuset.Set // devices/system/cpu/isolated
	NohzFull cpuset.Set // devices/system/cpu/nohz_full (file absent when empty)
	Nodes    []cpuset.Set
	NICs     []NIC
	// OtherIRQs adds non-NIC MSI IRQs (an NVMe-like device) so the total
	// IRQ count is realistic; they are never NIC queue IRQs.
	OtherIRQs int
	// Interrupts selects the /proc/interrupts controller column style:
	// "6.18" ("PCI-MSIX-0000:00:03.0 1-edge") or "6.1" ("PCI-MSI 65537-edge").
	Interrupts string
	// NoSysKernelIRQ leaves out /sys/kernel/irq, as on kernels without it.
	NoSysKernelIRQ bool
	// IrqbalanceEnv is written to etc/default/irqbalance under the root when set.
	IrqbalanceEnv string
	// Counts, when set, gives /proc/interrupts' per-CPU count for an IRQ.
	Counts func(irq, cpu int) uint64
	// NetRx, when set, gives /proc/softirqs' NET_RX count of a CPU.
	NetRx func(cpu int) uint64
	// Buddyinfo is /proc/buddyinfo's content (default: one healthy node);
	// node0's compact file and /proc/vmstat's compact_* lines come with it.
	Buddyinfo string
}

// HealthyBuddyinfo is one NUMA node with plenty of high-order free blocks.
const HealthyBuddyinfo = `Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
Node 0, zone    DMA32    512    300    200    150    120    100     80     60     40     30   1200
Node 0, zone   Normal   1024    800    600    400    300    200    100     50     30     20    900
`

// FragmentedBuddyinfo is one NUMA node whose Normal zone has free memory only
// in blocks below order 3.
const FragmentedBuddyinfo = `Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
Node 0, zone   Normal  40000  20000   5000      0      0      0      0      0      0      0      0
`

// WriteStat writes /proc/stat for a host with the given per-CPU times
// (user, system, idle, softirq in USER_HZ ticks), for tests that move them.
func WriteStat(p hostfs.Paths, times [][4]uint64) error {
	var b strings.Builder
	var tot [4]uint64
	for _, t := range times {
		for i := range tot {
			tot[i] += t[i]
		}
	}
	line := func(name string, t [4]uint64) {
		// user nice system idle iowait irq softirq steal guest guest_nice
		fmt.Fprintf(&b, "%s %d 0 %d %d 0 0 %d 0 0 0\n", name, t[0], t[1], t[2], t[3])
	}
	line("cpu ", tot)
	for i, t := range times {
		line("cpu"+strconv.Itoa(i), t)
	}
	b.WriteString("intr 0\nctxt 0\nbtime 1700000000\nprocesses 1\nprocs_running 1\nprocs_blocked 0\nsoftirq 0\n")
	return os.WriteFile(filepath.Join(p.Proc, "stat"), []byte(b.String()), 0o644)
}

// NIC is one network interface. For Azure accelerated networking, the
// synthetic interface has Driver "hv_netvsc", no queues of its own, VMBus
// channel CPUs, and the VF in VF.
type NIC struct {
	Name     string
	Driver   string // virtio_net, mlx5_core, mana, ixgbe, hv_netvsc
	Queues   int    // queue pairs (virtio: an input and an output IRQ each)
	NUMANode int    // -1: unknown
	// Affinity gives the requested and effective CPUs of queue IRQ i (in
	// queue order; virtio inputs first, then outputs). Nil: round-robin.
	Affinity func(i int) (req, eff cpuset.Set)
	VF       *NIC  // the VF enslaved to a hv_netvsc interface
	Channels []int // hv_netvsc: the CPU of each vmbus channel
}

// Paths builds the tree under dir and returns the roots to read it through.
func (h Host) Build(dir string) (hostfs.Paths, error) {
	b := &builder{h: h, root: dir, nextIRQ: 24, nextBus: 2}
	if err := b.build(); err != nil {
		return hostfs.Paths{}, err
	}
	return hostfs.Paths{
		Proc:   filepath.Join(dir, "proc"),
		Sys:    filepath.Join(dir, "sys"),
		Cgroup: filepath.Join(dir, "sys", "fs", "cgroup"),
		Root:   filepath.Join(dir, "root"),
	}, nil
}

// TB is the part of testing.TB that MustBuild needs.
type TB interface {
	TempDir() string
	Fatalf(format string, args ...any)
	Helper()
}

// MustBuild builds the tree in a test's temporary directory.
func (h Host) MustBuild(t TB) hostfs.Paths {
	t.Helper()
	p, err := h.Build(t.TempDir())
	if err != nil {
		t.Fatalf("build fixture: %v", err)
	}
	return p
}

type irqLine struct {
	irq      int
	bdf      string
	vector   int
	name     string
	req, eff cpuset.Set
}

type builder struct {
	h       Host
	root    string
	nextIRQ int
	nextBus int
	irqs    []irqLine
	err     error
}

func (b *builder) write(rel, content string) {
	if b.err != nil {
		return
	}
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.err = err
		return
	}
	b.err = os.WriteFile(p, []byte(content), 0o644)
}

func (b *builder) link(rel, target string) {
	if b.err != nil {
		return
	}
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.err = err
		return
	}
	b.err = os.Symlink(target, p)
}

// relLink makes rel a symlink to target (both relative to the fixture root),
// spelled relative to rel's directory as sysfs does.
func (b *builder) relLink(rel, target string) {
	t, err := filepath.Rel(filepath.Dir(rel), target)
	if err != nil && b.err == nil {
		b.err = err
	}
	b.link(rel, t)
}

func (b *builder) online() cpuset.Set {
	return cpuset.Range(0, b.h.CPUs-1).Difference(b.h.Offline)
}

func (b *builder) build() error {
	h := b.h
	all := cpuset.Range(0, h.CPUs-1)
	b.write("sys/devices/system/cpu/possible", all.List()+"\n")
	b.write("sys/devices/system/cpu/present", all.List()+"\n")
	b.write("sys/devices/system/cpu/online", b.online().List()+"\n")
	b.write("sys/devices/system/cpu/offline", h.Offline.List()+"\n")
	b.write("sys/devices/system/cpu/isolated", h.Isolated.List()+"\n")
	if !h.NohzFull.IsEmpty() {
		b.write("sys/devices/system/cpu/nohz_full", h.NohzFull.List()+"\n")
	}
	for i, n := range h.Nodes {
		b.write(fmt.Sprintf("sys/devices/system/node/node%d/cpulist", i), n.List()+"\n")
	}
	b.write("proc/irq/default_smp_affinity", all.Mask()+"\n")
	if h.IrqbalanceEnv != "" {
		b.write("root/etc/default/irqbalance", h.IrqbalanceEnv)
	}
	b.write("proc/version", "Linux version 6.18.0-fixture\n")
	for _, nic := range h.NICs {
		b.nic(nic, "")
	}
	if h.OtherIRQs > 0 {
		bdf := b.bdf()
		dev := "sys/devices/pci0000:00/" + bdf
		b.relLink(dev+"/driver", "sys/bus/pci/drivers/nvme")
		b.write(dev+"/numa_node", "-1\n")
		for i := 0; i < h.OtherIRQs; i++ {
			cpu := i % h.CPUs
			b.addIRQ(dev, bdf, i, fmt.Sprintf("nvme0q%d", i), cpuset.New(cpu), cpuset.New(cpu))
		}
	}
	b.interrupts()
	b.softirqs()
	b.memory()
	return b.err
}

// memory writes buddyinfo, vmstat's compaction counters, node0's compact file,
// /proc/stat and softnet_stat at rest.
func (b *builder) memory() {
	bi := b.h.Buddyinfo
	if bi == "" {
		bi = HealthyBuddyinfo
	}
	b.write("proc/buddyinfo", bi)
	b.write("proc/vmstat", "nr_free_pages 100000\ncompact_migrate_scanned 0\ncompact_free_scanned 0\ncompact_isolated 0\ncompact_stall 0\ncompact_fail 0\ncompact_success 0\n")
	b.write("sys/devices/system/node/node0/compact", "")
	var sb strings.Builder
	for _, c := range b.online().CPUs() {
		fmt.Fprintf(&sb, "%08x %08x %08x 00000000 00000000 00000000 00000000 00000000 00000000 %08x %08x %08x %08x %08x %08x\n",
			0, 0, 0, 0, 0, 0, c, 0, 0)
	}
	b.write("proc/net/softnet_stat", sb.String())
	var st strings.Builder
	st.WriteString("cpu  0 0 0 0 0 0 0 0 0 0\n")
	for _, c := range b.online().CPUs() {
		fmt.Fprintf(&st, "cpu%d 0 0 0 0 0 0 0 0 0 0\n", c)
	}
	st.WriteString("intr 0\nctxt 0\nbtime 1700000000\nprocesses 1\nprocs_running 1\nprocs_blocked 0\nsoftirq 0\n")
	b.write("proc/stat", st.String())
}

// softirqs writes /proc/softirqs with a column per possible CPU.
func (b *builder) softirqs() {
	var sb strings.Builder
	sb.WriteString("          ")
	for c := 0; c < b.h.CPUs; c++ {
		fmt.Fprintf(&sb, " %10s", "CPU"+strconv.Itoa(c))
	}
	sb.WriteString("\n")
	for _, row := range []string{"HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"} {
		fmt.Fprintf(&sb, "%10s:", row)
		for c := 0; c < b.h.CPUs; c++ {
			var v uint64
			if row == "NET_RX" && b.h.NetRx != nil {
				v = b.h.NetRx(c)
			}
			fmt.Fprintf(&sb, " %10d", v)
		}
		sb.WriteString("\n")
	}
	b.write("proc/softirqs", sb.String())
}

func (b *builder) bdf() string {
	s := fmt.Sprintf("0000:00:%02x.0", b.nextBus)
	b.nextBus++
	return s
}

func (b *builder) addIRQ(devDir, bdf string, vector int, name string, req, eff cpuset.Set) {
	n := b.nextIRQ
	b.nextIRQ++
	b.irqs = append(b.irqs, irqLine{irq: n, bdf: bdf, vector: vector, name: name, req: req, eff: eff})
	s := strconv.Itoa(n)
	b.write(devDir+"/msi_irqs/"+s, "msix\n")
	b.write("proc/irq/"+s+"/smp_affinity", padMask(req, b.h.CPUs)+"\n")
	b.write("proc/irq/"+s+"/smp_affinity_list", req.List()+"\n")
	b.write("proc/irq/"+s+"/effective_affinity", padMask(eff, b.h.CPUs)+"\n")
	b.write("proc/irq/"+s+"/effective_affinity_list", eff.List()+"\n")
	b.write("proc/irq/"+s+"/node", "0\n")
	if !b.h.NoSysKernelIRQ {
		b.write("sys/kernel/irq/"+s+"/actions", name+"\n")
		b.write("sys/kernel/irq/"+s+"/chip_name", "PCI-MSIX-"+bdf+"\n")
	}
}

// padMask formats s the way the kernel prints it for a machine of ncpu CPUs:
// every 32-bit group, zero-padded (the first group to the CPUs it covers).
func padMask(s cpuset.Set, ncpu int) string {
	groups := (ncpu + 31) / 32
	var parts []string
	m := s.Mask()
	got := strings.Split(m, ",")
	for len(got) < groups {
		got = append([]string{"0"}, got...)
	}
	for i, g := range got {
		width := 8
		if i == 0 {
			rem := ncpu - 32*(groups-1)
			width = (rem + 3) / 4
		}
		parts = append(parts, fmt.Sprintf("%0*s", width, g))
	}
	return strings.Join(parts, ",")
}

func (b *builder) netdev(nicDir, name string, n NIC) {
	b.write(nicDir+"/ifindex", "2\n")
	b.write(nicDir+"/operstate", "up\n")
	b.write(nicDir+"/type", "1\n")
	for q := 0; q < max(n.Queues, 1); q++ {
		b.write(fmt.Sprintf("%s/queues/rx-%d/rps_cpus", nicDir, q), "0\n")
	}
	b.relLink("sys/class/net/"+name, nicDir)
}

func (b *builder) queueAffinity(n NIC, i, total int) (cpuset.Set, cpuset.Set) {
	if n.Affinity != nil {
		return n.Affinity(i)
	}
	on := b.online().CPUs()
	c := on[i%len(on)]
	return cpuset.New(c), cpuset.New(c)
}

// nic adds n; masterDir is the netdev directory of its netvsc master, if any.
func (b *builder) nic(n NIC, masterDir string) {
	bdf := b.bdf()
	pci := "sys/devices/pci0000:00/" + bdf
	switch n.Driver {
	case "hv_netvsc":
		guid := fmt.Sprintf("000d3a%02x-0000-0000-0000-000000000000", b.nextBus)
		dev := "sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00/" + guid
		b.relLink(dev+"/driver", "sys/bus/vmbus/drivers/hv_netvsc")
		for i, cpu := range n.Channels {
			b.write(fmt.Sprintf("%s/channels/%d/cpu", dev, 14+i), strconv.Itoa(cpu)+"\n")
		}
		nicDir := dev + "/net/" + n.Name
		b.netdev(nicDir, n.Name, n)
		b.relLink(nicDir+"/device", dev)
		if n.VF != nil {
			vf := *n.VF
			vfDir := fmt.Sprintf("sys/devices/pci0000:00/0000:00:%02x.0/net/%s", b.nextBus, vf.Name)
			b.relLink(nicDir+"/lower_"+vf.Name, vfDir)
			b.nic(vf, nicDir)
		}
		return
	case "virtio_net":
		b.relLink(pci+"/driver", "sys/bus/pci/drivers/virtio-pci")
		b.write(pci+"/numa_node", strconv.Itoa(n.NUMANode)+"\n")
		virt := fmt.Sprintf("virtio%d", b.nextBus)
		nicDir := pci + "/" + virt + "/net/" + n.Name
		b.relLink(pci+"/"+virt+"/driver", "sys/bus/virtio/drivers/virtio_net")
		b.netdev(nicDir, n.Name, n)
		b.relLink(nicDir+"/device", pci+"/"+virt)
		b.addIRQ(pci, bdf, 0, virt+"-config", b.online(), cpuset.New(0))
		total := 2 * n.Queues
		for i := 0; i < total; i++ {
			dir, q := "input", i
			if i >= n.Queues {
				dir, q = "output", i-n.Queues
			}
			req, eff := b.queueAffinity(n, i, total)
			b.addIRQ(pci, bdf, i+1, fmt.Sprintf("%s-%s.%d", virt, dir, q), req, eff)
		}
		return
	}
	b.relLink(pci+"/driver", "sys/bus/pci/drivers/"+n.Driver)
	b.write(pci+"/numa_node", strconv.Itoa(n.NUMANode)+"\n")
	if n.NUMANode >= 0 && n.NUMANode < len(b.h.Nodes) {
		b.write(pci+"/local_cpulist", b.h.Nodes[n.NUMANode].List()+"\n")
	}
	nicDir := pci + "/net/" + n.Name
	b.netdev(nicDir, n.Name, n)
	b.relLink(nicDir+"/device", pci)
	if masterDir != "" {
		b.relLink(nicDir+"/master", masterDir)
	}
	switch n.Driver {
	case "mlx5_core":
		b.addIRQ(pci, bdf, 0, "mlx5_async0@pci:"+bdf, b.online(), cpuset.New(0))
		for i := 0; i < n.Queues; i++ {
			req, eff := b.queueAffinity(n, i, n.Queues)
			b.addIRQ(pci, bdf, i+1, fmt.Sprintf("mlx5_comp%d@pci:%s", i, bdf), req, eff)
		}
	case "mana":
		b.addIRQ(pci, bdf, 0, "mana_hwc@pci:"+bdf, b.online(), cpuset.New(0))
		for i := 0; i < n.Queues; i++ {
			req, eff := b.queueAffinity(n, i, n.Queues)
			b.addIRQ(pci, bdf, i+1, fmt.Sprintf("mana_q%d@pci:%s", i, bdf), req, eff)
		}
	default: // Intel style: one combined vector per queue plus a link vector
		for i := 0; i < n.Queues; i++ {
			req, eff := b.queueAffinity(n, i, n.Queues)
			b.addIRQ(pci, bdf, i, fmt.Sprintf("%s-TxRx-%d", n.Name, i), req, eff)
		}
		b.addIRQ(pci, bdf, n.Queues, n.Name, b.online(), cpuset.New(0))
	}
}

// interrupts writes /proc/interrupts with one column per online CPU.
func (b *builder) interrupts() {
	if b.err != nil {
		return
	}
	on := b.online().CPUs()
	var sb strings.Builder
	sb.WriteString("    ")
	for _, c := range on {
		fmt.Fprintf(&sb, " %10s", "CPU"+strconv.Itoa(c))
	}
	sb.WriteString("\n")
	sort.Slice(b.irqs, func(i, j int) bool { return b.irqs[i].irq < b.irqs[j].irq })
	for _, l := range b.irqs {
		fmt.Fprintf(&sb, "%4d:", l.irq)
		for _, c := range on {
			var v uint64
			if b.h.Counts != nil {
				v = b.h.Counts(l.irq, c)
			} else if l.eff.Contains(c) {
				v = uint64(1000 + l.irq)
			}
			fmt.Fprintf(&sb, " %10d", v)
		}
		if b.h.Interrupts == "6.1" {
			fmt.Fprintf(&sb, "  PCI-MSI %d-edge      %s\n", 65536+l.vector, l.name)
		} else {
			fmt.Fprintf(&sb, " PCI-MSIX-%s %d-edge      %s\n", l.bdf, l.vector, l.name)
		}
	}
	sb.WriteString(" NMI:")
	for range on {
		sb.WriteString("          0")
	}
	sb.WriteString("   Non-maskable interrupts\n")
	b.write("proc/interrupts", sb.String())
}
